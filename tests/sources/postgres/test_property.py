"""Property: whatever sequence of transactions runs on PostgreSQL, ``asof`` at every commit
equals the real tables at that commit, however capture runs are interleaved with them.

Each example gets its own database and store. Transactions mix inserts, updates (whole
row, one column, many rows, key changes), deletes, rare TRUNCATEs, savepoints rolled back
or released, whole transactions rolled back, and bulk inserts big enough for PostgreSQL
to stream them in chunks. After every transaction the test records the WAL insert
position and the three tables as PostgreSQL prints them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg2.extras
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pgcap import (
    TableState,
    assert_same,
    capture_once,
    execute,
    fresh_database,
    insert_lsn,
    opened,
    pg_connect,
    pg_state,
    scalar,
)

from rowback.pgserver import PgServer
from rowback.when import AtLsn, BeforeTx

DDL = [
    "CREATE TABLE acc (id int PRIMARY KEY, n numeric(12,2), s text, f double precision, b boolean)",
    "CREATE TABLE pair (a int, b text, v bigint, ts timestamptz, d date, PRIMARY KEY (a, b))",
    "CREATE TABLE doc (id bigint PRIMARY KEY, j jsonb, arr int[], raw bytea, r real)",
]
NAMES = ("public.acc", "public.pair", "public.doc")

_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)


@dataclass(frozen=True)
class Col:
    name: str
    type: str
    values: st.SearchStrategy[Any]


@dataclass(frozen=True)
class Tbl:
    name: str
    key: tuple[Col, ...]
    cols: tuple[Col, ...]
    bulk: str  # a statement touching many rows


TABLES = (
    Tbl(
        "acc",
        (Col("id", "int", st.integers(0, 7)),),
        (
            Col("n", "numeric(12,2)", st.decimals(-(10**9), 10**9, places=2)),
            Col("s", "text", _text),
            Col("f", "double precision", st.floats()),
            Col("b", "boolean", st.booleans()),
        ),
        "UPDATE acc SET n = n + 1, b = NOT b WHERE id % 2 = 0",
    ),
    Tbl(
        "pair",
        (Col("a", "int", st.integers(0, 3)), Col("b", "text", st.sampled_from(["x", "é", " "]))),
        (
            Col("v", "bigint", st.integers(-(2**63), 2**63 - 1)),
            Col(
                "ts",
                "timestamptz",
                st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1), timezones=_zones),
            ),
            Col("d", "date", st.dates()),
        ),
        "UPDATE pair SET v = v / 2, d = d + 1 WHERE d < '9000-01-01'",
    ),
    Tbl(
        "doc",
        (Col("id", "bigint", st.sampled_from([-1, 0, 5, 2**40])),),
        (
            Col("j", "jsonb", _json.map(psycopg2.extras.Json)),
            Col("arr", "int[]", st.lists(st.none() | st.integers(-(2**31), 2**31 - 1), max_size=4)),
            Col("raw", "bytea", st.binary(max_size=16)),
            Col("r", "real", st.floats(width=32)),
        ),
        "DELETE FROM doc WHERE r IS NULL OR r < 0",
    ),
)


def _maybe_null(c: Col) -> st.SearchStrategy[Any]:
    return st.none() | c.values


Op = tuple[str, list[Any]]


def _where(t: Tbl) -> str:
    return " AND ".join(f"{k.name} = CAST(%s AS {k.type})" for k in t.key)


@st.composite
def _op(draw: st.DrawFn, depth: int = 0) -> list[Op]:
    t = draw(st.sampled_from(TABLES))
    key = [draw(k.values) for k in t.key]
    keys = ", ".join(k.name for k in t.key)
    kinds = ["upsert"] * 4 + ["update", "column", "delete", "delete", "rekey", "bulk", "many"]
    kind = draw(st.sampled_from(kinds + ["savepoint"] * (depth == 0) + ["truncate"]))
    if kind == "upsert":
        vals = [draw(_maybe_null(c)) for c in t.cols]
        cols = [*t.key, *t.cols]
        names = ", ".join(c.name for c in cols)
        params = ", ".join(f"CAST(%s AS {c.type})" for c in cols)
        sets = ", ".join(f"{c.name} = EXCLUDED.{c.name}" for c in t.cols)
        return [
            (
                f"INSERT INTO {t.name} ({names}) VALUES ({params}) "
                f"ON CONFLICT ({keys}) DO UPDATE SET {sets}",
                [*key, *vals],
            )
        ]
    if kind in ("update", "column"):
        cols = list(t.cols) if kind == "update" else [draw(st.sampled_from(t.cols))]
        vals = [draw(_maybe_null(c)) for c in cols]
        sets = ", ".join(f"{c.name} = CAST(%s AS {c.type})" for c in cols)
        return [(f"UPDATE {t.name} SET {sets} WHERE {_where(t)}", [*vals, *key])]
    if kind == "delete":
        return [(f"DELETE FROM {t.name} WHERE {_where(t)}", key)]
    if kind == "rekey":
        new = [draw(k.values) for k in t.key]
        sets = ", ".join(f"{k.name} = CAST(%s AS {k.type})" for k in t.key)
        return [
            (
                f"UPDATE {t.name} SET {sets} WHERE {_where(t)} "
                f"AND NOT EXISTS (SELECT 1 FROM {t.name} WHERE {_where(t)})",
                [*new, *key, *new],
            )
        ]
    if kind == "bulk":
        return [(t.bulk, [])]
    if kind == "many":  # big enough to be streamed when n is large (64kB decoding memory)
        n = draw(st.sampled_from([3, 1200]))
        return [
            (
                "INSERT INTO acc SELECT g, g, repeat('m', 90), g, true "
                "FROM generate_series(1000, 1000 + %s) g "
                "ON CONFLICT (id) DO UPDATE SET s = acc.s || '!'",
                [n],
            )
        ]
    if kind == "truncate":
        return [(f"TRUNCATE {t.name}", [])]
    inner = draw(st.lists(_op(depth=1), min_size=1, max_size=3))
    end = "ROLLBACK TO SAVEPOINT sp" if draw(st.booleans()) else "RELEASE SAVEPOINT sp"
    return [("SAVEPOINT sp", []), *(o for ops in inner for o in ops), (end, [])]


@dataclass
class Tx:
    ops: list[Op]
    abort: bool
    capture_after: bool


_tx = st.builds(
    Tx,
    st.lists(_op(), min_size=1, max_size=4).map(lambda xs: [o for ops in xs for o in ops]),
    st.sampled_from([False] * 5 + [True]),
    st.booleans(),
)


@dataclass
class Checkpoint:
    lsn: int
    states: dict[str, TableState]
    txid: int | None  # set when the transaction committed changes (BeforeTx applies)
    before: dict[str, TableState] | None


def _run_tx(conn: Any, tx: Tx) -> tuple[int, bool]:
    """Run one transaction; return its txid and whether it committed any row change."""
    changed = False
    in_savepoint = False
    sp_changed = False
    with conn.cursor() as cur:
        txid = int(scalar(conn, "SELECT txid_current()"))
        for text, args in tx.ops:
            cur.execute(text, args or None)
            if text == "SAVEPOINT sp":
                in_savepoint, sp_changed = True, False
            elif text.startswith("ROLLBACK TO"):
                in_savepoint = False
            elif text.startswith("RELEASE"):
                in_savepoint, changed = False, changed or sp_changed
            elif cur.rowcount != 0 or text.startswith("TRUNCATE"):
                if in_savepoint:
                    sp_changed = True
                else:
                    changed = True
    if tx.abort:
        conn.rollback()
        return txid, False
    conn.commit()
    return txid, changed


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    setup=st.lists(_tx, min_size=0, max_size=3),
    txs=st.lists(_tx, min_size=1, max_size=8),
    batch_size=st.sampled_from([3, 50, 20_000]),
)
def test_asof_equals_postgres_at_every_commit(
    pg_server: PgServer, setup: list[Tx], txs: list[Tx], batch_size: int
) -> None:
    with fresh_database(pg_server) as dsn, tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "store"
        execute(dsn, *DDL)
        conn = pg_connect(dsn, autocommit=False)
        try:
            _check(dsn, conn, store_path, setup, txs, batch_size)
        finally:
            conn.close()


def _states(conn: Any) -> dict[str, TableState]:
    out = {n: pg_state(conn, n) for n in NAMES}
    conn.commit()
    return out


def _check(
    dsn: str, conn: Any, store_path: Path, setup: list[Tx], txs: list[Tx], batch_size: int
) -> None:
    for tx in setup:
        _run_tx(conn, tx)
    at_snapshot = _states(conn)
    gaps = capture_once(dsn, store_path, batch_size=batch_size).gaps
    points: list[Checkpoint] = []
    before = at_snapshot
    for tx in txs:
        txid, changed = _run_tx(conn, tx)
        states = _states(conn)
        lsn = insert_lsn(conn)
        conn.commit()
        points.append(Checkpoint(lsn, states, txid if changed else None, before))
        before = states
        if tx.capture_after:
            gaps += capture_once(dsn, store_path, batch_size=batch_size).gaps
    gaps += capture_once(dsn, store_path, batch_size=batch_size).gaps
    assert gaps == 0
    with opened(store_path) as store:
        pos = store.position("postgres")
        assert pos is not None
        for name in NAMES:
            assert_same(store, name, AtLsn(int(pos["snapshot_lsn"])), at_snapshot[name])
        for p in points:
            for name in NAMES:
                assert_same(store, name, AtLsn(p.lsn), p.states[name])
                if p.txid is not None and p.before is not None:
                    assert_same(store, name, BeforeTx(p.txid), p.before[name])
        for t in store.tables():
            hist = store.table(t.qualified).hist
            total, distinct = store.sql(
                f"SELECT count(*), count(DISTINCT (_lsn, _txid, _seq)) FROM {hist}"
            )[0]
            assert total == distinct, f"{t.qualified}: duplicate versions"
        # an unchanged source adds nothing on a further run
        before_rows = [
            store.sql(f"SELECT count(*) FROM {store.table(n).hist}")[0][0] for n in NAMES
        ]
    capture_once(dsn, store_path, batch_size=batch_size)
    with opened(store_path) as store:
        after_rows = [store.sql(f"SELECT count(*) FROM {store.table(n).hist}")[0][0] for n in NAMES]
    assert after_rows == before_rows
