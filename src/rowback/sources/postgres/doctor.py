"""``rowback doctor``: check what capture needs from a PostgreSQL source, with exact fixes.

It does not demand REPLICA IDENTITY FULL: with the default identity the shadow already
holds every previous version, so FULL only buys verification, at a measured cost of
about 25% of pgbench's TPS (see shared research). Each table's mode is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rowback.errors import RowbackError
from rowback.sources.postgres import new_tables
from rowback.sources.postgres.source_catalog import SourceCatalog, connect


@dataclass(frozen=True)
class Check:
    check: str
    status: str  # ok | warn | fail
    detail: str
    fix: str | None = None


LAG_WARN_BYTES = 1 << 30


def diagnose(
    dsn: str, tables: list[str] | None, slot: str = "rowback", publication: str = "rowback"
) -> list[Check]:
    """Run every check against the source; never raises for a failed check."""
    conn = connect(dsn)
    conn.autocommit = True
    try:
        cat = SourceCatalog(conn, "doctor")
        out = [
            _version(cat),
            _wal_level(cat),
            *_capacity(cat),
            _privileges(cat),
            *_tables(cat, tables),
            *([] if tables else _skipped(cat)),
            _new_tables(cat, tables, publication),
            *_slot(cat, slot),
        ]
    finally:
        conn.close()
    return out


def _one(cat: SourceCatalog, q: str, args: Any = None) -> Any:
    return cat.query(q, args)[0][0]


def _version(cat: SourceCatalog) -> Check:
    num = int(_one(cat, "SHOW server_version_num"))
    text = str(_one(cat, "SHOW server_version"))
    if num < 140000:
        return Check(
            "server version",
            "fail",
            f"PostgreSQL {text}: streaming of large transactions (protocol 2) needs 14+",
            "upgrade to PostgreSQL 14 or newer",
        )
    return Check("server version", "ok", f"PostgreSQL {text}")


def _wal_level(cat: SourceCatalog) -> Check:
    level = str(_one(cat, "SHOW wal_level"))
    if level != "logical":
        return Check(
            "wal_level",
            "fail",
            f"wal_level is {level}; logical decoding needs logical",
            "ALTER SYSTEM SET wal_level = logical; -- then restart PostgreSQL",
        )
    return Check("wal_level", "ok", "logical")


def _limit(cat: SourceCatalog, check: str, setting: str, in_use_sql: str) -> Check:
    """One capacity check: how many of ``setting`` are taken, and the fix when none is left."""
    limit = int(_one(cat, f"SHOW {setting}"))
    used = int(_one(cat, in_use_sql))
    if used >= limit:
        return Check(
            check,
            "fail",
            f"{used} of {setting}={limit} in use",
            f"ALTER SYSTEM SET {setting} = {limit + 4}; -- then restart",
        )
    return Check(check, "ok", f"{used} of {limit} in use")


def _capacity(cat: SourceCatalog) -> list[Check]:
    out = [
        _limit(
            cat,
            "replication slots",
            "max_replication_slots",
            "SELECT count(*) FROM pg_replication_slots",
        ),
        _limit(cat, "wal senders", "max_wal_senders", "SELECT count(*) FROM pg_stat_replication"),
    ]
    keep = str(_one(cat, "SHOW max_slot_wal_keep_size"))
    if keep == "-1":
        out.append(
            Check(
                "WAL retention",
                "warn",
                "max_slot_wal_keep_size is unlimited: a stopped capture keeps WAL until the "
                "disk fills",
                "ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf();",
            )
        )
    else:
        out.append(Check("WAL retention", "ok", f"max_slot_wal_keep_size = {keep}"))
    return out


def _privileges(cat: SourceCatalog) -> Check:
    user, superuser, replication = cat.query(
        "SELECT current_user, rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user"
    )[0]
    if not (superuser or replication):
        return Check(
            "privileges",
            "fail",
            f"role {user} may not open a replication connection",
            f'ALTER ROLE "{user}" REPLICATION;',
        )
    can_create = bool(_one(cat, "SELECT has_database_privilege(current_database(), 'CREATE')"))
    if not (superuser or can_create):
        db = _one(cat, "SELECT current_database()")
        return Check(
            "privileges",
            "fail",
            f"role {user} may not create the publication in {db}",
            f'GRANT CREATE ON DATABASE "{db}" TO "{user}";',
        )
    return Check("privileges", "ok", f"role {user}: replication and publication allowed")


def _tables(cat: SourceCatalog, tables: list[str] | None) -> list[Check]:
    names = tables if tables else cat.pk_tables()
    if not names:
        return [
            Check(
                "tables",
                "fail",
                "no table with a primary key to capture",
                "ALTER TABLE <table> ADD PRIMARY KEY (<columns>);",
            )
        ]
    out = []
    for name in names:
        schema, _, table = name.partition(".")
        rows = cat.query(
            "SELECT c.relreplident, has_table_privilege(c.oid, 'SELECT'), "
            "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            [schema, table],
        )
        if not rows or not table:
            out.append(Check(f"table {name}", "fail", "does not exist (schema.table?)", None))
            continue
        ident, can_select, has_pk = rows[0]
        if not has_pk:
            out.append(
                Check(
                    f"table {name}",
                    "fail",
                    "no primary key: rows cannot be told apart",
                    f"ALTER TABLE {name} ADD PRIMARY KEY (<columns>);",
                )
            )
        elif not can_select:
            out.append(
                Check(
                    f"table {name}",
                    "fail",
                    "no SELECT privilege for the initial snapshot",
                    f"GRANT SELECT ON {_quoted(cat, name)} TO {_role(cat)};",
                )
            )
        elif ident == "f":
            out.append(
                Check(
                    f"table {name}",
                    "ok",
                    "REPLICA IDENTITY FULL: old rows are in WAL and verified against the "
                    "shadow (costs WAL volume, ~25% TPS under pgbench)",
                )
            )
        else:
            mode = {"d": "DEFAULT", "i": "USING INDEX", "n": "NOTHING"}.get(ident, ident)
            out.append(
                Check(
                    f"table {name}",
                    "ok",
                    f"REPLICA IDENTITY {mode}: before images come from the shadow (cheapest); "
                    f"ALTER TABLE {name} REPLICA IDENTITY FULL adds verification",
                )
            )
    return out


def _role(cat: SourceCatalog) -> str:
    """The capture role (this connection's user) as an SQL identifier."""
    return str(_one(cat, "SELECT quote_ident(current_user)"))


def _quoted(cat: SourceCatalog, name: str) -> str:
    schema, _, table = name.partition(".")
    return str(_one(cat, "SELECT format('%%I.%%I', %s, %s)", [schema, table]))


_NO_KEY = """
SELECT format('%I.%I', n.nspname, c.relname), quote_ident(c.relname || '_pkey'),
       (SELECT quote_ident(ic.relname) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
          AND i.indpred IS NULL AND i.indexprs IS NULL
        ORDER BY i.indnatts, ic.relname LIMIT 1)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND n.nspname <> 'rowback'
  AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
ORDER BY 1
"""


def _skipped(cat: SourceCatalog) -> list[Check]:
    """Every table default capture leaves out for want of a primary key, with its fix."""
    out = []
    for name, pkey, unique in cat.query(_NO_KEY):
        if unique:
            fix = f"ALTER TABLE {name} ADD CONSTRAINT {pkey} PRIMARY KEY USING INDEX {unique};"
        else:
            fix = f"ALTER TABLE {name} ADD PRIMARY KEY (<columns>);"
        out.append(
            Check(
                f"table {name}",
                "warn",
                "no primary key: capture skips it, so it has no history. Give it one to "
                "capture it; do not just add it to the publication: PostgreSQL would then "
                "refuse its UPDATE and DELETE (unless REPLICA IDENTITY FULL), and Rowback "
                "still could not tell its rows apart",
                fix,
            )
        )
    return out


def _new_tables(cat: SourceCatalog, tables: list[str] | None, publication: str) -> Check:
    """How tables created while capture runs get into history, and the window that remains."""
    check = "new tables"
    if tables:
        return Check(check, "ok", "an explicit table list: tables created later are not captured")
    later_key = (
        "a table given its primary key after creation starts at a snapshot taken at capture's "
        "next rescan (every 10 s) or start"
    )
    state = new_tables.state(cat, publication)
    name = new_tables.trigger_name(publication)
    if state is not None and state != "D":
        return Check(
            check,
            "ok",
            f"event trigger {name} puts a table created with a primary key into publication "
            f"{publication} in its creating transaction: its history is complete from "
            f"creation; {later_key}",
        )
    window = (
        "a table created while capture runs is found at capture's next rescan (every 10 s) "
        "or start and read by a snapshot: its changes until then (inserts, updates, "
        f"deletes, TRUNCATE) are not in history, only their result; {later_key}"
    )
    if state == "D":
        return Check(
            check,
            "warn",
            f"event trigger {name} is disabled: {window}",
            f'ALTER EVENT TRIGGER "{name}" ENABLE;',
        )
    if cat.query("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0][0]:
        return Check(
            check,
            "ok",
            f"capture will install event trigger {name}: a table created with a primary key "
            f"is complete from creation; {later_key}",
        )
    return Check(
        check,
        "warn",
        f"role {_one(cat, 'SELECT current_user')} is not a superuser, so capture cannot "
        f"install the event trigger that adds new tables at creation: {window}",
        "-- as a superuser:\n" + new_tables.install_sql(publication),
    )


def _slot(cat: SourceCatalog, slot: str) -> list[Check]:
    rows = cat.query(
        "SELECT active, pg_current_wal_lsn() - confirmed_flush_lsn, plugin, wal_status "
        "FROM pg_replication_slots WHERE slot_name = %s",
        [slot],
    )
    if not rows:
        return [Check("slot", "ok", f"slot {slot} does not exist yet; capture will create it")]
    active, lag, plugin, wal_status = rows[0]
    if plugin != "pgoutput":
        return [
            Check(
                "slot",
                "fail",
                f"slot {slot} uses {plugin}, not pgoutput",
                f"SELECT pg_drop_replication_slot('{slot}'); -- or capture with --slot another",
            )
        ]
    lag = int(lag or 0)
    detail = f"slot {slot}: {'active' if active else 'inactive'}, {lag:,} bytes behind"
    if wal_status == "lost":
        return [
            Check(
                "slot",
                "fail",
                detail + "; WAL it needed was removed",
                f"SELECT pg_drop_replication_slot('{slot}'); -- then capture into a new store",
            )
        ]
    if lag > LAG_WARN_BYTES:
        return [
            Check(
                "slot lag",
                "warn",
                detail + ": the source keeps this much WAL for it",
                "run `rowback capture`, or drop the slot if capture is retired: "
                f"SELECT pg_drop_replication_slot('{slot}');",
            )
        ]
    return [Check("slot", "ok", detail)]


def require_ok(checks: list[Check]) -> None:
    """Raise the first failure as a one-line error (used before capture starts)."""
    for c in checks:
        if c.status == "fail":
            raise RowbackError(f"{c.check}: {c.detail} — fix: {c.fix}")
