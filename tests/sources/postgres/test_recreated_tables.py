"""A table dropped or renamed and created again under its name (a rebuild: rename the
old table away, create the new one, copy, drop the old) sends nothing through logical
replication, and the new table is not in the publication. Capture notices the new OID,
stores the old table's remaining changes, ends its rows there (a TRUNCATE, history kept)
and snapshots the new table. With capture's new-table trigger (see ``new_tables``) the
stream itself announces the new table at its creation, and its history starts there.
"""

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
    without_new_table_trigger,
)
from test_schema_changes import LATEST, _every_plan_same

from rowback.sources.postgres.capture import Capture, CaptureConfig
from rowback.store.duckdb import DuckDBStore
from rowback.when import AtLsn


@pytest.mark.parametrize("announced", [True, False], ids=["trigger", "no-trigger"])
def test_rebuild_by_rename(pg_dsn: str, store_path: Path, announced: bool) -> None:
    conn = pg_connect(pg_dsn)
    if not announced:
        without_new_table_trigger(pg_dsn)
    execute(
        pg_dsn,
        "CREATE TABLE s (id int PRIMARY KEY, v text)",
        "INSERT INTO s SELECT g, 'v' || g FROM generate_series(1, 50) g",
    )
    capture_once(pg_dsn, store_path)
    # changes to the old table the capture has not read yet (a delete, whose key PostgreSQL
    # sends for a table that is gone by the time capture reads it), then the rebuild
    execute(pg_dsn, "UPDATE s SET v = 'late' WHERE id <= 5", "DELETE FROM s WHERE id = 50")
    before = insert_lsn(conn), pg_state(conn, "public.s")
    execute(
        pg_dsn,
        "BEGIN",
        "ALTER TABLE s RENAME TO s_old",
        "CREATE TABLE s (id bigint PRIMARY KEY, v text, w int DEFAULT 1)",
        "INSERT INTO s (id, v) SELECT id, v FROM s_old WHERE id % 2 = 0",
        "DROP TABLE s_old",
        "COMMIT",
        "UPDATE s SET w = 2 WHERE id = 2",
    )
    after = pg_state(conn, "public.s")
    status = capture_once(pg_dsn, store_path)
    assert status.gaps == 0
    with opened(store_path) as store:
        _every_plan_same(store, "public.s", AtLsn(before[0]), before[1])
        assert_same(store, "public.s", LATEST, after)
        ops = [r[3] for r in store.history("public.s", ["2"]).rows]
        # the new table's rows: inserted in the stream, or read by a snapshot at take-over
        new = ["insert", "update"] if announced else ["snapshot"]
        assert ops == ["snapshot", "update", "truncate", *new], ops
    # and it keeps following the new table
    execute(pg_dsn, "UPDATE s SET w = 3 WHERE id = 4", "INSERT INTO s VALUES (99, 'x', 0)")
    want = pg_state(conn, "public.s")
    capture_once(pg_dsn, store_path)
    with opened(store_path) as store:
        assert_same(store, "public.s", LATEST, want)
    conn.close()


def test_drop_and_create_while_running(pg_dsn: str, store_path: Path) -> None:
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn, "CREATE TABLE s (id int PRIMARY KEY, v int)", "INSERT INTO s VALUES (1, 1), (2, 2)"
    )
    store = DuckDBStore(store_path)
    cap = Capture(CaptureConfig(pg_dsn, rescan_interval=0.2, flush_interval=0.05), store)
    thread = threading.Thread(target=cap.run)
    thread.start()
    try:
        time.sleep(0.5)
        execute(pg_dsn, "UPDATE s SET v = 10 WHERE id = 1")
        before = insert_lsn(conn), pg_state(conn, "public.s")
        execute(
            pg_dsn,
            "DROP TABLE s",
            "CREATE TABLE s (id int PRIMARY KEY, v int)",
            "INSERT INTO s VALUES (3, 3)",
        )
        time.sleep(1.0)
        execute(pg_dsn, "INSERT INTO s VALUES (4, 4)", "UPDATE s SET v = 30 WHERE id = 3")
        want = insert_lsn(conn), pg_state(conn, "public.s")
        deadline = time.monotonic() + 10
        while cap.status.lsn < want[0] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        cap.stop()
        thread.join()
        store.close()
    with opened(store_path) as s2:
        assert_same(s2, "public.s", AtLsn(before[0]), before[1])
        assert_same(s2, "public.s", LATEST, want[1])
    conn.close()


def test_explicit_table_list_recreated(pg_dsn: str, store_path: Path) -> None:
    """With --tables too (no rescans for new tables), at the next run."""
    conn = pg_connect(pg_dsn)
    execute(pg_dsn, "CREATE TABLE s (id int PRIMARY KEY, v int)", "INSERT INTO s VALUES (1, 1)")
    capture_once(pg_dsn, store_path, tables=["public.s"])
    execute(
        pg_dsn,
        "DROP TABLE s",
        "CREATE TABLE s (id int PRIMARY KEY, v int)",
        "INSERT INTO s VALUES (2, 2)",
    )
    want = pg_state(conn, "public.s")
    capture_once(pg_dsn, store_path, tables=["public.s"])
    with opened(store_path) as store:
        assert_same(store, "public.s", LATEST, want)
    conn.close()


def test_kill9_while_taking_over(pg_dsn: str, store_path: Path, tmp_path: Path) -> None:
    """Capture killed -9 at random moments around a re-created table's take-over (its
    snapshot written in small batches): afterwards the old rows end where the old table
    did, and the new table is there whole, once."""
    import os
    import random
    import signal

    from pgcap import capture_process

    rng = random.Random(11)
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        "CREATE TABLE s (id int PRIMARY KEY, v int)",
        "INSERT INTO s SELECT g, g FROM generate_series(1, 100) g",
    )
    capture_once(pg_dsn, store_path)
    execute(pg_dsn, "UPDATE s SET v = -v WHERE id <= 10")
    before = insert_lsn(conn), pg_state(conn, "public.s")
    execute(
        pg_dsn,
        "DROP TABLE s",
        "CREATE TABLE s (id int PRIMARY KEY, v int, t text)",
        "INSERT INTO s SELECT g, g * 2, 'x' || g FROM generate_series(1, 3000) g",
    )
    spill = tmp_path / "spill"
    spill.mkdir()
    for _ in range(4):
        proc = capture_process(pg_dsn, store_path, once=False, spill_dir=spill, batch_size=50)
        time.sleep(rng.uniform(0.3, 1.2))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    execute(pg_dsn, "UPDATE s SET v = 0 WHERE id % 100 = 0")
    want = pg_state(conn, "public.s")
    assert capture_once(pg_dsn, store_path).gaps == 0
    with opened(store_path) as store:
        _every_plan_same(store, "public.s", AtLsn(before[0]), before[1])
        assert_same(store, "public.s", LATEST, want)
        dupes = store.sql(
            f"SELECT count(*) FROM (SELECT 1 FROM {store.table('public.s').hist} "
            "WHERE _op IN (1, 2, 3) GROUP BY _lsn, _seq HAVING count(*) > 1)"
        )
        assert dupes == [(0,)]  # stream changes (updates) stored once
    conn.close()


def test_recreated_without_primary_key(pg_dsn: str, store_path: Path) -> None:
    """Created again without a primary key: not capturable, so its old rows end and it is
    left out of the publication (else its writes would fail on the source); the other
    tables go on being captured, at this run and the next."""
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        "CREATE TABLE s (id int PRIMARY KEY, v int)",
        "CREATE TABLE u (id int PRIMARY KEY)",
        "INSERT INTO s VALUES (1, 1)",
    )
    capture_once(pg_dsn, store_path)
    execute(pg_dsn, "DROP TABLE s", "CREATE TABLE s (id int, v int)", "INSERT INTO u VALUES (1)")
    capture_once(pg_dsn, store_path)
    execute(pg_dsn, "UPDATE s SET v = 2", "INSERT INTO s VALUES (3, 3)", "INSERT INTO u VALUES (2)")
    capture_once(pg_dsn, store_path)
    with opened(store_path) as store:
        assert list(store.asof("public.s", LATEST).rows) == []
        assert_same(store, "public.u", LATEST, pg_state(conn, "public.u"))
        ops = [r[3] for r in store.history("public.s", ["1"]).rows]
        assert ops == ["snapshot", "truncate"], ops
    conn.close()


def test_dropped_table_does_not_stop_capture(pg_dsn: str, store_path: Path) -> None:
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        "CREATE TABLE s (id int PRIMARY KEY)",
        "CREATE TABLE u (id int PRIMARY KEY)",
        "INSERT INTO s VALUES (1)",
    )
    capture_once(pg_dsn, store_path)
    execute(pg_dsn, "DELETE FROM s", "DROP TABLE s", "INSERT INTO u VALUES (1)")
    capture_once(pg_dsn, store_path)
    execute(pg_dsn, "INSERT INTO u VALUES (2)")
    capture_once(pg_dsn, store_path)
    with opened(store_path) as store:
        assert_same(store, "public.u", LATEST, pg_state(conn, "public.u"))
        assert [r[3] for r in store.history("public.s", ["1"]).rows] == ["snapshot", "delete"]
    conn.close()


def test_store_from_before_oids_were_kept(pg_dsn: str, store_path: Path) -> None:
    """A store whose position has no OIDs: a table created again before the upgrade is
    found by its absence from the publication (which holds tables by OID)."""
    conn = pg_connect(pg_dsn)
    execute(pg_dsn, "CREATE TABLE s (id int PRIMARY KEY, v int)", "INSERT INTO s VALUES (1, 1)")
    capture_once(pg_dsn, store_path)
    with opened(store_path) as store:
        pos = store.position("postgres")
        assert pos is not None
        del pos["relids"]
        store.write([], "postgres", pos)
    execute(pg_dsn, "DROP TABLE s", "CREATE TABLE s (id int PRIMARY KEY, v int)")
    execute(pg_dsn, "INSERT INTO s VALUES (2, 2)")
    want = pg_state(conn, "public.s")
    capture_once(pg_dsn, store_path)
    with opened(store_path) as store:
        assert_same(store, "public.s", LATEST, want)
    conn.close()
