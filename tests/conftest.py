"""Shared fixtures: one PostgreSQL server per session and a fresh database per test, NATS, Redis.

A missing server binary fails the tests that need it (with what to install); it never skips them.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
from psycopg2 import sql

from rowback.pgserver import PgServer

sys.path.insert(0, str(Path(__file__).parent))  # so tests can `import helpers` (importlib mode)
from helpers import free_port, wait_for_port  # noqa: E402


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL for the session; a 64kB decoding budget makes big transactions stream."""
    with PgServer(settings={"logical_decoding_work_mem": "64kB"}, fast=True) as server:
        yield server


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> Iterator[str]:
    """The DSN of a new, empty database; it and its replication slots are dropped afterwards."""
    name = f"t_{secrets.token_hex(6)}"
    yield pg_server.create_database(name)
    drop_database(pg_server, name)


def drop_database(server: PgServer, name: str, timeout: float = 10.0) -> None:
    """Drop database ``name``, first ending its walsenders and dropping its replication slots."""
    conn = psycopg2.connect(server.dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            deadline = time.monotonic() + timeout
            while True:
                cur.execute(
                    "SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots"
                    " WHERE database = %s AND active_pid IS NOT NULL",
                    (name,),
                )
                try:
                    cur.execute(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                        " WHERE database = %s",
                        (name,),
                    )
                    break
                except (psycopg2.errors.ObjectInUse, psycopg2.errors.UndefinedObject):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)  # a walsender still holds the slot, or it just went away
            cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """Where a test's shadow store lives (not created)."""
    return tmp_path / "store"


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"{name} not found: install it with `apt-get install {package}` (./dev setup)")
    return path


@contextmanager
def _serve(cmd: list[str], port: int, log: Path) -> Iterator[None]:
    """Run a server process for the block; fail unless it listens on ``port`` within 10 s."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        if not wait_for_port(port, timeout=10.0, proc=proc):
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            pytest.fail(f"{Path(cmd[0]).name} did not listen on port {port}: {' | '.join(tail)}")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A NATS server with JetStream for the session; yields its URL."""
    binary, port = _binary("nats-server", "nats-server"), free_port()
    root = tmp_path_factory.mktemp("nats")
    cmd = [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(root / "store")]
    with _serve(cmd, port, root / "nats.log"):
        yield f"nats://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway Redis (no persistence) for the session; yields its URL."""
    binary, port = _binary("redis-server", "redis-server"), free_port()
    root = tmp_path_factory.mktemp("redis")
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with _serve([*cmd, "--dir", str(root)], port, root / "redis.log"):
        yield f"redis://127.0.0.1:{port}/0"
