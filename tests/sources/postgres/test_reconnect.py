"""A PostgreSQL restart under a running capture: it reconnects by itself, and the store
ends up equal to the source with every version once."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
from pgcap import (
    assert_same,
    capture_once,
    execute,
    insert_lsn,
    opened,
    pg_connect,
    pg_state,
)

from rowback.pgserver import PgServer
from rowback.when import AtLsn


def updates(dsn: str, stop: threading.Event, done: list[int]) -> None:
    """One UPDATE per transaction, riding out the restart; counts what committed."""
    n = 0
    while not stop.is_set():
        try:
            conn = psycopg2.connect(dsn)
            conn.autocommit = True
            with conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute("UPDATE t SET v = v + 1 WHERE id = %s", [n % 50 + 1])
                    n += 1
                    done[0] += 1
                    time.sleep(0.005)
            conn.close()
        except psycopg2.Error:
            time.sleep(0.2)  # the server is restarting


def test_capture_survives_a_server_restart(
    pg_server: PgServer, pg_dsn: str, store_path: Path
) -> None:
    execute(
        pg_dsn,
        "CREATE TABLE t (id int PRIMARY KEY, v int)",
        "INSERT INTO t SELECT g, 0 FROM generate_series(1, 50) g",
    )
    cmd = [sys.executable, "-m", "rowback.cli", "capture", "--source", pg_dsn]
    proc = subprocess.Popen(
        [*cmd, "--store", str(store_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stop, done = threading.Event(), [0]
    writer = threading.Thread(target=updates, args=(pg_dsn, stop, done))
    writer.start()
    try:
        time.sleep(3)
        pg_server.restart("immediate")  # a crash: no shutdown checkpoint, walsenders cut
        restarted = datetime.now(UTC)
        time.sleep(4)
    finally:
        stop.set()
        writer.join()
    conn = pg_connect(pg_dsn)
    want = insert_lsn(conn), pg_state(conn, "public.t")
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "source connection lost" in err and "reconnecting" in err
    with opened(store_path) as store:  # the reconnected session stored changes
        after = store.sql("SELECT count(*) FROM h_1 WHERE _ts > ?", [restarted])[0][0]
    assert after > 0
    capture_once(pg_dsn, store_path)  # whatever it had not reached yet: no waiting on luck
    with opened(store_path) as store:
        assert_same(store, "public.t", AtLsn(want[0]), want[1])
        # every committed UPDATE exactly once: each row's versions count up by one
        stored = 0
        for k in range(1, 51):
            vs = [int(h[5]["v"]) for h in store.history("public.t", [str(k)]).rows]
            assert vs == list(range(vs[0], vs[0] + len(vs))), f"row {k}: {vs}"
            assert vs[-1] == int(want[1].rows[(str(k),)]["v"])
            stored += len(vs) - 1
    assert 0 < stored <= done[0]
    conn.close()
