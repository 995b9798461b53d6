"""ALTER TABLE ... RENAME COLUMN sends no row: the store follows the column by its number,
so rows not changed since keep their values under the new name, and points before the
rename still show the old name. Each case compares every asof plan with PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from pgcap import capture_once, execute, insert_lsn, opened, pg_connect, pg_state
from test_retype_review import _retype_case, rename_step
from test_schema_changes import _every_plan_same

from rowback.when import AtLsn


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


@pytest.mark.parametrize("capture_each", [True, False], ids=["live", "behind"])
def test_rename_chain(pg_dsn: str, store_path: Path, capture_each: bool) -> None:
    """a -> a0 -> a1 ... and the key renamed on the way, in transactions with updates
    before and after, transactions split across store writes; captured after each step,
    or all at once by a capture behind them (the catalog then knows only the last names:
    numbers are carried from version to version, starting from the store's)."""
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        "CREATE TABLE s (id int PRIMARY KEY, a int, n numeric(8,2))",
        "INSERT INTO s SELECT g, g, g / 3.0 FROM generate_series(1, 300) g",
    )
    capture_once(pg_dsn, store_path, batch_size=7)
    points = []
    for i in range(5):
        execute(pg_dsn, *rename_step(i))
        points.append((insert_lsn(conn), pg_state(conn, "public.s")))
        if capture_each:
            capture_once(pg_dsn, store_path, batch_size=7)
    assert capture_once(pg_dsn, store_path, batch_size=7).gaps == 0
    with opened(store_path) as store:
        for lsn, want in points:
            _every_plan_same(store, "public.s", AtLsn(lsn), want)
    conn.close()


def test_changes_and_tx_keys_after_key_rename(pg_dsn: str, store_path: Path) -> None:
    """Each version's key under the key columns of its own generation: no dropped key
    column shown as null."""
    conn = pg_connect(pg_dsn)
    execute(pg_dsn, "CREATE TABLE s (id int PRIMARY KEY, a int)", "INSERT INTO s VALUES (1, 10)")
    capture_once(pg_dsn, store_path)
    execute(pg_dsn, "ALTER TABLE s RENAME COLUMN id TO k", "UPDATE s SET a = 11 WHERE k = 1")
    with conn.cursor() as cur:
        cur.execute("SELECT xmin::text::bigint FROM s WHERE k = 1")
        txid = cur.fetchone()[0]
    capture_once(pg_dsn, store_path)
    with opened(store_path) as store:
        keys = [r[5] for r in store.changes("public.s").rows]
        assert keys == [{"id": 1}, {"k": 1}, {"k": 1}]  # snapshot, re-read, update
        assert [r[4] for r in store.tx(txid).rows] == [{"k": 1}, {"k": 1}]
    conn.close()


def test_drop_last_and_add_same_type_is_not_a_rename(pg_dsn: str, store_path: Path) -> None:
    """DROP COLUMN b, ADD COLUMN c of b's type: c takes b's place in the relation, but not
    its values."""
    _retype_case(
        pg_dsn,
        store_path,
        ["CREATE TABLE s (id int PRIMARY KEY, a int, b int)", "INSERT INTO s VALUES (1, 10, 100)"],
        ["ALTER TABLE s DROP COLUMN b, ADD COLUMN c int", "INSERT INTO s VALUES (2, 20, 200)"],
    )


def test_renames_behind_keep_stored_default(pg_dsn: str, store_path: Path) -> None:
    """A column added with a default, then renamed twice before capture reads either
    rename: the catalog knows only the last name, so the default is carried from version
    to version with the column's number."""
    _retype_case(
        pg_dsn,
        store_path,
        [
            "CREATE TABLE s (id int PRIMARY KEY)",
            "INSERT INTO s VALUES (1), (2)",
            "ALTER TABLE s ADD COLUMN d int DEFAULT 5",
            "INSERT INTO s VALUES (3, 6)",
        ],
        [
            "ALTER TABLE s RENAME COLUMN d TO e",
            "INSERT INTO s VALUES (4, 7)",
            "ALTER TABLE s RENAME COLUMN e TO f",
            "INSERT INTO s VALUES (5, 8)",
        ],
        ["UPDATE s SET f = 9 WHERE id = 1"],
    )
