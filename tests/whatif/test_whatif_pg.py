"""``rowback whatif`` against a real PostgreSQL: what statements would change, through
cascades and triggers, and PostgreSQL is the same afterwards."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from pgcap import pg_connect, pg_state
from reverting import run

TABLES = ["public.products", "public.lines", "public.audit"]


def everything(dsn: str) -> dict[str, Any]:
    conn = pg_connect(dsn)
    try:
        return {t: pg_state(conn, t).rows for t in TABLES}
    finally:
        conn.close()


def whatif(dsn: str, sql: str, store: Path, *args: str, ok: bool = True) -> Any:
    """Run whatif as json; return its changes and summary, asserting PG is unchanged."""
    before = everything(dsn)
    got = run("whatif", "--target", dsn, "--sql", sql, "-f", "json", *args, store=store, ok=ok)
    assert everything(dsn) == before, "whatif changed PostgreSQL"
    lines = [orjson.loads(x) for x in got.stdout.splitlines()]
    assert lines and lines[-1]["summary"] is True
    return got, lines[:-1], lines[-1]


def ops(changes: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return sorted((c["table"], c["op"], c["key"]["id"], c["via"]) for c in changes)


def test_update_shows_cells_and_the_trigger_rows(shop: str, store_path: Path) -> None:
    _, changes, s = whatif(shop, "UPDATE products SET price = 0 WHERE id <= 2", store_path)
    assert ops([c for c in changes if c["table"] == "public.products"]) == [
        ("public.products", "update", "1", "direct"),
        ("public.products", "update", "2", "direct"),
    ]
    one = next(c for c in changes if c["key"] == {"id": "1"} and c["op"] == "update")
    assert (one["before"]["price"], one["after"]["price"], one["changed"]) == (
        "1.25",
        "0.00",
        ["price"],
    )
    audit = [c for c in changes if c["table"] == "public.audit"]
    assert [(c["op"], c["via"]) for c in audit] == [("insert", "trigger")] * 2
    assert (s["rows"], s["updated"], s["inserted"], s["would_fail"]) == (4, 2, 2, False)
    assert s["rolled_back"] and s["elapsed_ms"] >= 0


def test_delete_shows_the_cascade(shop: str, store_path: Path) -> None:
    _, changes, s = whatif(shop, "DELETE FROM products WHERE id = 2", store_path)
    assert ops(changes) == [
        ("public.lines", "delete", "2", "cascade"),
        ("public.lines", "delete", "7", "cascade"),
        ("public.products", "delete", "2", "direct"),
    ]
    assert changes[0]["after"] is None and s["deleted"] == 3


def test_insert_select_leaves_key_checked_parents_out(shop: str, store_path: Path) -> None:
    # the foreign-key check locks every parent row (xmax set), yet none of them changes
    sql = "INSERT INTO lines SELECT id + 100, id, 1 FROM products"
    _, changes, s = whatif(shop, sql, store_path)
    assert {c["table"] for c in changes} == {"public.lines"}
    assert [c["op"] for c in changes] == ["insert"] * 5 and s["statement_rows"] == 5
    assert changes[0]["before"] is None and changes[0]["after"]["qty"] == "1"


def test_a_violated_constraint_is_named_and_exits_5(shop: str, store_path: Path) -> None:
    got, changes, s = whatif(
        shop, "UPDATE products SET price = -1 WHERE id = 1", store_path, ok=False
    )
    assert got.returncode == 5 and changes == []
    assert s["error"]["constraint"] == "products_price_check"
    assert s["error"]["sqlstate"] == "23514" and s["would_fail"]


def test_table_format_marks_cells_and_summarises_on_stderr(shop: str, store_path: Path) -> None:
    got = run("whatif", "--target", shop, "--sql", "DELETE FROM products WHERE id = 3",
              store=store_path)  # fmt: skip
    assert "public.lines" in got.stdout and "cascade" in got.stdout and "*" in got.stdout
    assert "3 row(s) would change" in got.stderr and "rolled back" in got.stderr


def test_max_rows_limits_what_is_printed_not_the_count(shop: str, store_path: Path) -> None:
    _, changes, s = whatif(shop, "UPDATE lines SET qty = 0", store_path, "--max-rows", "3")
    assert len(changes) == 3 and (s["rows"], s["shown"]) == (8, 3)


def test_a_held_lock_stops_at_lock_timeout(shop: str, store_path: Path) -> None:
    holder = pg_connect(shop, autocommit=False)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT * FROM products WHERE id = 1 FOR UPDATE")
        got = run("whatif", "--target", shop, "--sql", "UPDATE products SET price = 1",
                  "--lock-timeout", "200ms", store=store_path, ok=False)  # fmt: skip
    finally:
        holder.rollback()
        holder.close()
    assert got.returncode == 1 and "Traceback" not in got.stderr
    assert got.stderr.strip().count("\n") == 0, got.stderr
    assert "--lock-timeout 200ms" in got.stderr


def test_a_long_statement_stops_at_statement_timeout(shop: str, store_path: Path) -> None:
    sql = "UPDATE products SET name = name || pg_sleep(5)::text"
    got = run("whatif", "--target", shop, "--sql", sql, "--statement-timeout", "300ms",
              store=store_path, ok=False)  # fmt: skip
    assert got.returncode == 1 and "--statement-timeout 300ms" in got.stderr
    assert got.stderr.strip().count("\n") == 0, got.stderr


def test_no_locks_are_left_behind(shop: str, store_path: Path) -> None:
    whatif(shop, "DELETE FROM products WHERE id = 4", store_path)
    done = threading.Event()

    def take() -> None:
        conn = pg_connect(shop, autocommit=False)
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = '1s'")
            cur.execute("LOCK TABLE products IN ACCESS EXCLUSIVE MODE")
        conn.rollback()
        conn.close()
        done.set()

    t = threading.Thread(target=take)
    t.start()
    t.join(5)
    assert done.is_set()


@pytest.mark.parametrize("args", [(), ("--sql", "x", "--file", "f")])
def test_needs_exactly_one_statement(shop: str, store_path: Path, args: tuple[str, ...]) -> None:
    got = run("whatif", "--target", shop, *args, store=store_path, ok=False)
    assert got.returncode == 1 and "--sql TEXT or --file F" in got.stderr
