"""Tables created while capture runs (or while it is stopped) have every change from their
creation in history: capture's event trigger puts a new table with a primary key into the
publication in its creating transaction and announces it in the stream (``new_tables``).
A table without a primary key stays out, so its UPDATE and DELETE keep working."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pgcap import (
    TableState,
    assert_same,
    capture_once,
    capture_process,
    execute,
    insert_lsn,
    opened,
    pg_connect,
    pg_state,
)
from test_schema_changes import LATEST

from rowback.sources.postgres.capture import Capture, CaptureConfig
from rowback.store.duckdb import DuckDBStore
from rowback.when import AtLsn

Marks = list[tuple[str, int, TableState]]


def _script(dsn: str) -> Marks:
    """Create a table and change it in five transactions within a moment; (label, LSN,
    state) after each change."""
    conn = pg_connect(dsn)
    marks: Marks = []
    steps = [
        ("insert 2", "INSERT INTO fresh VALUES (1, 'a'), (2, 'b')"),
        ("update", "UPDATE fresh SET v = 'a2' WHERE id = 1"),
        ("truncate", "TRUNCATE fresh"),
        ("insert again", "INSERT INTO fresh VALUES (3, 'c')"),
    ]
    # in one transaction with the CREATE: the first row is no later than the table
    execute(
        dsn,
        "BEGIN",
        "CREATE TABLE fresh (id int PRIMARY KEY, v text)",
        "INSERT INTO fresh VALUES (0, 'with the create')",
        "COMMIT",
    )
    marks.append(("create", insert_lsn(conn), pg_state(conn, "public.fresh")))
    for label, statement in steps:
        execute(dsn, statement)
        marks.append((label, insert_lsn(conn), pg_state(conn, "public.fresh")))
    conn.close()
    return marks


def _check(store: DuckDBStore, marks: Marks) -> None:
    for label, lsn, want in marks:
        try:
            assert_same(store, "public.fresh", AtLsn(lsn), want)
        except AssertionError as e:
            raise AssertionError(f"after {label}: {e}") from None


def _running(dsn: str, store: DuckDBStore, body: Callable[[], int]) -> Capture:
    """Run capture in a thread (rescans too rare to matter) around ``body``, which returns
    the LSN capture must reach before it is stopped."""
    cap = Capture(CaptureConfig(dsn, rescan_interval=600, flush_interval=0.05), store)
    thread = threading.Thread(target=cap.run)
    thread.start()
    try:
        time.sleep(0.5)
        want = body()
        deadline = time.monotonic() + 20
        while cap.status.lsn < want and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cap.status.lsn >= want, "capture did not catch up"
    finally:
        cap.stop()
        thread.join(10)
    assert not thread.is_alive()
    return cap


def test_new_table_complete_from_creation_while_running(pg_dsn: str, store_path: Path) -> None:
    execute(pg_dsn, "CREATE TABLE first (id int PRIMARY KEY)", "INSERT INTO first VALUES (1)")
    marks: Marks = []

    def body() -> int:
        marks.extend(_script(pg_dsn))
        return marks[-1][1]

    with DuckDBStore(store_path) as store:
        cap = _running(pg_dsn, store, body)
        assert cap.status.gaps == 0
        assert "public.fresh" in cap.status.tables
        _check(store, marks)
        ops = [r[3] for r in store.history("public.fresh", ["1"]).rows]
        assert ops == ["insert", "update", "truncate"], ops


def test_new_table_complete_from_creation_when_capture_was_behind(
    pg_dsn: str, store_path: Path
) -> None:
    execute(pg_dsn, "CREATE TABLE first (id int PRIMARY KEY)", "INSERT INTO first VALUES (1)")
    capture_once(pg_dsn, store_path)  # installs the trigger; then capture is stopped
    marks = _script(pg_dsn)
    execute(pg_dsn, "INSERT INTO first VALUES (2)")
    status = capture_once(pg_dsn, store_path)
    assert status.gaps == 0 and status.snapshot_rows == 0  # nothing read by a snapshot
    with opened(store_path) as store:
        _check(store, marks)


def test_new_table_in_a_big_streamed_transaction(pg_dsn: str, store_path: Path) -> None:
    """The announcement travels inside a streamed (spilled) transaction too."""
    execute(pg_dsn, "CREATE TABLE first (id int PRIMARY KEY)")
    capture_once(pg_dsn, store_path)
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        "BEGIN",
        "INSERT INTO first SELECT g FROM generate_series(1, 5000) g",
        "CREATE TABLE fresh (id int PRIMARY KEY, v text)",
        "INSERT INTO fresh SELECT g, repeat('x', 50) FROM generate_series(1, 5000) g",
        "COMMIT",
    )
    want = insert_lsn(conn), pg_state(conn, "public.fresh")
    execute(pg_dsn, "UPDATE fresh SET v = 'y' WHERE id <= 10")
    later = insert_lsn(conn), pg_state(conn, "public.fresh")
    status = capture_once(pg_dsn, store_path)
    assert status.gaps == 0 and status.snapshot_rows == 0
    with opened(store_path) as store:
        assert_same(store, "public.fresh", AtLsn(want[0]), want[1])
        assert_same(store, "public.fresh", AtLsn(later[0]), later[1])
    conn.close()


def test_explicit_tables_do_not_take_new_tables(pg_dsn: str, store_path: Path) -> None:
    execute(pg_dsn, "CREATE TABLE first (id int PRIMARY KEY)")
    capture_once(pg_dsn, store_path, tables=["public.first"])
    execute(pg_dsn, "CREATE TABLE fresh (id int PRIMARY KEY)", "INSERT INTO fresh VALUES (1)")
    capture_once(pg_dsn, store_path, tables=["public.first"])
    with opened(store_path) as store:
        assert [t.qualified for t in store.tables()] == ["public.first"]


def test_new_table_without_primary_key_keeps_its_writes(pg_dsn: str, store_path: Path) -> None:
    """Not put in the publication, so PostgreSQL does not refuse its UPDATE and DELETE;
    capture goes on. Given a primary key later, a rescan takes it by snapshot."""
    conn = pg_connect(pg_dsn)
    execute(pg_dsn, "CREATE TABLE first (id int PRIMARY KEY)")
    capture_once(pg_dsn, store_path)
    execute(
        pg_dsn,
        "CREATE TABLE loose (x int, y text)",
        "INSERT INTO loose VALUES (1, 'a'), (2, 'b')",
        "UPDATE loose SET y = 'c' WHERE x = 1",
        "DELETE FROM loose WHERE x = 2",
        "INSERT INTO first VALUES (1)",
    )
    capture_once(pg_dsn, store_path)
    execute(pg_dsn, "ALTER TABLE loose ADD PRIMARY KEY (x)", "UPDATE loose SET y = 'd'")
    want = pg_state(conn, "public.loose")
    capture_once(pg_dsn, store_path)
    with opened(store_path) as store:
        assert_same(store, "public.first", LATEST, pg_state(conn, "public.first"))
        assert_same(store, "public.loose", LATEST, want)
    conn.close()


@pytest.mark.slow
def test_kill9_around_a_new_tables_first_changes(
    pg_dsn: str, store_path: Path, tmp_path: Path
) -> None:
    """Capture killed -9 at random moments while a new table gets its first changes (in
    small batches, so kills land between writes of one transaction): afterwards its
    history equals what PostgreSQL had at each moment, each change stored once."""
    rng = random.Random(int(os.environ.get("ROWBACK_KILL_SEED", "7")))
    conn = pg_connect(pg_dsn)
    execute(pg_dsn, "CREATE TABLE first (id int PRIMARY KEY)")
    capture_once(pg_dsn, store_path)
    spill = tmp_path / "spill"
    spill.mkdir()
    marks: Marks = []
    execute(
        pg_dsn,
        "BEGIN",
        "CREATE TABLE fresh (id int PRIMARY KEY, v text)",
        "INSERT INTO fresh SELECT g, 'v' || g FROM generate_series(1, 2000) g",
        "COMMIT",
    )
    marks.append(("create", insert_lsn(conn), pg_state(conn, "public.fresh")))
    for round_ in range(4):
        proc = capture_process(pg_dsn, store_path, once=False, spill_dir=spill, batch_size=97)
        time.sleep(rng.uniform(0.2, 0.9))
        execute(
            pg_dsn,
            f"UPDATE fresh SET v = 'r{round_}' WHERE id % 7 = {round_}",
            f"DELETE FROM fresh WHERE id % 50 = {round_}",
            f"INSERT INTO fresh SELECT g, 'n' FROM generate_series({3000 + 100 * round_}, "
            f"{3050 + 100 * round_}) g",
        )
        marks.append((f"round {round_}", insert_lsn(conn), pg_state(conn, "public.fresh")))
        time.sleep(rng.uniform(0.0, 0.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        time.sleep(0.3)  # the walsender lets go of the slot
    status = capture_once(pg_dsn, store_path)
    assert status.gaps == 0
    with opened(store_path) as store:
        for label, lsn, want in marks:
            try:
                assert_same(store, "public.fresh", AtLsn(lsn), want)
            except AssertionError as e:
                raise AssertionError(f"after {label}: {e}") from None
        hist = store.table("public.fresh").hist
        assert store.sql(f"SELECT count(*) FROM {hist} WHERE _op = 0") == [(0,)]  # no snapshot
        dupes = store.sql(f"SELECT _lsn, _seq FROM {hist} GROUP BY ALL HAVING count(*) > 1")
        assert dupes == []
    conn.close()
