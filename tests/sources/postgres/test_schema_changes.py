"""Schema changes while capturing: columns added, dropped and retyped between changes,
TRUNCATE, and tables created after capture started. ``asof`` before and after each change
shows the columns and values of that moment, and old history stays readable."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pgcap import (
    TableState,
    assert_same,
    capture_and_check,
    capture_once,
    execute,
    insert_lsn,
    opened,
    pg_connect,
    pg_state,
)

from rowback.sources.postgres.capture import Capture, CaptureConfig
from rowback.store.duckdb import DuckDBStore
from rowback.when import AtLsn

LATEST = AtLsn(2**63)


def test_columns_added_dropped_and_retyped(pg_dsn: str, store_path: Path) -> None:
    conn = pg_connect(pg_dsn)
    points: list[tuple[str, int, TableState]] = []

    def mark(label: str) -> None:
        points.append((label, insert_lsn(conn), pg_state(conn, "public.s")))

    execute(
        pg_dsn,
        "CREATE TABLE s (id int PRIMARY KEY, a int, b text, c varchar(5))",
        "INSERT INTO s SELECT g, g, 'b' || g, 'c' || g FROM generate_series(1, 4) g",
    )
    capture_once(pg_dsn, store_path)
    mark("snapshot")
    execute(pg_dsn, "UPDATE s SET a = 10 WHERE id = 1")
    mark("update")
    execute(
        pg_dsn,
        "ALTER TABLE s ADD COLUMN d numeric(10,2)",
        "UPDATE s SET d = id * 1.5 WHERE id <= 2",  # rows 3 and 4 keep d NULL
        "INSERT INTO s VALUES (5, 5, 'b5', 'c5', 7.25)",
    )
    mark("add column")
    capture_once(pg_dsn, store_path)  # a run boundary between schema versions
    execute(pg_dsn, "ALTER TABLE s DROP COLUMN b", "UPDATE s SET a = 20 WHERE id = 2")
    mark("drop column")
    # retype, then touch every row (see test_retype_keeps_values_of_untouched_rows)
    execute(
        pg_dsn,
        "BEGIN",
        "ALTER TABLE s ALTER COLUMN c TYPE text",
        "UPDATE s SET c = c || '!'",
        "COMMIT",
    )
    mark("retype varchar->text")
    execute(
        pg_dsn,
        "ALTER TABLE s ALTER COLUMN a TYPE bigint",
        "UPDATE s SET a = a * 8589934592",
        "DELETE FROM s WHERE id = 4",
    )
    mark("retype int->bigint")
    execute(pg_dsn, "ALTER TABLE s ADD COLUMN b boolean", "UPDATE s SET b = id % 2 = 0")
    mark("re-add a dropped name with another type")
    execute(pg_dsn, "TRUNCATE s", "INSERT INTO s (id, a, c) VALUES (9, 9, 'after')")
    mark("truncate")
    status = capture_once(pg_dsn, store_path, batch_size=2)
    assert status.gaps == 0
    with opened(store_path) as store:
        for label, lsn, want in points:
            try:
                assert_same(store, "public.s", AtLsn(lsn), want)
            except AssertionError as e:
                raise AssertionError(f"after {label}: {e}") from None
        # the history of row 1 spans every schema version and the TRUNCATE
        versions = list(store.history("public.s", ["1"]).rows)
        assert [v[3] for v in versions] == ["snapshot"] + ["update"] * 5 + ["truncate"]
        first, last_alive = versions[0][5], versions[-2][5]
        assert first == {"id": 1, "a": 1, "b": "b1", "c": "c1"}
        assert last_alive["a"] == 10 * 8589934592 and last_alive["c"] == "c1!"
        assert last_alive["b"] is False and "d" in last_alive
        assert versions[-1][5] is None
        assert sorted(store.tables()[0].columns) == ["a", "b", "c", "d", "id"]
    conn.close()


@pytest.mark.xfail(
    strict=True,
    reason="known gap: ALTER COLUMN TYPE rewrites the table without row events; the store "
    "starts a new physical column, so rows not changed since show NULL",
)
def test_retype_keeps_values_of_untouched_rows(pg_dsn: str, store_path: Path) -> None:
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        "CREATE TABLE s (id int PRIMARY KEY, a int)",
        "INSERT INTO s SELECT g, g FROM generate_series(1, 3) g",
    )
    capture_once(pg_dsn, store_path)
    execute(pg_dsn, "ALTER TABLE s ALTER COLUMN a TYPE bigint", "UPDATE s SET a = 0 WHERE id = 1")
    want = insert_lsn(conn), pg_state(conn, "public.s")
    capture_once(pg_dsn, store_path)
    with opened(store_path) as store:
        assert_same(store, "public.s", AtLsn(want[0]), want[1])
    conn.close()


def test_added_column_default_shows_for_untouched_rows(pg_dsn: str, store_path: Path) -> None:
    """ADD COLUMN ... DEFAULT rewrites no row and sends no change for the rows it fills:
    the store takes the value from pg_attribute.attmissingval."""
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        "CREATE TABLE s (id int PRIMARY KEY, a int)",
        "INSERT INTO s SELECT g, g FROM generate_series(1, 6) g",
    )
    capture_once(pg_dsn, store_path)
    before = insert_lsn(conn), pg_state(conn, "public.s")
    execute(
        pg_dsn,
        "ALTER TABLE s ADD COLUMN d numeric(6,2) DEFAULT 7.5, ADD COLUMN t text DEFAULT 'it''s'",
        "INSERT INTO s VALUES (100, 100)",  # takes the defaults as ordinary values
        "UPDATE s SET a = -1 WHERE id = 1",  # changes a, keeps the defaults
        "UPDATE s SET d = NULL WHERE id = 2",  # a written NULL is not the default
        "UPDATE s SET t = 'x' WHERE id = 3",
        "DELETE FROM s WHERE id = 4",
    )
    after = insert_lsn(conn), pg_state(conn, "public.s")
    execute(pg_dsn, "UPDATE s SET a = a + 1 WHERE id IN (5, 100)")
    later = insert_lsn(conn), pg_state(conn, "public.s")
    capture_and_check(pg_dsn, store_path, "public.s", [before, after, later])
    with opened(store_path) as store:
        # history: the update after the ALTER shows the default in its after image
        last = list(store.history("public.s", ["5"]).rows)[-1]
        assert last[5] == {"id": 5, "a": 6, "d": "7.50", "t": "it's"}
    conn.close()


def test_truncate(pg_dsn: str, store_path: Path) -> None:
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        "CREATE TABLE a (id int PRIMARY KEY, v text)",
        "CREATE TABLE b (id int PRIMARY KEY, v text)",
        "INSERT INTO a SELECT g, 'a' FROM generate_series(1, 50) g",
        "INSERT INTO b SELECT g, 'b' FROM generate_series(1, 50) g",
    )
    capture_once(pg_dsn, store_path)
    states = []

    def mark() -> None:
        states.append((insert_lsn(conn), pg_state(conn, "public.a"), pg_state(conn, "public.b")))

    execute(pg_dsn, "UPDATE a SET v = 'a2' WHERE id <= 5")
    mark()
    execute(pg_dsn, "TRUNCATE a, b")
    mark()
    execute(
        pg_dsn,
        "BEGIN",
        "INSERT INTO a VALUES (1, 'again'), (100, 'new')",
        "TRUNCATE b",  # truncate an empty table, and a truncate inside a transaction
        "INSERT INTO b VALUES (7, 'b7')",
        "COMMIT",
    )
    mark()
    execute(pg_dsn, "BEGIN", "TRUNCATE a", "ROLLBACK")  # an aborted TRUNCATE changes nothing
    execute(pg_dsn, "UPDATE a SET v = 'last' WHERE id = 1")
    mark()
    capture_once(pg_dsn, store_path)
    with opened(store_path) as store:
        for lsn, a, b in states:
            assert_same(store, "public.a", AtLsn(lsn), a)
            assert_same(store, "public.b", AtLsn(lsn), b)
        assert [r[3] for r in store.history("public.a", ["1"]).rows] == [
            "snapshot", "update", "truncate", "insert", "update"
        ]  # fmt: skip
    conn.close()


def test_table_created_after_capture_started_is_captured(pg_dsn: str, store_path: Path) -> None:
    """Default mode (no table list): new tables are found at the start of each run and
    every ``rescan_interval`` while running, snapshotted, then followed."""
    conn = pg_connect(pg_dsn)
    execute(pg_dsn, "CREATE TABLE first (id int PRIMARY KEY)", "INSERT INTO first VALUES (1)")
    capture_once(pg_dsn, store_path)
    # found by the next run
    execute(
        pg_dsn,
        "CREATE TABLE later (id int PRIMARY KEY, v text)",
        "INSERT INTO later SELECT g, 'v' || g FROM generate_series(1, 100) g",
        "UPDATE later SET v = 'changed before the run' WHERE id = 1",
    )
    want_later = insert_lsn(conn), pg_state(conn, "public.later")
    capture_once(pg_dsn, store_path)
    with opened(store_path) as store:
        assert_same(store, "public.later", LATEST, want_later[1])
    # found while running
    store = DuckDBStore(store_path)
    cap = Capture(CaptureConfig(pg_dsn, rescan_interval=0.2, flush_interval=0.05), store)
    thread = threading.Thread(target=cap.run)
    thread.start()
    try:
        time.sleep(0.5)
        execute(
            pg_dsn,
            "CREATE TABLE live (id int PRIMARY KEY, v int)",
            "INSERT INTO live SELECT g, g FROM generate_series(1, 100) g",
        )
        deadline = time.monotonic() + 10
        while "public.live" not in cap.status.tables and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "public.live" in cap.status.tables
        execute(
            pg_dsn,
            "UPDATE live SET v = -v WHERE id <= 10",
            "DELETE FROM live WHERE id = 100",
            "INSERT INTO later VALUES (101, 'while running')",
        )
        want = insert_lsn(conn)
        states = pg_state(conn, "public.live"), pg_state(conn, "public.later")
        while cap.status.lsn < want and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        cap.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert_same(store, "public.live", AtLsn(want), states[0])
    assert_same(store, "public.later", AtLsn(want), states[1])
    assert cap.status.gaps == 0
    store.close()
    conn.close()
