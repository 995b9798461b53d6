"""A revert that meets a lock, and one killed mid-apply: PostgreSQL is either untouched or
fully reverted, never half, and the record says which."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from pgcap import TableState, pg_connect
from reverting import ROWBACK, run, state


@contextmanager
def row_locked(dsn: str, key: int) -> Iterator[None]:
    """Hold a row lock on products ``key`` (changing nothing) for the block."""
    conn = pg_connect(dsn, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM products WHERE id = %s FOR UPDATE", [key])
        yield
    finally:
        conn.rollback()
        conn.close()


def records(store: Path, *args: str) -> list[dict[str, object]]:
    got = run("reversions", "-f", "json", *args, store=store)
    return [orjson.loads(x) for x in got.stdout.splitlines()]


def test_a_lock_held_past_the_timeout_fails_the_revert_whole(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, _ = damaged
    now = state(dsn).rows
    with row_locked(dsn, 20):
        t0 = time.monotonic()
        got = run("revert", "--txid", str(bad), "--target", dsn, store=store_path, ok=False)
        assert time.monotonic() - t0 < 30
    assert got.returncode == 1 and "lock timeout" in got.stderr and "rolled back" in got.stderr
    assert state(dsn).rows == now
    (r,) = records(store_path)
    assert r["status"] == "failed" and r["rows"] == 0


def _waiting_pid(dsn: str, deadline: float) -> int:
    conn = pg_connect(dsn)
    try:
        while time.monotonic() < deadline:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    'AND query LIKE \'UPDATE "public"."products"%%\''
                )
                row = cur.fetchone()
            if row is not None:
                return int(row[0])
            time.sleep(0.02)
        raise AssertionError("the revert never waited on the lock")
    finally:
        conn.close()


def _gone(dsn: str, pid: int) -> None:
    conn = pg_connect(dsn)
    try:
        for _ in range(500):
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
                row = cur.fetchone()
            if row is not None and int(row[0]) == 0:
                return
            time.sleep(0.02)
        raise AssertionError(f"backend {pid} still there")
    finally:
        conn.close()


def test_kill_9_mid_apply_leaves_postgres_untouched_and_the_record_says_so(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, _ = damaged
    now = state(dsn).rows
    env = {**os.environ, "ROWBACK_STORE": str(store_path)}
    with row_locked(dsn, 20):
        proc = subprocess.Popen(
            [*ROWBACK, "revert", "--txid", str(bad), "--target", dsn],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pid = _waiting_pid(dsn, time.monotonic() + 60)  # rows 1..19 written, 20 waits
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _gone(dsn, pid)
    assert state(dsn).rows == now  # the half-done transaction died with its client
    (r,) = records(store_path)
    assert r["status"] == "started" and r["txid"] is not None
    (r,) = records(store_path, "--target", dsn)
    assert r["status"] == "failed"
    # and the next revert goes through
    run("revert", "--txid", str(bad), "--target", dsn, store=store_path)
    assert [x["status"] for x in records(store_path)] == ["failed", "applied"]
