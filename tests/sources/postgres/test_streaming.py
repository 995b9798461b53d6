"""Transactions bigger than ``logical_decoding_work_mem`` (64kB here) that PostgreSQL
streams in chunks before it knows their outcome: committed ones arrive whole and in
order, rolled back ones (entirely or to a savepoint) leave no trace, and a million-row
transaction is captured with bounded memory."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pgcap import (
    assert_same,
    capture_once,
    capture_process,
    execute,
    insert_lsn,
    opened,
    pg_connect,
    pg_state,
    scalar,
)

from rowback.filters import parse_where
from rowback.when import AtLsn

PAD = "repeat('p', 100)"  # ~130 bytes a row: 1,000 rows are well over 64kB


def _count(store_path: Path, table: str, where: str | None = None) -> int:
    with opened(store_path) as store:
        res = store.asof(table, AtLsn(2**63), parse_where(where) if where else ())
        return sum(1 for _ in res.rows)


def _streamed_count(dsn: str) -> int:
    conn = pg_connect(dsn)
    try:
        return int(
            scalar(
                conn,
                "SELECT coalesce(sum(s.stream_txns), 0) FROM pg_stat_replication_slots s "
                "JOIN pg_replication_slots r USING (slot_name) "
                "WHERE r.database = current_database()",
            )
        )
    finally:
        conn.close()


def test_streamed_commit_then_small_transactions(pg_dsn: str, store_path: Path) -> None:
    """After a streamed transaction commits, pgoutput does not resend the table's schema."""
    conn = pg_connect(pg_dsn)
    execute(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, s text)")
    capture_once(pg_dsn, store_path)
    execute(pg_dsn, f"INSERT INTO t SELECT g, {PAD} FROM generate_series(1, 2000) g")
    execute(pg_dsn, "INSERT INTO t VALUES (0, 'small')", "UPDATE t SET s = 'u' WHERE id = 1")
    execute(pg_dsn, "DELETE FROM t WHERE id = 2")
    want = insert_lsn(conn), pg_state(conn, "public.t")
    assert capture_once(pg_dsn, store_path).gaps == 0
    assert _streamed_count(pg_dsn) >= 1  # it really was streamed
    with opened(store_path) as store:
        assert_same(store, "public.t", AtLsn(want[0]), want[1])
    conn.close()


def test_streamed_transaction_rolled_back_leaves_nothing(pg_dsn: str, store_path: Path) -> None:
    conn = pg_connect(pg_dsn)
    execute(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, s text)", "INSERT INTO t VALUES (1, 'a')")
    capture_once(pg_dsn, store_path)
    execute(
        pg_dsn,
        "BEGIN",
        f"INSERT INTO t SELECT g, {PAD} FROM generate_series(100, 5100) g",
        "UPDATE t SET s = 'rolled back' WHERE id = 1",
        "DELETE FROM t WHERE id = 1",
        "ROLLBACK",
    )
    execute(pg_dsn, "INSERT INTO t VALUES (2, 'after')")  # capture must get past the abort
    want = insert_lsn(conn), pg_state(conn, "public.t")
    capture_once(pg_dsn, store_path)
    assert _streamed_count(pg_dsn) >= 1
    with opened(store_path) as store:
        assert_same(store, "public.t", AtLsn(want[0]), want[1])
        ops = [r[4] for r in store.changes("public.t").rows]
        assert ops == ["snapshot", "insert"]
    conn.close()


def test_streamed_savepoints_rolled_back(pg_dsn: str, store_path: Path) -> None:
    """ROLLBACK TO SAVEPOINT inside streamed transactions drops exactly the subtransaction,
    also when the subtransaction was the first to touch a table in this capture run."""
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        "CREATE TABLE t (id int PRIMARY KEY, s text)",
        "CREATE TABLE u (id int PRIMARY KEY, s text)",
    )
    capture_once(pg_dsn, store_path)
    execute(
        pg_dsn,
        "BEGIN",
        f"INSERT INTO t SELECT g, {PAD} FROM generate_series(1, 2000) g",
        "SAVEPOINT a",
        f"INSERT INTO t SELECT g, {PAD} FROM generate_series(10001, 13000) g",
        "UPDATE t SET s = 'aborted' WHERE id <= 10",
        "DELETE FROM t WHERE id BETWEEN 11 AND 20",
        "ROLLBACK TO SAVEPOINT a",
        "SAVEPOINT b",
        f"INSERT INTO t SELECT g, {PAD} FROM generate_series(20001, 21000) g",
        "RELEASE SAVEPOINT b",
        "UPDATE t SET s = 'kept' WHERE id = 5",
        "COMMIT",
    )
    first = insert_lsn(conn), pg_state(conn, "public.t")
    assert len(first[1].rows) == 3000
    capture_once(pg_dsn, store_path)
    # A new run (so a new pgoutput session): its first change to u is in a subtransaction
    # that is rolled back after being streamed; later changes to u must still decode.
    execute(
        pg_dsn,
        "BEGIN",
        "SAVEPOINT a",
        f"INSERT INTO u SELECT g, {PAD} FROM generate_series(1, 3000) g",
        "ROLLBACK TO SAVEPOINT a",
        f"INSERT INTO u SELECT g, {PAD} FROM generate_series(5001, 8000) g",
        "COMMIT",
        "INSERT INTO u VALUES (1, 'small, after')",
    )
    second = insert_lsn(conn), pg_state(conn, "public.u")
    assert capture_once(pg_dsn, store_path).gaps == 0
    with opened(store_path) as store:
        assert_same(store, "public.t", AtLsn(first[0]), first[1])
        assert_same(store, "public.u", AtLsn(second[0]), second[1])
        assert not list(store.history("public.t", ["10001"]).rows)
        assert [r[3] for r in store.history("public.u", ["1"]).rows] == ["insert"]
    conn.close()


@pytest.mark.slow
def test_million_row_transaction_with_bounded_memory(
    pg_dsn: str, store_path: Path, tmp_path: Path
) -> None:
    """1,000,000 inserted rows, then 1,000,000 updated rows, each in one transaction,
    captured by a separate process whose peak RSS must stay under 500 MB, with detection
    judging them as capture does by default (each held as a summary across writes)."""
    conn = pg_connect(pg_dsn)
    execute(pg_dsn, "CREATE TABLE big (id int PRIMARY KEY, v int, s text)")
    capture_once(pg_dsn, store_path)
    execute(
        pg_dsn,
        "INSERT INTO big SELECT g, g * 2, 'row ' || g FROM generate_series(1, 1000000) g",
    )
    inserted = insert_lsn(conn)
    execute(pg_dsn, "UPDATE big SET v = v + 1, s = s || '!'")
    updated = insert_lsn(conn)
    proc = capture_process(pg_dsn, store_path, once=True, spill_dir=tmp_path / "spill", detect=True)
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-2000:]
    report = dict(kv.split("=") for kv in out.strip().splitlines()[-1].split())
    peak_mb = int(report["peak_kb"]) / 1024
    print(f"capture of 2 x 1M-row transactions: peak RSS {peak_mb:.0f} MB")
    assert int(report["changes"]) == 2_000_000
    assert int(report["gaps"]) == 0
    assert peak_mb < 500
    assert not any((tmp_path / "spill").iterdir())  # spill files are removed after replay
    with opened(store_path) as store:
        for lsn, plus, suffix in ((inserted, 0, ""), (updated, 1, "!")):
            rows = list(
                store.asof("public.big", AtLsn(lsn), parse_where("id IN (1, 500000, 1000000)")).rows
            )
            assert sorted(rows) == [
                (i, i * 2 + plus, f"row {i}{suffix}") for i in (1, 500000, 1000000)
            ]
            total = store.asof("public.big", AtLsn(lsn), parse_where("id > 0"))
            assert sum(1 for _ in total.rows) == 1_000_000
    conn.close()


def test_long_replay_keeps_the_replication_connection_alive(pg_dsn: str, store_path: Path) -> None:
    """While capture replays one big transaction, PostgreSQL streams the next and waits on
    it; capture must keep answering within ``wal_sender_timeout`` (2 s here) or the server
    drops the connection ("terminating walsender process due to replication timeout")."""
    conn = pg_connect(pg_dsn)
    dbname = scalar(conn, "SELECT current_database()")
    execute(
        pg_dsn,
        f"ALTER DATABASE \"{dbname}\" SET wal_sender_timeout = '2s'",
        "CREATE TABLE t (id int PRIMARY KEY, s text)",
    )
    capture_once(pg_dsn, store_path)
    execute(pg_dsn, f"INSERT INTO t SELECT g, {PAD} FROM generate_series(1, 60000) g")
    execute(pg_dsn, f"INSERT INTO t SELECT g, {PAD} FROM generate_series(100001, 300000) g")
    want = insert_lsn(conn), pg_state(conn, "public.t")
    started = time.monotonic()
    capture_once(pg_dsn, store_path, batch_size=300)  # many small writes: a slow replay
    assert time.monotonic() - started > 4  # capture really was busy for longer than 2 s
    with opened(store_path) as store:
        assert_same(store, "public.t", AtLsn(want[0]), want[1])
    conn.close()
