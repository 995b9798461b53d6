"""The throwaway PostgreSQL server and the fixtures built on it."""

from __future__ import annotations

import socket

import psycopg2
import psycopg2.extras
import pytest

from rowback import pgserver
from rowback.errors import RowbackError
from rowback.pgserver import PgNotFound, PgServer


def _query(dsn: str, query: str) -> object:
    """Run ``query`` in autocommit mode; return the first column of its first row, if any."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            row = cur.fetchone() if cur.description else None
            return None if row is None else row[0]
    finally:
        conn.close()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_session_server_is_ready_for_logical_decoding(pg_server: PgServer) -> None:
    dsn = pg_server.dsn()
    assert dsn == f"host=127.0.0.1 port={pg_server.port} user=postgres dbname=postgres"
    assert _query(dsn, "SHOW wal_level") == "logical"
    assert _query(dsn, "SHOW logical_decoding_work_mem") == "64kB"
    assert _query(dsn, "SHOW max_replication_slots") == "20"
    assert _query(dsn, "SELECT current_user") == "postgres"


def test_replication_connection_works(pg_dsn: str) -> None:
    dbname = _query(pg_dsn, "SELECT current_database()")
    conn = psycopg2.connect(pg_dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.execute("IDENTIFY_SYSTEM")
    row = cur.fetchone()
    assert row is not None
    assert row[3] == dbname
    # Leave an active slot behind on purpose: the pg_dsn teardown must still drop the database.
    cur.create_replication_slot("left_active", output_plugin="pgoutput")
    _query(pg_dsn, "CREATE PUBLICATION pub FOR ALL TABLES")
    cur.start_replication("left_active", options={"proto_version": "1", "publication_names": "pub"})


_seen: list[str] = []


@pytest.mark.parametrize("run", [1, 2])
def test_pg_dsn_gives_a_fresh_database_each_time(
    pg_dsn: str, pg_server: PgServer, run: int
) -> None:
    name = str(_query(pg_dsn, "SELECT current_database()"))
    assert name.startswith("t_")
    assert name not in _seen
    assert _query(pg_dsn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    for earlier in _seen:  # the earlier test's database was dropped at its teardown
        count = f"SELECT count(*) FROM pg_database WHERE datname = '{earlier}'"
        assert _query(pg_server.dsn(), count) == 0
    _seen.append(name)


def test_start_restart_stop() -> None:
    server = PgServer(fast=True)
    with server:
        dsn = server.create_database("keep")
        _query(dsn, "CREATE TABLE t AS SELECT 42 AS x")
        server.restart()
        assert _query(dsn, "SELECT x FROM t") == 42
        port, base_dir = server.port, server.base_dir
        assert _accepts(port)
    assert not _accepts(port)
    assert not base_dir.exists()
    server.stop()  # idempotent


def test_start_failure_is_one_line_and_cleans_up() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = PgServer(port=busy.getsockname()[1], fast=True)
        with pytest.raises(RowbackError, match="Address already in use") as info:
            server.start()
    assert "\n" not in str(info.value)
    assert not server.base_dir.exists()


def test_missing_postgres_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROWBACK_PG_BINDIR", raising=False)
    monkeypatch.setattr(pgserver, "_has_tools", lambda bindir: False)
    with pytest.raises(PgNotFound, match="apt-get install postgresql") as info:
        pgserver.find_pg_bindir()
    assert "\n" not in str(info.value)
    monkeypatch.setenv("ROWBACK_PG_BINDIR", "/nonexistent")
    with pytest.raises(PgNotFound, match="ROWBACK_PG_BINDIR"):
        pgserver.find_pg_bindir()
