"""Values beyond the store's DuckDB types: NaN and infinities in ``numeric(p,s)``, BC and
infinite dates and times, and years past what Python or DuckDB hold. Each goes through the
snapshot and the stream, both write paths, UPDATEs to and from it, as a key, as a missing
value, and comes back exactly from every ``asof`` plan, ``history``, ``tx`` and ``changes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import shown
from pgcap import TableState, assert_same, execute, insert_lsn, pg_connect, pg_state

from rowback.errors import RowbackError
from rowback.sources.postgres.capture import Capture, CaptureConfig
from rowback.store.duckdb import DuckDBStore, queries
from rowback.store.duckdb.store import FILE_NAME
from rowback.when import AtLsn

PLANS = ("fold", "checkpoint", "head")

# (type, an ordinary value, values beyond DuckDB's type or Python's, whether they widen)
CASES = [
    ("numeric(12,2)", "12.50", ["NaN"], True),  # numeric(p,s) holds no infinities
    (
        "date",
        "9999-12-31",  # the usual "end of time": must not turn into 'infinity'
        ["infinity", "-infinity", "0044-03-15 BC", "4714-11-24 BC", "10000-01-01"],
        False,
    ),
    (
        "timestamp",
        "9999-12-31 23:59:59.999999",
        ["infinity", "-infinity", "0044-03-15 10:00:00.5 BC", "0001-12-31 23:00:00 BC"],
        False,
    ),
    (
        "timestamptz",
        "2020-06-01 19:30:00.123456+00",
        ["-infinity", "infinity", "0001-01-01 00:00:00+00 BC", "12345-06-07 08:09:10+00"],
        False,
    ),
    # after DuckDB's last timestamp (294247): the column widens to text
    ("timestamp", "2020-01-01 00:00:00", ["294276-12-31 23:59:59.999999", "infinity"], True),
    ("timestamptz", "2020-01-01 00:00:00+00", ["294276-12-31 23:59:59+00", "-infinity"], True),
]


def capture(dsn: str, path: Path, **store: Any) -> None:
    """One ``once`` run into a store opened with ``store`` options (write path, checkpoints)."""
    with DuckDBStore(path, **store) as s:
        assert Capture(CaptureConfig(dsn, once=True), s).run().gaps == 0


def plans_at(store: DuckDBStore, table: str, lsn: int) -> list[str]:
    """The plans that can answer ``table`` at ``lsn``."""
    out = []
    for plan in PLANS:
        try:
            queries.asof(store._con, store.table(table), AtLsn(lsn), plan=plan)
        except RowbackError:
            continue
        out.append(plan)
    return out


def assert_every_plan(
    store: DuckDBStore, table: str, states: list[tuple[int, TableState]]
) -> set[str]:
    """Every plan that can answer each (LSN, state) gives exactly it; the plans used."""
    used = set()
    for lsn, want in states:
        for plan in plans_at(store, table, lsn):
            assert_same(store, table, AtLsn(lsn), want, plan)
            used.add(plan)
    return used


def lit(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


@pytest.mark.parametrize("vectorized", [True, False], ids=["vectorized", "rowwise"])
@pytest.mark.parametrize(("pg_type", "ordinary", "special", "widens"), CASES)
def test_beyond_through_snapshot_stream_updates_and_keys(
    pg_dsn: str,
    store_path: Path,
    vectorized: bool,
    pg_type: str,
    ordinary: str,
    special: list[str],
    widens: bool,
) -> None:
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        f"CREATE TABLE t (id int PRIMARY KEY, v {pg_type}, note text)",
        "ALTER TABLE t REPLICA IDENTITY FULL",  # before images, checked against history
        f"CREATE TABLE k (v {pg_type} PRIMARY KEY, note text)",
        f"INSERT INTO t VALUES (1, {lit(ordinary)}), (2, {lit(special[0])}), (3, NULL)",
        f"INSERT INTO k VALUES ({lit(ordinary)}, 'o'), ({lit(special[0])}, 's')",
    )
    capture(pg_dsn, store_path, vectorized=vectorized)
    states = [(insert_lsn(conn), pg_state(conn, "public.t"), pg_state(conn, "public.k"))]
    rows = ", ".join(f"({10 + i}, {lit(v)})" for i, v in enumerate(special))
    keys = [f"INSERT INTO k VALUES ({lit(v)}, 'n')" for v in special[1:]]
    execute(pg_dsn, f"INSERT INTO t VALUES {rows}", *keys)
    states.append((insert_lsn(conn), pg_state(conn, "public.t"), pg_state(conn, "public.k")))
    execute(
        pg_dsn,
        "BEGIN",
        f"UPDATE t SET v = {lit(special[-1])} WHERE id = 1",  # to a special value
        f"UPDATE t SET v = {lit(ordinary)} WHERE id = 2",  # from one
        "UPDATE t SET note = 'kept' WHERE id = 10",  # beside one
        f"UPDATE k SET note = 'u' WHERE v = {lit(special[0])}",
        f"DELETE FROM k WHERE v = {lit(ordinary)}",
        "COMMIT",
    )
    txid = int(_scalar(conn, "SELECT max(xmin::text::bigint) FROM t"))
    states.append((insert_lsn(conn), pg_state(conn, "public.t"), pg_state(conn, "public.k")))
    capture(pg_dsn, store_path, vectorized=vectorized)
    with DuckDBStore(store_path, read_only=True) as store:
        for name, pick in (("public.t", 1), ("public.k", 2)):
            used = assert_every_plan(store, name, [(s[0], s[pick]) for s in states])
            assert used == {"fold", "head"}
            v = next(c for c in store.table(name).columns if c.name == "v")
            assert v.widened is widens
        # history, tx and changes give what Python cannot hold as PostgreSQL's text
        hist = shown(store.history("public.t", ["1"]))
        assert [h[3] for h in hist] == ["snapshot", "update"]
        assert hist[1][4]["v"] != special[-1] and hist[1][5]["v"] == special[-1]
        assert hist[1][6] == ["v"]
        hist = shown(store.history("public.t", ["2"]))
        assert hist[0][5]["v"] == special[0] and hist[1][4]["v"] == special[0]
        for v in special[1:]:
            assert [h[3] for h in store.history("public.k", [v]).rows] == ["insert"]
        assert [h[3] for h in store.history("public.k", [special[0]]).rows] == [
            "snapshot",
            "update",
        ]
        assert [h[3] for h in store.history("public.k", [ordinary]).rows] == [
            "snapshot",
            "delete",
        ]
        tx = {(r[2], r[3], str(r[4])): r for r in shown(store.tx(txid))}
        assert tx[("public.t", "update", "{'id': 1}")][6]["v"] == special[-1]
        assert tx[("public.t", "update", "{'id': 2}")][5]["v"] == special[0]
        beside = tx[("public.t", "update", "{'id': 10}")]
        assert beside[5]["v"] == beside[6]["v"] == special[0]
        assert tx[("public.k", "update", str({"v": special[0]}))][5]["note"] == "s"
        assert [r[5]["note"] for r in tx.values() if r[3] == "delete"] == ["o"]
        log = shown(store.changes("public.t", since=AtLsn(states[0][0])))
        written = [r[6]["v"] for r in log if r[4] == "insert"]
        assert written == special
    conn.close()


def _scalar(conn: Any, q: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(q)
        return cur.fetchone()[0]


@pytest.mark.parametrize("vectorized", [True, False], ids=["vectorized", "rowwise"])
@pytest.mark.parametrize(
    ("pg_type", "values", "beyond"),
    [
        ("numeric(12,2)", ["1.50", "2.00", "3.25", "-4.00"], ["NaN", "NaN", "NaN"]),
        (
            "timestamp",
            ["2020-01-01 00:00:00", "0044-03-15 10:00:00 BC", "infinity", "2021-01-01 10:00:00"],
            ["294276-12-31 23:59:59.999999", "294247-02-01 00:00:00", "-infinity"],
        ),
    ],
)
def test_asof_across_a_widening_from_a_checkpoint_taken_before(
    pg_dsn: str,
    store_path: Path,
    vectorized: bool,
    pg_type: str,
    values: list[str],
    beyond: list[str],
) -> None:
    """A checkpoint taken while the column was typed, then values that widen it: every
    plan at every point before and after gives PostgreSQL's state."""
    conn = pg_connect(pg_dsn)
    opts = {"vectorized": vectorized, "checkpoint_every": 2}
    execute(
        pg_dsn,
        f"CREATE TABLE w (id int PRIMARY KEY, v {pg_type}, n int)",
        f"INSERT INTO w VALUES (1, {lit(values[0])}, 0), (2, {lit(values[1])}, 0)",
    )
    capture(pg_dsn, store_path, **opts)
    states = [(insert_lsn(conn), pg_state(conn, "public.w"))]
    for i, v in enumerate(values[2:], start=1):  # two changes: a checkpoint, typed
        execute(pg_dsn, f"UPDATE w SET v = {lit(v)}, n = {i} WHERE id = {i}")
        states.append((insert_lsn(conn), pg_state(conn, "public.w")))
    execute(pg_dsn, "INSERT INTO w VALUES (3, NULL, 0)")
    states.append((insert_lsn(conn), pg_state(conn, "public.w")))
    capture(pg_dsn, store_path, **opts)
    with DuckDBStore(store_path, read_only=True) as store:
        t = store.table("public.w")
        assert t.checkpoints and not any(c.widened for c in t.columns)
        typed = store.sql(f"SELECT max(_pos) FROM {t.hist}")[0][0]
    execute(pg_dsn, f"UPDATE w SET v = {lit(beyond[0])}, n = 9 WHERE id = 1")
    states.append((insert_lsn(conn), pg_state(conn, "public.w")))
    execute(
        pg_dsn,
        f"UPDATE w SET v = {lit(beyond[1])} WHERE id = 3",
        f"INSERT INTO w VALUES (4, {lit(beyond[2])}, 4)",
        "UPDATE w SET n = 5 WHERE id = 2",
    )
    states.append((insert_lsn(conn), pg_state(conn, "public.w")))
    capture(pg_dsn, store_path, **opts)
    with DuckDBStore(store_path, read_only=True) as store:
        t = store.table("public.w")
        v = next(c for c in t.columns if c.name == "v")
        assert v.widened
        assert t.checkpoints[0].pos <= typed < t.checkpoints[-1].pos  # before and after
        kinds = store.sql(
            "SELECT table_name, data_type FROM duckdb_columns() "
            f"WHERE column_name = 'c{v.phys}' AND table_name IN (?, ?, ?)",
            [t.hist, t.head, t.ckpt],
        )
        assert {k for _, k in kinds} == {"VARCHAR"} and len(kinds) == 3
        assert assert_every_plan(store, "public.w", states) == set(PLANS)
        hist = [h[5]["v"] if h[5] else None for h in shown(store.history("public.w", ["1"]))]
        assert hist[-1] == beyond[0]
    conn.close()


def test_missing_values_beyond_the_type(pg_dsn: str, store_path: Path) -> None:
    """ADD COLUMN ... DEFAULT with a value beyond the column's DuckDB type: rows that existed
    read it, by every plan and in ``history``."""
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        "CREATE TABLE m (id int PRIMARY KEY, a int)",
        "INSERT INTO m SELECT g, g FROM generate_series(1, 4) g",
    )
    capture(pg_dsn, store_path, checkpoint_every=2)
    states = [(insert_lsn(conn), pg_state(conn, "public.m"))]
    execute(
        pg_dsn,
        "ALTER TABLE m ADD COLUMN n numeric(5,2) DEFAULT 'NaN', "
        "ADD COLUMN d date DEFAULT 'infinity', ADD COLUMN b timestamp DEFAULT '0044-03-15 BC'",
        "UPDATE m SET a = -1 WHERE id = 1",
        "UPDATE m SET n = 1.5, d = '2020-01-01' WHERE id = 2",
    )
    states.append((insert_lsn(conn), pg_state(conn, "public.m")))
    execute(pg_dsn, "UPDATE m SET a = 0 WHERE id = 3", "UPDATE m SET n = 2 WHERE id = 4")
    states.append((insert_lsn(conn), pg_state(conn, "public.m")))
    capture(pg_dsn, store_path, checkpoint_every=2)
    with DuckDBStore(store_path, read_only=True) as store:
        n = next(c for c in store.table("public.m").columns if c.name == "n")
        assert n.widened and n.missing == "NaN"
        assert assert_every_plan(store, "public.m", states) == set(PLANS)
        last = shown(store.history("public.m", ["3"]))[-1]
        assert last[5] == {
            "id": 3,
            "a": 0,
            "n": "NaN",
            "d": "infinity",
            "b": "0044-03-15 00:00:00 BC",
        }
    conn.close()


def test_tx_before_images_of_many_keys_beyond_python(pg_dsn: str, store_path: Path) -> None:
    """A transaction touching more keys than fit a short OR list (their state before it is
    found by a join on the keys' text), keys BC and infinite."""
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        "CREATE TABLE e (d date PRIMARY KEY, n int)",
        "INSERT INTO e SELECT '0100-01-01 BC'::date + g, 0 FROM generate_series(1, 70) g",
        "INSERT INTO e VALUES ('infinity', 0), ('-infinity', 0), ('9999-12-31', 0)",
    )
    capture(pg_dsn, store_path)
    execute(pg_dsn, "UPDATE e SET n = 1")
    execute(pg_dsn, "UPDATE e SET n = 2")
    txid = int(_scalar(conn, "SELECT max(xmin::text::bigint) FROM e"))
    capture(pg_dsn, store_path)
    with DuckDBStore(store_path, read_only=True) as store:
        rows = shown(store.tx(txid))
        assert len(rows) == 73
        assert all(r[5]["n"] == 1 and r[6]["n"] == 2 for r in rows)
        keys = {r[4]["d"] for r in rows}
        assert {"infinity", "-infinity", "9999-12-31", "0100-01-02 BC", "0100-03-11 BC"} <= keys
        assert keys == {k[0] for k in pg_state(conn, "public.e").rows}  # JSON: ISO dates
    conn.close()


def test_store_without_widened_table_opens_read_only(pg_dsn: str, store_path: Path) -> None:
    """A store written before ``_rb_widened`` existed opens read-only and answers; opened
    writable, it gets the table and can widen."""
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn, "CREATE TABLE o (id int PRIMARY KEY, v numeric(6,2))", "INSERT INTO o VALUES (1, 1)"
    )
    capture(pg_dsn, store_path)
    con = duckdb.connect(str(store_path / FILE_NAME))
    con.execute("DROP TABLE _rb_widened")
    con.close()
    want = insert_lsn(conn), pg_state(conn, "public.o")
    with DuckDBStore(store_path, read_only=True) as store:
        assert_same(store, "public.o", AtLsn(want[0]), want[1])
    execute(pg_dsn, "UPDATE o SET v = 'NaN'")
    later = insert_lsn(conn), pg_state(conn, "public.o")
    capture(pg_dsn, store_path)
    with DuckDBStore(store_path, read_only=True) as store:
        assert assert_every_plan(store, "public.o", [want, later]) == {"fold", "head"}
    conn.close()
