"""Schema changes while capturing: columns added, dropped and retyped between changes,
TRUNCATE, and tables created after capture started. ``asof`` before and after each change
shows the columns and values of that moment, and old history stays readable."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from helpers import shown
from pgcap import (
    TableState,
    assert_same,
    canon_store,
    capture_and_check,
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
from rowback.store.duckdb import DuckDBStore, queries
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
        # (each ALTER COLUMN TYPE re-reads the row: retype.py)
        ops = ["snapshot", "update", "update", "snapshot", "update", "snapshot", "update"]
        assert [v[3] for v in versions] == ops + ["update", "truncate"]
        first, last_alive = versions[0][5], versions[-2][5]
        assert first == {"id": 1, "a": 1, "b": "b1", "c": "c1"}
        assert last_alive["a"] == 10 * 8589934592 and last_alive["c"] == "c1!"
        assert last_alive["b"] is False and "d" in last_alive
        assert versions[-1][5] is None
        assert sorted(store.tables()[0].columns) == ["a", "b", "c", "d", "id"]
    conn.close()


def _every_plan_same(store: DuckDBStore, table: str, point: AtLsn, want: TableState) -> None:
    """``asof`` by each plan that can answer ``point`` equals ``want``."""
    t = store.table(table)
    answered = 0
    for plan in ("fold", "checkpoint", "head"):
        try:
            res = queries.asof(store._con, t, point, plan=plan)
        except RowbackError:
            continue  # this plan cannot answer the point
        answered += 1
        names = list(res.columns)
        got = {}
        for r in res.rows:
            row = {n: canon_store(v, want.types.get(n, "?")) for n, v in zip(names, r, strict=True)}
            got[tuple(row[c] for c in want.key)] = row
        assert sorted(names) == sorted(want.types), f"plan {plan} at {point}: columns"
        assert got == want.rows, f"plan {plan} at {point}"
    assert answered


def test_retype_keeps_values_of_untouched_rows(pg_dsn: str, store_path: Path) -> None:
    """ALTER COLUMN TYPE rewrites the table without row events: rows not changed since
    keep their values in the new type, a retyped key keeps every row reachable, and
    later changes to untouched rows diff against the converted values (no gaps)."""
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        "CREATE TABLE s (id int PRIMARY KEY, a int, n numeric(10,2), v varchar(5), t int)",
        "ALTER TABLE s REPLICA IDENTITY FULL",  # before images are checked against history
        "INSERT INTO s SELECT g, g, g * 1.25, 'v' || g, g FROM generate_series(1, 6) g",
    )
    store = DuckDBStore(store_path, checkpoint_every=1)  # a checkpoint before the retype
    with store:
        Capture(CaptureConfig(pg_dsn, once=True), store).run()
        execute(pg_dsn, "UPDATE s SET a = -1 WHERE id = 6")
        Capture(CaptureConfig(pg_dsn, once=True), store).run()
    before = insert_lsn(conn), pg_state(conn, "public.s")
    execute(
        pg_dsn,
        "ALTER TABLE s ALTER COLUMN id TYPE bigint, ALTER COLUMN a TYPE bigint, "
        "ALTER COLUMN n TYPE numeric(12,4), ALTER COLUMN v TYPE text, ALTER COLUMN t TYPE text",
        "UPDATE s SET a = 0 WHERE id = 1",
    )
    retyped = insert_lsn(conn), pg_state(conn, "public.s")
    execute(
        pg_dsn,
        "UPDATE s SET v = 'w' WHERE id = 2",  # untouched since the rewrite
        "UPDATE s SET id = 30 WHERE id = 3",  # a key change of an untouched row
        "DELETE FROM s WHERE id = 4",
        "INSERT INTO s VALUES (8589934592, 7, 1.5, 'big', 'x')",
    )
    later = insert_lsn(conn), pg_state(conn, "public.s")
    status = capture_once(pg_dsn, store_path)
    assert status.gaps == 0
    with opened(store_path) as store:
        for lsn, want in (before, retyped, later):
            _every_plan_same(store, "public.s", AtLsn(lsn), want)
        # row 5 was never changed after the rewrite: its history shows it re-read, after
        # its versions under the old key type
        versions = shown(store.history("public.s", ["5"]))
        assert [v[3] for v in versions] == ["snapshot", "snapshot"]
        assert versions[0][5] == {"id": 5, "a": 5, "n": "6.25", "v": "v5", "t": 5}
        assert versions[1][5] == {"id": 5, "a": 5, "n": "6.2500", "v": "v5", "t": "5"}
        # the rewrite's versions go with the transaction that first changed the table after
        # it, and the table as of before that transaction is still the old one
        txid = int(scalar(conn, "SELECT xmin::text::bigint FROM s WHERE id = 1"))
        tx = list(store.tx(txid).rows)
        assert len(tx) == 6 + 1  # every row re-read, then the update of row 1
        _every_plan_same(store, "public.s", AtLsn(before[0]), before[1])
    conn.close()


def test_retype_with_using_counts_gaps(pg_dsn: str, store_path: Path) -> None:
    """A USING expression is not in the WAL: values that do not cast are reported."""
    execute(
        pg_dsn,
        "CREATE TABLE s (id int PRIMARY KEY, a text)",
        "INSERT INTO s VALUES (1, '12'), (2, 'twelve')",
    )
    capture_once(pg_dsn, store_path)
    execute(
        pg_dsn,
        "ALTER TABLE s ALTER COLUMN a TYPE int USING length(a)",
        "INSERT INTO s VALUES (3, 3)",
    )
    status = capture_once(pg_dsn, store_path)
    assert status.gaps == 1


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
        last = shown(store.history("public.s", ["5"]))[-1]
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
