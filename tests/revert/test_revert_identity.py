"""A revert refuses a target that is not the captured database, even one with a slot of
the same name: capture recorded the cluster's system identifier and the database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pgcap import TableState, execute, fresh_database, opened
from reverting import expected_after, run, state

from rowback.pgserver import PgServer

SHOP = (
    "CREATE TABLE products (id int PRIMARY KEY, name text, price numeric(10,2), stock int)",
    "INSERT INTO products SELECT g, 'p' || g, 0, 10 FROM generate_series(1, 20) g",
)
SLOT = "SELECT pg_create_logical_replication_slot('rowback', 'pgoutput')"


@pytest.fixture
def other_database(pg_server: PgServer) -> Iterator[str]:
    """Another database on the captured cluster, shaped like it (slot names are the
    cluster's, so it cannot have a ``rowback`` slot of its own)."""
    with fresh_database(pg_server) as dsn:
        execute(dsn, *SHOP)
        yield dsn


@pytest.fixture(scope="module")
def other_cluster() -> Iterator[PgServer]:
    with PgServer(fast=True) as server:
        yield server


@pytest.fixture
def other_cluster_database(other_cluster: PgServer) -> Iterator[str]:
    """A database of another cluster, shaped like the captured one, with a ``rowback`` slot."""
    with fresh_database(other_cluster) as dsn:
        execute(dsn, *SHOP, SLOT)
        yield dsn


@pytest.mark.parametrize("target", ["other_database", "other_cluster_database"])
def test_a_target_that_is_not_the_captured_database_is_refused(
    damaged: tuple[str, int, TableState],
    store_path: Path,
    target: str,
    request: pytest.FixtureRequest,
) -> None:
    _, bad, _ = damaged
    dsn = request.getfixturevalue(target)
    before = state(dsn).rows
    got = run("revert", "--txid", str(bad), "--target", dsn, store=store_path, ok=False)
    assert got.returncode != 0
    (line,) = got.stderr.strip().splitlines()
    assert "is not the captured database: system identifier" in line
    assert "capture recorded" in line
    assert state(dsn).rows == before


def test_a_store_without_the_identity_falls_back_to_the_slot(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, before = damaged
    with opened(store_path) as s:
        position = s.position("postgres")
        assert position is not None and position.pop("identity")["database"]
        s.write([], "postgres", position)
    run("revert", "--txid", str(bad), "--target", dsn, store=store_path)
    assert state(dsn).rows == expected_after(before)
