"""Fixtures for the revert tests: PostgreSQL's capture helpers (``pgcap``) are shared."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.register_assert_rewrite("pgcap")
sys.path.insert(0, str(Path(__file__).parents[1] / "sources" / "postgres"))
sys.path.insert(0, str(Path(__file__).parent))  # ``reverting`` (importlib mode)

from pgcap import TableState, capture_once, execute  # noqa: E402
from reverting import in_tx, state  # noqa: E402


@pytest.fixture
def damaged(pg_dsn: str, store_path: Path) -> tuple[str, int, TableState]:
    """A shop captured, then a bad deploy (``SET price = 0`` without WHERE) and, after it,
    an unrelated edit of another column (stock) of a damaged row; all captured. Returns
    the DSN, the bad transaction and the state before it."""
    execute(
        pg_dsn,
        "CREATE TABLE products (id int PRIMARY KEY, name text, price numeric(10,2), stock int)",
        "INSERT INTO products SELECT g, 'p' || g, g * 1.25, 10 FROM generate_series(1, 20) g",
    )
    capture_once(pg_dsn, store_path)
    before = state(pg_dsn)
    bad = in_tx(pg_dsn, "UPDATE products SET price = 0")
    execute(pg_dsn, "UPDATE products SET stock = stock - 1 WHERE id = 3")
    capture_once(pg_dsn, store_path)
    return pg_dsn, bad, before
