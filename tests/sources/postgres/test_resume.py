"""Resuming capture: a run with nothing new adds nothing, the slot is confirmed only up to
what the store holds (and does advance to it), and a lost slot is a one-line error."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pgcap import (
    assert_same,
    capture_once,
    execute,
    insert_lsn,
    opened,
    pg_connect,
    pg_state,
    scalar,
)

from rowback.errors import RowbackError
from rowback.sources.postgres.capture import Capture, CaptureConfig
from rowback.store.duckdb import DuckDBStore
from rowback.when import AtLsn


def _confirmed(dsn: str, slot: str = "rowback") -> int:
    conn = pg_connect(dsn)
    try:
        return int(
            scalar(
                conn,
                "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::text FROM pg_replication_slots "
                "WHERE slot_name = %s AND database = current_database()",
                [slot],
            )
        )
    finally:
        conn.close()


def _counts(store_path: Path) -> tuple[int, ...]:
    with opened(store_path) as store:
        hist = [
            store.sql(f"SELECT count(*) FROM {store.table(t.qualified).hist}")[0][0]
            for t in store.tables()
        ]
        return (*hist, store.sql("SELECT count(*) FROM _rb_tx")[0][0])


def test_runs_without_changes_add_nothing(pg_dsn: str, store_path: Path) -> None:
    execute(
        pg_dsn,
        "CREATE TABLE t (id int PRIMARY KEY, v int)",
        "INSERT INTO t SELECT g, g FROM generate_series(1, 100) g",
    )
    capture_once(pg_dsn, store_path)
    execute(pg_dsn, "UPDATE t SET v = v + 1 WHERE id <= 10", "DELETE FROM t WHERE id = 50")
    capture_once(pg_dsn, store_path, batch_size=3)
    counts = _counts(store_path)
    assert counts[0] == 100 + 10 + 1
    for _ in range(2):
        status = capture_once(pg_dsn, store_path)
        assert (status.snapshot_rows, status.changes, status.transactions) == (0, 0, 0)
        assert _counts(store_path) == counts
    with opened(store_path) as store:
        # the updates appear once each, in order
        assert [r[3] for r in store.history("public.t", ["1"]).rows] == ["snapshot", "update"]


def test_slot_is_confirmed_up_to_the_store_position(pg_dsn: str, store_path: Path) -> None:
    conn = pg_connect(pg_dsn)
    execute(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, v int)", "INSERT INTO t VALUES (1, 1)")
    capture_once(pg_dsn, store_path)
    start = _confirmed(pg_dsn)
    for i in range(3):
        execute(pg_dsn, f"UPDATE t SET v = {i} WHERE id = 1")
        execute(pg_dsn, "CREATE TABLE unrelated (x int)", "DROP TABLE unrelated")  # not ours
        capture_once(pg_dsn, store_path, batch_size=1)
        with opened(store_path) as store:
            pos = store.position("postgres")
            last_commit = store.sql("SELECT max(lsn) FROM _rb_tx")[0][0]
            assert list(store.asof("public.t", AtLsn(insert_lsn(conn))).rows) == [(1, i)]
        assert pos is not None
        confirmed = _confirmed(pg_dsn)
        assert confirmed <= int(pos["lsn"]), "the slot was confirmed past what the store holds"
        assert confirmed > last_commit > start, "the slot did not advance to the store position"
        start = confirmed


def test_continuous_capture_confirms_only_what_it_stored(pg_dsn: str, store_path: Path) -> None:
    conn = pg_connect(pg_dsn)
    execute(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, v int)", "INSERT INTO t VALUES (1, 1)")
    store = DuckDBStore(store_path)
    cap = Capture(CaptureConfig(pg_dsn, flush_interval=0.05), store)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(cap.run()))
    thread.start()
    try:
        for i in range(20):
            execute(pg_dsn, f"UPDATE t SET v = {i} WHERE id = 1")
            time.sleep(0.05)
        want = insert_lsn(conn), pg_state(conn, "public.t")
        deadline = time.monotonic() + 10
        while cap.status.lsn < want[0] - 4096 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        cap.stop()
        thread.join(10)
    assert not thread.is_alive() and result
    pos = store.position("postgres")
    assert pos is not None
    assert _confirmed(pg_dsn) <= int(pos["lsn"])
    assert_same(store, "public.t", AtLsn(want[0]), want[1])
    store.close()
    conn.close()


def test_lost_slot_is_a_one_line_error(pg_dsn: str, store_path: Path) -> None:
    execute(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    capture_once(pg_dsn, store_path)
    execute(pg_dsn, "SELECT pg_drop_replication_slot('rowback')", "INSERT INTO t VALUES (2)")
    with pytest.raises(RowbackError) as err:
        capture_once(pg_dsn, store_path)
    msg = str(err.value)
    assert "\n" not in msg and "rowback" in msg and "slot" in msg
    # and the store is left as it was: still readable, still one row
    with opened(store_path) as store:
        assert [r[0] for r in store.asof("public.t", AtLsn(2**63)).rows] == [1]
