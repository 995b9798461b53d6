"""Helpers for the PostgreSQL capture tests: read the truth from PostgreSQL, read the store,
and put both in one comparable form.

PostgreSQL's side is read through its *output functions* (what ``SELECT col`` sends as
text, the same form ``pgoutput`` uses) with the session settings capture uses; the store's
typed Python values are turned back into that form by :func:`canon_store`. Floats are
compared as values (``real`` at single precision), everything else as exact text.
"""

from __future__ import annotations

import secrets
import struct
import subprocess
import sys
import textwrap
import time as time_mod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from rowback.pgserver import PgServer
from rowback.sources.postgres.capture import Capture, CaptureConfig, CaptureStatus
from rowback.sources.postgres.source_catalog import SESSION_OPTIONS
from rowback.store.duckdb import DuckDBStore, queries
from rowback.when import Point

Conn = psycopg2.extensions.connection
Key = tuple[object, ...]


def pg_connect(dsn: str, autocommit: bool = True) -> Conn:
    """A connection that returns every value as its output-function text (None for NULL)."""
    conn = psycopg2.connect(dsn, options=SESSION_OPTIONS)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT array_agg(oid::int) FROM pg_type")
        row = cur.fetchone()
        assert row is not None
    raw = psycopg2.extensions.new_type(tuple(row[0]), "RAWTEXT", lambda v, _c: v)
    psycopg2.extensions.register_type(raw, conn)
    conn.autocommit = autocommit
    return conn


def execute(dsn: str, *statements: str) -> None:
    """Run statements in one autocommit session."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
    finally:
        conn.close()


def scalar(conn: Conn, query: str, args: Sequence[object] = ()) -> Any:
    with conn.cursor() as cur:
        cur.execute(query, list(args))
        row = cur.fetchone()
        return None if row is None else row[0]


def insert_lsn(conn: Conn) -> int:
    """The current WAL insert position as an integer (call right after a commit)."""
    return int(scalar(conn, "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text"))


@dataclass
class TableState:
    """A table's columns (name -> PostgreSQL type) and rows by key, in comparable form."""

    types: dict[str, str]
    key: tuple[str, ...]
    rows: dict[Key, dict[str, object]]

    def __repr__(self) -> str:  # short diffs in assertion messages
        return f"TableState({sorted(self.types)}, {len(self.rows)} rows)"


def pg_state(conn: Conn, table: str) -> TableState:
    """Everything in ``table`` right now, as PostgreSQL prints it."""
    cols = _pg_columns(conn, table)
    types = {n: t for n, t, _ in cols}
    key = tuple(n for n, _, k in cols if k)
    schema, _, rel = table.partition(".")
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT {} FROM {}.{}").format(
                sql.SQL(", ").join(sql.Identifier(n) for n, _, _ in cols),
                sql.Identifier(schema),
                sql.Identifier(rel),
            )
        )
        rows = cur.fetchall()
    names = [n for n, _, _ in cols]
    out: dict[Key, dict[str, object]] = {}
    for r in rows:
        row = {n: canon_pg(v, types[n]) for n, v in zip(names, r, strict=True)}
        out[tuple(row[k] for k in key)] = row
    return TableState(types, key, out)


def _pg_columns(conn: Conn, table: str) -> list[tuple[str, str, bool]]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
            "coalesce(a.attnum = ANY(i.indkey), false)::text "
            "FROM pg_attribute a LEFT JOIN pg_index i "
            "ON i.indrelid = a.attrelid AND i.indisprimary "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            [table],
        )
        return [(n, t, k in ("t", "true")) for n, t, k in cur.fetchall()]


def store_state(
    store: DuckDBStore, table: str, point: Point, like: TableState, plan: str | None = None
) -> TableState:
    """The store's ``asof`` answer in the same form as ``like`` (a PostgreSQL state), by
    ``plan`` when given (``fold``, ``checkpoint``, ``head``)."""
    if plan is None:
        res = store.asof(table, point)
    else:
        res = queries.asof(store._con, store.table(table), point, plan=plan)
    rows: dict[Key, dict[str, object]] = {}
    names = list(res.columns)
    types = like.types
    for r in res.rows:
        row = {n: canon_store(v, types.get(n, "?")) for n, v in zip(names, r, strict=True)}
        k = tuple(row.get(c) for c in like.key)
        assert k not in rows, f"{table}: key {k} twice in asof"
        rows[k] = row
    # The store knows its own column types; report them so a missing/extra column shows.
    return TableState({n: types.get(n, "?") for n in names}, like.key, rows)


def assert_same(
    store: DuckDBStore, table: str, point: Point, want: TableState, plan: str | None = None
) -> None:
    """``asof(point)`` (by ``plan``) must equal ``want`` exactly: same columns, same keys,
    same values."""
    got = store_state(store, table, point, want, plan)
    assert sorted(got.types) == sorted(want.types), f"{table} at {point}: columns differ"
    missing = want.rows.keys() - got.rows.keys()
    extra = got.rows.keys() - want.rows.keys()
    assert not missing and not extra, (
        f"{table} at {point}: missing keys {sorted(map(str, missing))[:5]}, "
        f"extra keys {sorted(map(str, extra))[:5]}"
    )
    for k, row in want.rows.items():
        diff = {
            c: (_short(v), _short(got.rows[k].get(c)))
            for c, v in row.items()
            if got.rows[k].get(c) != v
        }
        assert not diff, f"{table} at {point}, key {k}: (postgres, store) {diff}"


def _short(v: object) -> object:
    return v if not isinstance(v, str) or len(v) < 80 else f"{v[:60]}…({len(v)} chars)"


# -- canonical forms ------------------------------------------------------------------


def _f32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def _float(x: float, pg_type: str) -> str:
    """A float's value; ``real`` at single precision. The sign of zero is dropped: DuckDB
    2.0.1's ``arg_max`` over a stored column turns -0.0 into 0.0 under a ``WHERE``."""
    return repr((_f32(x) if pg_type == "real" else x) + 0.0)


def canon_pg(text: str | None, pg_type: str) -> object:
    """PostgreSQL's text of a value, with floats read as numbers."""
    if text is None:
        return None
    if pg_type in ("real", "double precision"):
        return _float(float(text), pg_type)
    return text


def _frac(us: int) -> str:
    return f".{us:06d}".rstrip("0") if us else ""


def canon_store(v: object, pg_type: str) -> object:
    """A value as the store returns it, back in PostgreSQL's output form."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, float):
        return _float(v, pg_type)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            u = v.astimezone(UTC)
            return f"{u.year:04d}-{u:%m-%d %H:%M:%S}{_frac(u.microsecond)}+00"
        return f"{v.year:04d}-{v:%m-%d %H:%M:%S}{_frac(v.microsecond)}"
    if isinstance(v, date):
        return f"{v.year:04d}-{v:%m-%d}"
    if isinstance(v, time):
        return f"{v:%H:%M:%S}{_frac(v.microsecond)}"
    if isinstance(v, UUID):
        return str(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return "\\x" + bytes(v).hex()
    if isinstance(v, str):
        return canon_pg(v, pg_type)
    raise TypeError(f"unexpected value from the store: {v!r} ({type(v).__name__})")


# -- running capture ------------------------------------------------------------------


def capture_once(
    dsn: str, store_path: Path, checkpoint_every: int | None = None, **kw: Any
) -> CaptureStatus:
    """One ``once`` capture run into the store at ``store_path`` (opened and closed here;
    ``checkpoint_every`` as ``DuckDBStore`` takes it)."""
    store = DuckDBStore(store_path, checkpoint_every=checkpoint_every)
    try:
        return Capture(CaptureConfig(dsn, once=True, **kw), store).run()
    finally:
        store.close()


@contextmanager
def opened(store_path: Path) -> Iterator[DuckDBStore]:
    store = DuckDBStore(store_path)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def fresh_database(server: PgServer) -> Iterator[str]:
    """A new database for code that cannot use the function-scoped ``pg_dsn`` fixture."""
    name = f"h_{secrets.token_hex(6)}"
    dsn = server.create_database(name)
    try:
        yield dsn
    finally:
        drop_database(server.dsn(), name)


def drop_database(admin_dsn: str, name: str) -> None:
    """Drop ``name`` with its replication slots (ending the walsenders that hold them)."""
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            deadline = time_mod.monotonic() + 10
            while True:
                cur.execute(
                    "SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots"
                    " WHERE database = %s AND active_pid IS NOT NULL",
                    [name],
                )
                try:
                    cur.execute(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                        " WHERE database = %s",
                        [name],
                    )
                    break
                except (psycopg2.errors.ObjectInUse, psycopg2.errors.UndefinedObject):
                    if time_mod.monotonic() > deadline:
                        raise
                    time_mod.sleep(0.05)
            cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


CAPTURE_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from rowback.sources.postgres.capture import Capture, CaptureConfig
    from rowback.store.duckdb import DuckDBStore

    dsn, path, once, spill = sys.argv[1], sys.argv[2], sys.argv[3] == "once", sys.argv[4]
    store = DuckDBStore(path)
    cfg = CaptureConfig(
        dsn, once=once, spill_dir=Path(spill), rescan_interval=0.5, batch_size=int(sys.argv[5])
    )
    if len(sys.argv) > 6 and sys.argv[6] == "detect":
        from rowback.detect.watch import attach

        attach(store)
    status = Capture(cfg, store).run()
    store.close()
    # VmHWM, not ru_maxrss: Linux carries the parent's peak across fork and exec
    hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0]
    peak_kb = int(hwm.split()[1])
    print(f"peak_kb={peak_kb} changes={status.changes} gaps={status.gaps}", flush=True)
    """
)


def capture_and_check(
    dsn: str, store_path: Path, table: str, states: Sequence[tuple[int, TableState]]
) -> None:
    """Capture what is committed; then ``asof`` at each (LSN, state) must equal it."""
    from rowback.when import AtLsn

    status = capture_once(dsn, store_path)
    assert status.gaps == 0
    with opened(store_path) as store:
        for lsn, want in states:
            assert_same(store, table, AtLsn(lsn), want)


def capture_process(
    dsn: str,
    store_path: Path,
    once: bool,
    spill_dir: Path,
    batch_size: int = 20_000,
    detect: bool = False,
    **kw: Any,
) -> subprocess.Popen[str]:
    """Capture in a child process (``python -c``), judged by detection with ``detect``;
    its last line reports its peak RSS."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CAPTURE_SCRIPT,
            dsn,
            str(store_path),
            "once" if once else "run",
            str(spill_dir),
            str(batch_size),
            "detect" if detect else "plain",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def slot_state(dsn: str, slot: str = "rowback") -> tuple[bool, bool]:
    """(exists, active) of capture's replication slot."""
    conn = pg_connect(dsn)
    try:
        active = scalar(
            conn,
            "SELECT active::text FROM pg_replication_slots "
            "WHERE slot_name = %s AND database = current_database()",
            [slot],
        )
        return active is not None, active == "true"
    finally:
        conn.close()


def wait_streaming(dsn: str, proc: subprocess.Popen[str], timeout: float = 90.0) -> None:
    """Until a capture child holds its slot: it does once its snapshot is stored and it
    streams. A test that must change the source *after* the snapshot waits for this; a
    fixed sleep loses that race on a slow machine."""
    deadline = time_mod.monotonic() + timeout
    while not slot_state(dsn)[1]:
        assert proc.poll() is None, proc.stderr and proc.stderr.read()
        assert time_mod.monotonic() < deadline, "capture did not start streaming"
        time_mod.sleep(0.05)


def without_new_table_trigger(dsn: str, publication: str = "rowback") -> None:
    """Install capture's new-table trigger disabled, so capture takes new tables the way it
    must without one (by snapshot, at a rescan)."""
    from rowback.sources.postgres import new_tables

    name = new_tables.trigger_name(publication)
    execute(
        dsn,
        *new_tables.install_sql(publication).split("\n"),
        f'ALTER EVENT TRIGGER "{name}" DISABLE',
    )
