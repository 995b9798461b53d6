"""Applying a revert to PostgreSQL: the I/O half.

Before planning, the shadow must hold everything the target has committed
(:func:`check_caught_up`), else the plan's guards would be stale. The apply is one
transaction under short lock and statement timeouts, marked with a logical message
(``rowback.revert``) so capture can tell Rowback's own writes; every guarded row must be
changed (by its own statement, or returned by its batch), else a write landed between plan
and apply.
"""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from rowback.errors import RowbackError
from rowback.model import Text
from rowback.revert import sql as rsql
from rowback.revert.plan import Mode, Plan, RowPlan
from rowback.revert.sql import (
    LOCK_TIMEOUT,
    MESSAGE_PREFIX,
    STATEMENT_TIMEOUT,
    Statement,
    TargetCatalog,
    sequence_notes,
    statements,
)
from rowback.sources.postgres.source_catalog import connect
from rowback.when import format_lsn

Conn = psycopg2.extensions.connection
Row = dict[str, Text]


@dataclass
class Applied:
    """What an apply did: the reverting transaction, rows changed, statements that found
    their row changed since the plan (left as they are, nonconflict only)."""

    txid: int
    rows: int
    missed: list[Statement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    """From the first revert statement to the commit: how long rows were locked."""


_FOREIGN_KEYS = """
SELECT cn.nspname || '.' || cl.relname, pn.nspname || '.' || pl.relname
FROM pg_constraint k
JOIN pg_class cl ON cl.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = cl.relnamespace
JOIN pg_class pl ON pl.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = pl.relnamespace
WHERE k.contype = 'f'
"""

_SPECIAL_COLUMNS = """
SELECT n.nspname || '.' || c.relname, a.attname, a.attgenerated::text, a.attidentity::text,
       coalesce(pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%', false)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND (a.attgenerated <> '' OR a.attidentity <> '' OR d.adbin IS NOT NULL)
"""


def read_catalog(conn: Conn) -> TargetCatalog:
    """The target's foreign keys and generated, identity and sequence-filled columns."""
    parents: dict[str, set[str]] = {}
    generated: dict[str, set[str]] = {}
    always: dict[str, set[str]] = {}
    sequenced: dict[str, set[str]] = {}
    with conn.cursor() as cur:
        cur.execute(_FOREIGN_KEYS)
        for child, parent in cur.fetchall():
            parents.setdefault(child, set()).add(parent)
        cur.execute(_SPECIAL_COLUMNS)
        for table, col, gen, ident, nextval in cur.fetchall():
            if gen:
                generated.setdefault(table, set()).add(col)
            if ident == "a":
                always.setdefault(table, set()).add(col)
            if ident or nextval in (True, "t", "true"):
                sequenced.setdefault(table, set()).add(col)

    def frozen(d: dict[str, set[str]]) -> dict[str, frozenset[str]]:
        return {k: frozenset(v) for k, v in d.items()}

    return TargetCatalog(frozen(parents), frozen(generated), frozen(always), frozen(sequenced))


def target_catalog(dsn: str) -> TargetCatalog:
    """:func:`read_catalog` on a connection of its own (for ``--sql`` with a target)."""
    conn = connect(dsn)
    conn.autocommit = True
    try:
        return read_catalog(conn)
    finally:
        conn.close()


def _lsn(conn: Conn, query: str) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT ({query} - '0/0'::pg_lsn)::text")
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


def check_caught_up(
    dsn: str,
    store_lsn: int,
    slot: str = "rowback",
    publication: str = "rowback",
    identity: Mapping[str, str] | None = None,
) -> None:
    """Stop unless the shadow (at ``store_lsn``) holds every transaction the target has
    committed. WAL moves on without commits (checkpoints, other databases), so when the
    target is ahead, capture's idle slot is peeked for commits it has not delivered."""
    conn = connect(dsn)
    conn.autocommit = True
    try:
        _check_is_captured(conn, slot, identity)
        current = _lsn(conn, "pg_current_wal_lsn()")
        if current <= store_lsn:
            return
        behind = (
            f"the shadow is {current - store_lsn} bytes of WAL behind the target "
            f"(shadow at {format_lsn(store_lsn)}, target at {format_lsn(current)})"
        )
        try:
            unseen = _unseen_commits(conn, store_lsn, slot, publication)
        except psycopg2.Error as e:
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RowbackError(f"{behind}, and its slot cannot tell more ({why})") from None
        if unseen:
            raise RowbackError(
                f"{behind}: {unseen} committed transaction(s) are not in the shadow yet; "
                "capture them first (rowback capture --once), then plan again"
            )
    finally:
        conn.close()


def committed_lsn(
    dsn: str, slot: str = "rowback", identity: Mapping[str, str] | None = None
) -> int:
    """The target's WAL position now, once it is known to be the captured database: a
    shadow at or past it holds every transaction the target has committed so far."""
    conn = connect(dsn)
    conn.autocommit = True
    try:
        _check_is_captured(conn, slot, identity)
        return _lsn(conn, "pg_current_wal_lsn()")
    finally:
        conn.close()


def _check_is_captured(conn: Conn, slot: str, identity: Mapping[str, str] | None) -> None:
    """The target must be the captured database: its system identifier and name are
    what capture recorded (``identity``; stores without one have only the slot to go by),
    and capture's slot lives in it."""
    with conn.cursor() as cur:
        if identity is not None:
            cur.execute(
                "SELECT system_identifier::text, current_database() FROM pg_control_system()"
            )
            got = cur.fetchone()
            assert got is not None
            want = (identity.get("system_identifier"), identity.get("database"))
            if (got[0], got[1]) != want:
                raise RowbackError(
                    f"target {got[1]!r} is not the captured database: system identifier "
                    f"{got[0]}, database {got[1]} (capture recorded {want[0]}, {want[1]})"
                )
        cur.execute(
            "SELECT current_database(), EXISTS (SELECT 1 FROM pg_replication_slots "
            "WHERE slot_name = %s AND database = current_database())",
            [slot],
        )
        row = cur.fetchone()
    assert row is not None
    if not row[1]:
        raise RowbackError(
            f"the target (database {row[0]!r}) has no replication slot {slot!r}: it is not "
            "the database this store captures (or give --slot)"
        )


def _unseen_commits(conn: Conn, store_lsn: int, slot: str, publication: str) -> int:
    """Commits of published tables after ``store_lsn`` that the slot holds (PostgreSQL 15's
    pgoutput sends no empty transactions)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, "
            "'proto_version', '1', 'publication_names', %s)",
            [slot, publication],
        )
        n = 0
        for (data,) in cur.fetchall():
            buf = bytes(data)
            if buf[:1] == b"C":
                (end_lsn,) = struct.unpack_from(">Q", buf, 10)  # after flags, commit LSN
                n += end_lsn > store_lsn
        return n


def live_values(
    dsn: str, plan_rows: Iterable[RowPlan]
) -> dict[tuple[str, tuple[Text, ...]], Row | None]:
    """What the target holds now in these rows of a plan (as PostgreSQL text; None: no
    row), for the dry run's ``current`` column (asked a chunk of rows at a time)."""
    from psycopg2 import sql as pgsql

    by_table: dict[str, list[RowPlan]] = {}
    for r in plan_rows:
        by_table.setdefault(r.table, []).append(r)
    out: dict[tuple[str, tuple[Text, ...]], Row | None] = {}
    conn = connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for table, rows in by_table.items():
                schema, _, rel = table.partition(".")
                cols = list(
                    dict.fromkeys(
                        [*rows[0].key_columns, *(c.column for r in rows for c in r.cells)]
                    )
                )
                nk = len(rows[0].key_columns)
                keys = [[r.key[i] for r in rows] for i in range(nk)]

                def texts(names: list[str]) -> pgsql.Composable:
                    return pgsql.SQL(", ").join(
                        pgsql.SQL("{}::text").format(pgsql.Identifier(c)) for c in names
                    )

                query = pgsql.SQL(
                    "SELECT {} FROM {}.{} WHERE ({}) IN (SELECT * FROM unnest({}))"
                ).format(
                    texts(cols),
                    pgsql.Identifier(schema),
                    pgsql.Identifier(rel),
                    texts(list(rows[0].key_columns)),
                    pgsql.SQL(", ").join(pgsql.SQL("%s::text[]") for _ in range(nk)),
                )
                for r in rows:
                    out[(table, r.key)] = None
                try:
                    cur.execute(query, keys)
                except psycopg2.Error as e:
                    first = str(e).strip().splitlines()[0]
                    raise RowbackError(f"cannot read {table} from the target: {first}") from None
                for got in cur.fetchall():
                    out[(table, tuple(got[:nk]))] = dict(zip(cols, got, strict=True))
    finally:
        conn.close()
    return out


def outcome(dsn: str, txid: int) -> str | None:
    """What became of the target's transaction ``txid`` (a 32-bit xid, in the current
    epoch): ``committed``, ``aborted``, ``in progress``, or None when PostgreSQL no
    longer knows (older than its commit log). A crashed apply is resolved with this."""
    conn = connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_xact_status((((pg_current_xact_id()::text::bigint >> 32) << 32)"
                " + %s)::text::xid8)",
                [txid],
            )
            row = cur.fetchone()
        return None if row is None or row[0] is None else str(row[0])
    except psycopg2.Error:
        return None
    finally:
        conn.close()


def _disable_triggers(cur: psycopg2.extensions.cursor) -> None:
    """Triggers (and foreign-key actions, which are triggers) do not fire in this
    transaction: ``session_replication_role = replica``, which needs a superuser."""
    try:
        cur.execute(f"SET LOCAL {rsql.DISABLE_TRIGGERS}")
    except psycopg2.errors.InsufficientPrivilege:
        raise RowbackError(
            "--disable-triggers: this role may not set session_replication_role "
            "(a superuser may); nothing was reverted"
        ) from None


def first_value(cur: psycopg2.extensions.cursor) -> object:
    row = cur.fetchone()
    assert row is not None
    return row[0]


Step = tuple[int, "Statement | rsql.Batch"]


def _load(
    cur: psycopg2.extensions.cursor, plan: Plan, catalog: TargetCatalog, temp: bool
) -> list[Step] | Iterator[Step]:
    """The apply's steps, numbered. With ``temp``, every batch's values are loaded by
    COPY into an analyzed temporary table first (``_rb_revert_N``), before any row of
    the target is written, so the rows are locked only for the statements themselves;
    the batches are then kept without their rows (``Batch.size``), which :func:`_lost`
    finds again in the plan if some changed since. Without, the steps as they come."""
    units = enumerate(rsql.batched(statements(plan, catalog), catalog, sets=temp))
    if not temp:
        return units
    out: list[Step] = []
    for n, unit in units:
        if isinstance(unit, rsql.Batch):
            name = f"_rb_revert_{n}"
            cur.execute(unit.create(name))
            cur.copy_expert(unit.copy(name), io.StringIO(unit.data()))
            cur.execute(f"ANALYZE {rsql.ident(name)}")
            unit = replace(unit, rows=(), size=len(unit.rows))
        out.append((n, unit))
    return out


def _lost(plan: Plan, catalog: TargetCatalog, n: int, hit: set[int], temp: bool) -> list[Statement]:
    """The rows of batch ``n`` that its statement did not change (they changed since)."""
    for m, unit in enumerate(rsql.batched(statements(plan, catalog), catalog, sets=temp)):
        if m == n and isinstance(unit, rsql.Batch):
            return [st for i, st in enumerate(unit.rows) if i not in hit]
    raise AssertionError(f"no batch {n} in the plan")


def _run_batch(cur: psycopg2.extensions.cursor, batch: rsql.Batch, temp: str | None) -> set[int]:
    """One set-based update from its loaded temporary table (dropped after), or, when
    ``temp`` is None (the role may not create one), with its values as a VALUES list;
    the positions of the rows it changed."""
    cur.execute(batch.values() if temp is None else batch.update(temp))
    hit = {int(r[0]) for r in cur.fetchall()}
    if temp is not None:
        cur.execute(f"DROP TABLE {rsql.ident(temp)}")
    return hit


def apply(
    plan: Plan,
    dsn: str,
    reversion: str,
    lock_timeout: str = LOCK_TIMEOUT,
    statement_timeout: str = STATEMENT_TIMEOUT,
    between: Callable[[], None] | None = None,
    disable_triggers: bool = False,
    started: Callable[[int], None] | None = None,
) -> Applied:
    """Run ``plan``'s statements in one transaction. A statement that changes no row means
    its row changed since the plan: nonconflict leaves it and reports it; the other modes
    roll everything back. ``started`` gets the transaction's id before any row is
    written (the record keeps it, so a crash can be resolved later: :func:`outcome`);
    ``between`` runs next (tests land a write there)."""
    if plan.refused:
        raise RowbackError("the plan has conflicts and the mode is nocascade: refused")
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('lock_timeout', %s, true)", [lock_timeout])
            cur.execute("SELECT set_config('statement_timeout', %s, true)", [statement_timeout])
            if disable_triggers:
                _disable_triggers(cur)
            cur.execute("SELECT pg_logical_emit_message(true, %s, %s)", [MESSAGE_PREFIX, reversion])
            cur.execute("SELECT pg_current_xact_id()::xid::text")
            row = cur.fetchone()
            assert row is not None
            txid = int(row[0])
            if started is not None:
                started(txid)
            if between is not None:
                between()
            catalog = read_catalog(conn)
            cur.execute("SELECT has_database_privilege(current_database(), 'TEMPORARY')")
            temp_ok = bool(first_value(cur))
            steps = _load(cur, plan, catalog, temp_ok)
            t0 = time.perf_counter()  # the first write to the target's rows
            done, missed = 0, []
            for n, unit in steps:
                if isinstance(unit, rsql.Batch):
                    size = len(unit.rows) or unit.size
                    hit = _run_batch(cur, unit, f"_rb_revert_{n}" if temp_ok else None)
                    lost = [] if len(hit) == size else _lost(plan, catalog, n, hit, temp_ok)
                else:
                    size = 1
                    cur.execute(unit.sql)
                    lost = [] if cur.rowcount == 1 else [unit]
                done += size - len(lost)
                if not lost:
                    continue
                if plan.mode is Mode.nonconflict:
                    missed += lost
                    continue
                conn.rollback()
                raise RowbackError(
                    f"{lost[0].describe()} changed after the plan (a write landed since): "
                    "nothing was reverted; plan again"
                )
        conn.commit()
        took = time.perf_counter() - t0
        return Applied(txid, done, missed, sequence_notes(plan, catalog), took)
    except psycopg2.Error as e:
        conn.rollback()
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RowbackError(f"the revert failed and was rolled back: {first}") from None
    finally:
        conn.close()
