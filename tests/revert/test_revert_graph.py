"""Reverts along the foreign-key graph, with identity columns, and in force mode."""

from __future__ import annotations

from pathlib import Path

from pgcap import capture_once, execute, opened, pg_connect, pg_state
from reverting import in_tx, run

from rowback.revert import Mode, prepare
from rowback.revert.apply import apply


def rows(dsn: str, table: str) -> dict[tuple[object, ...], dict[str, object]]:
    conn = pg_connect(dsn)
    try:
        return pg_state(conn, table).rows
    finally:
        conn.close()


def shop(dsn: str, store: Path) -> None:
    execute(
        dsn,
        "CREATE TABLE parent (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text)",
        "CREATE TABLE child (id int PRIMARY KEY, "
        "parent_id int NOT NULL REFERENCES parent ON DELETE CASCADE, qty int)",
        "INSERT INTO parent (name) SELECT 'p' || g FROM generate_series(1, 3) g",
        "INSERT INTO child SELECT g, 1 + g % 3, g FROM generate_series(1, 9) g",
    )
    capture_once(dsn, store)


def test_a_reverted_delete_brings_back_children_removed_by_cascade(
    pg_dsn: str, store_path: Path
) -> None:
    shop(pg_dsn, store_path)
    before = rows(pg_dsn, "public.parent"), rows(pg_dsn, "public.child")
    bad = in_tx(pg_dsn, "DELETE FROM parent WHERE id IN (1, 2)")
    assert len(rows(pg_dsn, "public.child")) == 3
    capture_once(pg_dsn, store_path)
    got = run("revert", "--txid", str(bad), "--target", pg_dsn, store=store_path)
    assert "rows" in got.stdout
    assert (rows(pg_dsn, "public.parent"), rows(pg_dsn, "public.child")) == before


def test_reverted_inserts_are_deleted_children_first_and_sequences_are_not_rewound(
    pg_dsn: str, store_path: Path
) -> None:
    shop(pg_dsn, store_path)
    before = rows(pg_dsn, "public.parent"), rows(pg_dsn, "public.child")
    bad = in_tx(
        pg_dsn,
        "INSERT INTO parent (name) VALUES ('new')",
        "INSERT INTO child VALUES (100, 4, 1)",
    )
    capture_once(pg_dsn, store_path)
    got = run("revert", "--txid", str(bad), "--target", pg_dsn, store=store_path)
    assert "public.parent.id: its sequence is not rewound" in got.stderr
    assert (rows(pg_dsn, "public.parent"), rows(pg_dsn, "public.child")) == before
    # and the undo puts them back, through OVERRIDING SYSTEM VALUE for the identity key
    capture_once(pg_dsn, store_path)
    run("revert", "--reversion", "1", "--target", pg_dsn, store=store_path)
    assert rows(pg_dsn, "public.parent")[("4",)]["name"] == "new"
    assert rows(pg_dsn, "public.child")[("100",)]["parent_id"] == "4"


def test_force_overwrites_a_later_write_and_says_so(pg_dsn: str, store_path: Path) -> None:
    shop(pg_dsn, store_path)
    before = rows(pg_dsn, "public.child")
    bad = in_tx(pg_dsn, "UPDATE child SET qty = 0")
    later = in_tx(pg_dsn, "UPDATE child SET qty = 50 WHERE id = 2")
    capture_once(pg_dsn, store_path)
    with opened(store_path) as s:
        plan = prepare(s, [bad], Mode.force)
    (c,) = plan.conflicts
    assert (c.key, c.column, c.txids) == (("2",), "qty", (later,))
    cell = next(r for r in plan.rows if r.key == ("2",)).cells[0]
    assert (cell.expected, cell.target, cell.written) == ("50", "2", True)
    done = apply(plan, pg_dsn, "force")
    assert done.rows == 9
    assert rows(pg_dsn, "public.child") == before


AUDIT = (
    "CREATE TABLE audit (n int)",
    "CREATE FUNCTION count_it() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN INSERT INTO audit VALUES (1); RETURN NEW; END $$",
    "CREATE TRIGGER counted AFTER UPDATE ON child FOR EACH ROW EXECUTE FUNCTION count_it()",
)


def audited(dsn: str) -> int:
    conn = pg_connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM audit")
            row = cur.fetchone()
            assert row is not None
            return int(row[0])
    finally:
        conn.close()


def test_triggers_fire_unless_disabled(pg_dsn: str, store_path: Path) -> None:
    shop(pg_dsn, store_path)
    execute(pg_dsn, *AUDIT)
    bad = in_tx(pg_dsn, "UPDATE child SET qty = 0 WHERE id <= 4")
    capture_once(pg_dsn, store_path)
    assert audited(pg_dsn) == 4
    run("revert", "--txid", str(bad), "--target", pg_dsn, "--disable-triggers", store=store_path)
    assert audited(pg_dsn) == 4 and rows(pg_dsn, "public.child")[("1",)]["qty"] == "1"
    capture_once(pg_dsn, store_path)
    run("revert", "--reversion", "1", "--target", pg_dsn, store=store_path)
    assert audited(pg_dsn) == 8
