"""Running a statement to see what it would do, in a transaction that always rolls back.

Connection B runs the statement under ``lock_timeout`` and ``statement_timeout`` (and
``idle_in_transaction_session_timeout``, so a stuck client cannot hold B's locks), with
constraints immediate. Before it runs, B exports its snapshot and connection A, read
only, imports it: A sees the database as the statement found it. The tables touched,
cascades' and triggers' included, are those B's ``pg_stat_xact_user_tables`` counts;
in each, B's rows whose ``xmin`` is B's (sub)transaction are the after images, A's rows
under the same keys the before images, and A's rows whose ``xmax`` is B's and that B
no longer sees, the deleted ones. Both transactions are rolled back in ``finally``.

Limits: B's subtransactions (plpgsql exception blocks) are found because their xids
follow B's own; an xid window of ``XID_WINDOW`` bounds how many other transactions may
start meanwhile. Each touched table is scanned whole. TRUNCATE is not seen. A table
without a primary key is keyed by ctid, so its updates show as delete plus insert.
Sequences are not transactional: a ``nextval`` the statement calls stays consumed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql as pgsql

from rowback.errors import RowbackError
from rowback.sources.postgres.source_catalog import connect
from rowback.whatif.diff import Change, Failure, Key, Outcome, Row, table_changes, via_of

Conn = psycopg2.extensions.connection

LOCK_TIMEOUT = "1s"
STATEMENT_TIMEOUT = "30s"
XID_WINDOW = 1 << 20
"""Xids at or after B's that count as B's own (its subtransactions)."""

_TOUCHED = """
SELECT schemaname, relname FROM pg_stat_xact_user_tables
WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 AND schemaname NOT LIKE 'pg\\_temp%%'
ORDER BY 1, 2
"""

_COLUMNS = """
SELECT a.attname, coalesce(a.attnum = ANY (i.indkey), false)
FROM pg_attribute a
LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

# child -> parents whose delete or update acts on it (cascade, set null, set default)
_FK_ACTIONS = """
SELECT k.conrelid::regclass::text, k.confrelid::regclass::text,
       cn.nspname || '.' || cl.relname, pn.nspname || '.' || pl.relname
FROM pg_constraint k
JOIN pg_class cl ON cl.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = cl.relnamespace
JOIN pg_class pl ON pl.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = pl.relnamespace
WHERE k.contype = 'f' AND (k.confdeltype IN ('c', 'n', 'd') OR k.confupdtype IN ('c', 'n', 'd'))
"""


@dataclass(frozen=True)
class Bounds:
    """How long the statement may wait for a lock and run; PostgreSQL interval text."""

    lock_timeout: str = LOCK_TIMEOUT
    statement_timeout: str = STATEMENT_TIMEOUT


class Stopped(RowbackError):
    """The statement hit a bound (a lock held elsewhere, or too long): nothing is known
    of what it would do."""


def _mine(column: str) -> pgsql.Composable:
    """``column`` (xmin or xmax) is B's xid or a later one within the window."""
    return pgsql.SQL(
        "({c}::text::bigint > 2 AND (({c}::text::bigint - %(top)s) & 4294967295) < %(win)s)"
    ).format(c=pgsql.SQL(column))


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _direct(cur: psycopg2.extensions.cursor, statement: str) -> set[str]:
    """The tables the statement itself writes: its plan's ModifyTable nodes (EXPLAIN
    does not run it). A statement without one (a SELECT) writes none directly."""
    cur.execute("EXPLAIN (VERBOSE, FORMAT JSON) " + statement)
    row = cur.fetchone()
    assert row is not None
    doc = row[0]
    if isinstance(doc, str):
        import json

        doc = json.loads(doc)
    out: set[str] = set()
    stack = [doc[0]["Plan"]]
    while stack:
        node = stack.pop()
        if node.get("Node Type") == "ModifyTable" and "Relation Name" in node:
            out.add(f"{node.get('Schema', 'public')}.{node['Relation Name']}")
        stack.extend(node.get("Plans", []))
    return out


def _actions(cur: psycopg2.extensions.cursor) -> dict[str, frozenset[str]]:
    cur.execute(_FK_ACTIONS)
    got: dict[str, set[str]] = {}
    for _, _, child, parent in cur.fetchall():
        got.setdefault(child, set()).add(parent)
    return {k: frozenset(v) for k, v in got.items()}


def _texts(cols: list[str]) -> pgsql.Composable:
    return pgsql.SQL(", ").join(pgsql.SQL("{}::text").format(pgsql.Identifier(c)) for c in cols)


def _rows(
    cur: psycopg2.extensions.cursor,
    table: pgsql.Composable,
    cols: list[str],
    key: list[str],
    where: pgsql.Composable,
    args: Mapping[str, object],
) -> dict[Key, Row]:
    """``cols`` of ``table``'s rows matching ``where`` as text, by key (ctid when empty)."""
    keyed = key or ["ctid"]
    query = pgsql.SQL("SELECT {}, {} FROM {} WHERE {}").format(
        _texts(keyed), _texts(cols), table, where
    )
    cur.execute(query, dict(args))
    n = len(keyed)
    return {tuple(r[:n]): dict(zip(cols, r[n:], strict=True)) for r in cur.fetchall()}


def _by_keys(key: list[str], keys: list[Key]) -> tuple[pgsql.Composable, dict[str, object]]:
    """A condition: the key is one of ``keys`` (columns compared as text)."""
    keyed = key or ["ctid"]
    cond = pgsql.SQL("({}) IN (SELECT * FROM unnest({}))").format(
        _texts(keyed),
        pgsql.SQL(", ").join(pgsql.SQL(f"%(k{i})s::text[]") for i in range(len(keyed))),
    )
    return cond, {f"k{i}": [k[i] for k in keys] for i in range(len(keyed))}


def _failure(e: psycopg2.Error) -> Failure:
    diag = e.diag
    return Failure(
        e.pgcode,
        (diag.message_primary or _first(e)),
        diag.constraint_name,
        f"{diag.schema_name}.{diag.table_name}" if diag.table_name else None,
    )


def _stopped(e: psycopg2.Error, bounds: Bounds) -> Stopped | None:
    if isinstance(e, psycopg2.errors.LockNotAvailable):
        return Stopped(
            f"whatif stopped: waited --lock-timeout {bounds.lock_timeout} for a lock another "
            "session holds; nothing ran (rolled back)"
        )
    if isinstance(e, psycopg2.errors.QueryCanceled):
        return Stopped(
            f"whatif stopped: the statement ran past --statement-timeout "
            f"{bounds.statement_timeout}; rolled back"
        )
    return None


def whatif(dsn: str, statement: str, bounds: Bounds = Bounds()) -> Outcome:
    """What ``statement`` would do to ``dsn``'s database, found by running it in a
    transaction that is rolled back, whatever happens."""
    if not statement.strip():
        raise RowbackError("give the statement: --sql TEXT or --file F")
    b = connect(dsn)
    a: Conn | None = None
    try:
        bc = b.cursor()
        bc.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        for name, value in (
            ("lock_timeout", bounds.lock_timeout),
            ("statement_timeout", bounds.statement_timeout),
            ("idle_in_transaction_session_timeout", bounds.statement_timeout),
        ):
            try:
                bc.execute("SELECT set_config(%s, %s, true)", [name, value])
            except psycopg2.Error as e:
                raise RowbackError(f"--{name.replace('_', '-')} {value!r}: {_first(e)}") from None
        bc.execute("SET CONSTRAINTS ALL IMMEDIATE")
        bc.execute("SELECT pg_export_snapshot(), pg_current_xact_id()::xid::text")
        got = bc.fetchone()
        assert got is not None
        snapshot, top = str(got[0]), int(got[1])
        a = connect(dsn)
        ac = a.cursor()
        ac.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        ac.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])
        ac.execute("SELECT set_config('statement_timeout', %s, true)", [bounds.statement_timeout])
        actions = _actions(ac)
        outcome = Outcome()
        started = time.perf_counter()
        try:
            direct = _direct(bc, statement)
            bc.execute(statement)
            outcome.rowcount = bc.rowcount if bc.rowcount >= 0 else None
        except psycopg2.Error as e:
            outcome.elapsed_ms = (time.perf_counter() - started) * 1000
            stop = _stopped(e, bounds)
            if stop is not None:
                raise stop from None
            outcome.failure = _failure(e)
            return outcome
        outcome.elapsed_ms = (time.perf_counter() - started) * 1000
        try:
            outcome.changes = _changes(ac, bc, {"top": top, "win": XID_WINDOW}, direct, actions)
        except psycopg2.Error as e:
            stop = _stopped(e, bounds)
            raise stop or RowbackError(f"whatif could not read the changes: {_first(e)}") from None
        return outcome
    finally:
        b.rollback()  # never commit: B's writes and locks end here
        b.close()
        if a is not None:
            a.rollback()
            a.close()


def _changes(
    ac: psycopg2.extensions.cursor,
    bc: psycopg2.extensions.cursor,
    xid: Mapping[str, object],
    direct: set[str],
    actions: Mapping[str, frozenset[str]],
) -> list[Change]:
    bc.execute(_TOUCHED)
    out: list[Change] = []
    for schema, rel in bc.fetchall():
        name = f"{schema}.{rel}"
        table = pgsql.SQL("{}.{}").format(pgsql.Identifier(schema), pgsql.Identifier(rel))
        bc.execute(_COLUMNS, [pgsql.Identifier(schema, rel).as_string(bc)])
        info = bc.fetchall()
        cols = [c for c, _ in info]
        key = [c for c, k in info if k]
        after = _rows(bc, table, cols, key, _mine("xmin"), xid)
        before: dict[Key, Row] = {}
        if after and key:
            cond, args = _by_keys(key, list(after))
            before = _rows(ac, table, cols, key, cond, args)
        lost = _rows(ac, table, cols, key, _mine("xmax"), xid)
        lost = {k: r for k, r in lost.items() if k not in after}
        if lost:
            cond, args = _by_keys(key, list(lost))
            still = _rows(bc, table, cols, key, cond, args)  # only locked (a key check)
            lost = {k: r for k, r in lost.items() if k not in still}
        via = via_of(name, direct, actions)
        out += table_changes(name, key or ["ctid"], after, before, lost, via)
    return out
