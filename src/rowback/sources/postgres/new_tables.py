"""Tables created while capture runs: in the publication from their creating transaction.

PostgreSQL publishes a table's changes only from the moment it is in the publication, and
a publication that takes new tables by itself (``FOR ALL TABLES``, ``FOR TABLES IN
SCHEMA``) also takes tables without a primary key, whose UPDATE and DELETE PostgreSQL
then refuses ("does not have a replica identity and publishes updates"): it would break
the application's writes. So an event trigger does it instead, inside the transaction
that creates the table, and only for a table with a primary key:

1. ``ALTER PUBLICATION … ADD TABLE`` the new table, so every change after the
   ``CREATE TABLE`` (in the same transaction too) is in the stream;
2. a transactional logical message (``pg_logical_emit_message``) names the table, so
   capture knows, at that exact point of the stream, that the table starts empty there.

Both steps sit in an exception block: if they fail (the publication was dropped), the
user's ``CREATE TABLE`` still succeeds, with a warning, and capture falls back to finding
the table at its next rescan and taking a snapshot of it. So does capture while the
trigger is disabled (``ALTER EVENT TRIGGER … DISABLE``), which is how to opt out.

The trade-offs: creating an event trigger needs a superuser (capture installs it when it
runs as one; ``rowback doctor`` prints the SQL for an administrator otherwise). Each
``CREATE TABLE`` with a primary key also alters the publication, which takes a lock on
it until that transaction ends, so two transactions creating tables at once wait for
each other. A table that gets its primary key later (``ALTER TABLE … ADD PRIMARY KEY``)
is still found by a rescan, and its history starts at a snapshot taken then.
"""

from __future__ import annotations

import json

from rowback.sources.postgres import pgoutput as po
from rowback.sources.postgres.source_catalog import SourceCatalog

PREFIX = "rowback.new_table:"
"""Logical message prefix; the publication name follows, so captures do not mix."""


def trigger_name(publication: str) -> str:
    """The event trigger (and its function, in schema ``rowback``) for ``publication``."""
    return f"rowback_new_tables_{publication}"[:63]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def install_sql(publication: str) -> str:
    """The statements that install the trigger (for a superuser to run), on one line each."""
    name = _ident(trigger_name(publication))
    pub, prefix = _literal(publication), _literal(PREFIX + publication)
    body = (
        "DECLARE r record; BEGIN "
        "FOR r IN SELECT c.oid::bigint AS relid, n.nspname, c.relname "
        "FROM pg_event_trigger_ddl_commands() d JOIN pg_class c ON c.oid = d.objid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE d.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'p') "
        "AND NOT c.relispartition AND c.relpersistence = 'p' "
        "AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' "
        "AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) "
        "LOOP BEGIN "
        f"EXECUTE format('ALTER PUBLICATION %I ADD TABLE %I.%I', {pub}, r.nspname, r.relname); "
        f"PERFORM pg_logical_emit_message(true, {prefix}, json_build_object("
        "'relid', r.relid, 'schema', r.nspname, 'table', r.relname)::text); "
        "EXCEPTION WHEN OTHERS THEN RAISE WARNING "
        f"'rowback: %.% not added to publication %: %', r.nspname, r.relname, {pub}, SQLERRM; "
        "END; END LOOP; END"
    )
    return "\n".join(
        [
            "CREATE SCHEMA IF NOT EXISTS rowback;",
            f"CREATE OR REPLACE FUNCTION rowback.{name}() RETURNS event_trigger "
            "LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog "
            f"AS $rowback$ {body} $rowback$;",
            f"DROP EVENT TRIGGER IF EXISTS {name};",
            f"CREATE EVENT TRIGGER {name} ON ddl_command_end WHEN TAG IN ('CREATE TABLE') "
            f"EXECUTE FUNCTION rowback.{name}();",
        ]
    )


def state(cat: SourceCatalog, publication: str) -> str | None:
    """The trigger's ``evtenabled`` (``D``: disabled), or None when it does not exist."""
    rows = cat.query(
        "SELECT evtenabled FROM pg_event_trigger WHERE evtname = %s", [trigger_name(publication)]
    )
    return str(rows[0][0]) if rows else None


def ensure(cat: SourceCatalog, publication: str) -> bool:
    """Install the trigger when missing and the role may (a superuser); whether it works.
    A disabled trigger is left alone: that is how an administrator opts out."""
    got = state(cat, publication)
    if got is not None:
        return got != "D"
    if not cat.query("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0][0]:
        return False
    for statement in install_sql(publication).split("\n"):
        cat.query(statement)
    return True


def announced(msg: po.LogicalMessage, publication: str) -> tuple[int, str] | None:
    """(relid, ``schema.table``) of a table the trigger added to ``publication``, or None
    for any other logical message."""
    if not msg.transactional or msg.prefix != PREFIX + publication:
        return None
    got = json.loads(msg.content)
    return int(got["relid"]), f"{got['schema']}.{got['table']}"
