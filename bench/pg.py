"""A throwaway PostgreSQL and pgbench for the capture benchmarks."""

from __future__ import annotations

import re
import subprocess
import time
from typing import Any

import psycopg2

from rowback.pgserver import PgServer

# pgbench's tpcb-like script changes 4 rows per transaction: UPDATE pgbench_accounts,
# pgbench_tellers and pgbench_branches, INSERT pgbench_history. pgbench_history has no
# primary key, so default capture (tables with a primary key) does not capture it.
CAPTURED_PER_TPCB_TX = 3


def server(fast: bool, **settings: str) -> PgServer:
    """Start a cluster; ``fast`` turns fsync off (fine for making a backlog quickly)."""
    conf = {"max_wal_size": "8GB", "checkpoint_timeout": "30min", **settings}
    return PgServer(settings=conf, fast=fast).start()


def conn_args(pg: PgServer) -> list[str]:
    return ["-h", pg.host, "-p", str(pg.port), "-U", "postgres", "postgres"]


def pgbench_init(pg: PgServer, scale: int) -> float:
    """``pgbench -i -s scale``; returns the seconds it took."""
    t = time.perf_counter()
    _run([str(pg.bindir / "pgbench"), "-i", "-q", "-s", str(scale), *conn_args(pg)])
    return time.perf_counter() - t


def pgbench(pg: PgServer, *args: str) -> dict[str, Any]:
    """Run pgbench with ``args``; its TPS, transactions and wall seconds."""
    t = time.perf_counter()
    out = _run([str(pg.bindir / "pgbench"), *args, *conn_args(pg)])
    wall = time.perf_counter() - t
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    done = re.search(r"number of transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if not tps or not done:
        raise RuntimeError(f"cannot read pgbench output:\n{out[-2000:]}")
    return {
        "tps": float(tps.group(1)),
        "transactions": int(done.group(1)),
        "failed": int(failed.group(1)) if failed else 0,
        "wall_s": wall,
    }


def _run(cmd: list[str]) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {p.stderr.strip()[-1000:]}")
    return p.stdout + p.stderr


def connect(pg: PgServer) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(pg.dsn())
    conn.autocommit = True
    return conn


def one(conn: psycopg2.extensions.connection, sql: str, args: Any = None) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
        return row[0] if row else None


def slot_state(conn: psycopg2.extensions.connection, slot: str) -> tuple[int, int, bool] | None:
    """(current WAL LSN, slot's confirmed_flush_lsn, slot active) as integers."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, "
            "coalesce(confirmed_flush_lsn - '0/0'::pg_lsn, 0), active "
            "FROM pg_replication_slots WHERE slot_name = %s",
            [slot],
        )
        row = cur.fetchone()
    return (int(row[0]), int(row[1]), bool(row[2])) if row else None


def wait_caught_up(
    conn: psycopg2.extensions.connection, slot: str, timeout: float = 600.0
) -> float:
    """Wait until the slot has confirmed everything written before this call; seconds taken."""
    t0 = time.perf_counter()
    target = int(one(conn, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
    while True:
        st = slot_state(conn, slot)
        if st is not None and st[1] >= target:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"slot {slot} did not catch up within {timeout} s")
        time.sleep(0.05)


def wait_active(conn: psycopg2.extensions.connection, slot: str, timeout: float = 120.0) -> None:
    t0 = time.perf_counter()
    while True:
        st = slot_state(conn, slot)
        if st is not None and st[2]:
            return
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"slot {slot} did not become active within {timeout} s")
        time.sleep(0.05)
