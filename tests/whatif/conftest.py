"""Fixtures for the whatif tests: a shop with a cascade and an audit trigger."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "sources" / "postgres"))
sys.path.insert(0, str(Path(__file__).parents[1] / "revert"))  # ``reverting`` (importlib mode)

from pgcap import execute  # noqa: E402

SHOP = [
    "CREATE TABLE products (id int PRIMARY KEY, name text, price numeric(10,2) CHECK (price >= 0))",
    "CREATE TABLE lines (id int PRIMARY KEY,"
    " product int NOT NULL REFERENCES products ON DELETE CASCADE, qty int)",
    "CREATE TABLE audit (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, what text)",
    "CREATE FUNCTION audit_price() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " INSERT INTO audit (what) VALUES ('price ' || NEW.id || ' ' || NEW.price); RETURN NEW;"
    " END $$",
    "CREATE TRIGGER audit_price AFTER UPDATE OF price ON products"
    " FOR EACH ROW EXECUTE FUNCTION audit_price()",
    "INSERT INTO products SELECT g, 'p' || g, g * 1.25 FROM generate_series(1, 5) g",
    "INSERT INTO lines SELECT g, (g - 1) % 5 + 1, g FROM generate_series(1, 8) g",
]


@pytest.fixture
def shop(pg_dsn: str) -> str:
    execute(pg_dsn, *SHOP)
    return pg_dsn
