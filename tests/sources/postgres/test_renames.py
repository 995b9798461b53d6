"""ALTER TABLE ... RENAME COLUMN sends no row: the store follows the column by its number,
so rows not changed since keep their values under the new name, and points before the
rename still show the old name. Each case compares every asof plan with PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from pgcap import capture_once, execute, opened
from test_retype_review import _retype_case


def test_rename_value_column(pg_dsn: str, store_path: Path) -> None:
    points, _ = _retype_case(
        pg_dsn,
        store_path,
        [
            "CREATE TABLE s (id int PRIMARY KEY, a int, t text)",
            "INSERT INTO s VALUES (1, 10, 'x'), (2, 20, null)",
        ],
        ["ALTER TABLE s RENAME COLUMN a TO b", "INSERT INTO s VALUES (3, 30, 'z')"],
        ["UPDATE s SET b = 11 WHERE id = 1", "DELETE FROM s WHERE id = 2"],
    )
    assert sorted(points[0][1].types) == ["a", "id", "t"]  # before: the old name
    with opened(store_path) as store:
        rows = list(store.history("public.s", ["2"]).rows)
    assert [r[3] for r in rows] == ["snapshot", "snapshot", "delete"]


def test_rename_key_column(pg_dsn: str, store_path: Path) -> None:
    _retype_case(
        pg_dsn,
        store_path,
        ["CREATE TABLE s (id int PRIMARY KEY, a int)", "INSERT INTO s VALUES (1, 10), (2, 20)"],
        ["ALTER TABLE s RENAME COLUMN id TO k", "UPDATE s SET a = 11 WHERE k = 1"],
        ["DELETE FROM s WHERE k = 2", "INSERT INTO s VALUES (2, 22)"],
    )


def test_rename_and_retype_in_one_transaction(pg_dsn: str, store_path: Path) -> None:
    _retype_case(
        pg_dsn,
        store_path,
        ["CREATE TABLE s (id int PRIMARY KEY, a int, b real)", "INSERT INTO s VALUES (1, 10, 0.1)"],
        [
            "BEGIN; ALTER TABLE s RENAME COLUMN a TO c; ALTER TABLE s ALTER COLUMN c TYPE bigint;"
            " ALTER TABLE s RENAME COLUMN b TO a; ALTER TABLE s ALTER COLUMN a TYPE numeric;"
            " INSERT INTO s VALUES (2, 20, 2.5); COMMIT"
        ],
    )


def test_rename_column_with_stored_default(pg_dsn: str, store_path: Path) -> None:
    """A column added with a default (PostgreSQL keeps it as attmissingval, rows untouched)
    then renamed: old rows read the default under the new name."""
    _retype_case(
        pg_dsn,
        store_path,
        [
            "CREATE TABLE s (id int PRIMARY KEY)",
            "INSERT INTO s VALUES (1), (2)",
            "ALTER TABLE s ADD COLUMN d int DEFAULT 7",
            "INSERT INTO s VALUES (3, 8)",
        ],
        ["ALTER TABLE s RENAME COLUMN d TO e", "INSERT INTO s VALUES (4, 9)"],
        ["UPDATE s SET e = 1 WHERE id = 1"],
    )


def test_rename_across_captures(pg_dsn: str, store_path: Path) -> None:
    """The rename reaches a store written by an earlier capture run (numbers read back)."""
    execute(pg_dsn, "CREATE TABLE s (id int PRIMARY KEY, a int)", "INSERT INTO s VALUES (1, 10)")
    capture_once(pg_dsn, store_path)
    _retype_case(
        pg_dsn,
        store_path,
        ["INSERT INTO s VALUES (2, 20)"],
        ["ALTER TABLE s RENAME COLUMN a TO b", "INSERT INTO s VALUES (3, 30)"],
    )
