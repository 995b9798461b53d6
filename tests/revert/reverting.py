"""Helpers of the revert tests: the real ``rowback`` command, a transaction's txid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pgcap import TableState, pg_connect, pg_state

ROWBACK = [sys.executable, "-m", "rowback.cli"]
PSQL = "/usr/lib/postgresql/15/bin/psql"


def run(*args: str, store: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROWBACK_STORE": str(store)}
    env.pop("ROWBACK_DEBUG", None)
    got = subprocess.run([*ROWBACK, *args], capture_output=True, text=True, env=env, timeout=120)
    if ok:
        assert got.returncode == 0, got.stderr
    return got


def in_tx(dsn: str, *statements: str) -> int:
    """Run ``statements`` in one transaction; its txid as the store keeps it."""
    conn = pg_connect(dsn, autocommit=False)
    try:
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
            cur.execute("SELECT pg_current_xact_id()::xid::text")
            row = cur.fetchone()
            assert row is not None
        conn.commit()
        return int(row[0])
    finally:
        conn.close()


def state(dsn: str, table: str = "public.products") -> TableState:
    conn = pg_connect(dsn)
    try:
        return pg_state(conn, table)
    finally:
        conn.close()


def expected_after(before: TableState) -> dict[tuple[object, ...], dict[str, object]]:
    want = {k: dict(r) for k, r in before.rows.items()}
    want[("3",)]["stock"] = "9"
    return want
