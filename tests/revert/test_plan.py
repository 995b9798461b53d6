"""The planner alone: versions in, a plan out, no database."""

from __future__ import annotations

from rowback.model import Op, Text
from rowback.revert.plan import Action, Mode, plan
from rowback.revert.sql import script, statement
from rowback.store.base import RowVersions, TableVersions, Version

COLS = ("id", "price", "name")
TYPES = (("id", "integer"), ("price", "numeric(10,2)"), ("name", "text"))


def v(pos: int, txid: int, op: Op, **written: Text) -> Version:
    return Version(pos, txid, op, written, COLS)


def table(*rows: tuple[str, list[Version]]) -> list[TableVersions]:
    return [
        TableVersions(
            "postgres",
            "public.p",
            TYPES,
            ("id",),
            tuple(RowVersions((k,), tuple(vs)) for k, vs in rows),
        )
    ]


SNAP = v(1, 10, Op.SNAPSHOT, id="1", price="9.90", name="a")


def test_later_edit_of_another_column_survives() -> None:
    rows = table(("1", [SNAP, v(2, 20, Op.UPDATE, price="0.00"), v(3, 30, Op.UPDATE, name="b")]))
    p = plan(rows, [20], Mode.nocascade)
    (r,) = p.rows
    assert r.action is Action.update and not p.conflicts and not p.refused
    assert [(c.column, c.expected, c.target) for c in r.cells] == [("price", "0.00", "9.90")]
    s = statement(r)
    assert s is not None
    assert s.sql == (
        'UPDATE "public"."p" SET "price" = \'9.90\'::numeric(10,2) '
        "WHERE \"id\" = '1'::integer AND \"price\" IS NOT DISTINCT FROM '0.00'::numeric(10,2)"
    )


def test_later_write_to_the_same_cell_conflicts() -> None:
    rows = table(
        ("1", [SNAP, v(2, 20, Op.UPDATE, price="0.00"), v(3, 30, Op.UPDATE, price="5.00")]),
        (
            "2",
            [
                v(1, 10, Op.SNAPSHOT, id="2", price="3.00", name="c"),
                v(2, 20, Op.UPDATE, price="0.00"),
            ],
        ),
    )
    nocascade = plan(rows, [20], Mode.nocascade)
    assert nocascade.refused
    (c,) = nocascade.conflicts
    assert (c.key, c.column, c.txids) == (("1",), "price", (30,))
    assert "tx 30" in c.line(("id",))

    skip = plan(rows, [20], Mode.nonconflict)
    assert not skip.refused
    assert [r.action for r in skip.rows] == [Action.skip, Action.update]
    assert [r.key for r in skip.writes] == [("2",)]

    force = plan(rows, [20], Mode.force)
    assert [r.action for r in force.rows] == [Action.update, Action.update]
    cell = force.rows[0].cells[0]
    assert (cell.expected, cell.target, cell.writers, cell.written) == ("5.00", "9.90", (30,), True)


def test_inserted_row_is_deleted_and_deleted_row_comes_back() -> None:
    rows = table(
        ("1", [SNAP, v(2, 20, Op.DELETE)]),
        ("7", [v(2, 20, Op.INSERT, id="7", price="1.00", name=None)]),
    )
    p = plan(rows, [20], Mode.nocascade)
    back, gone = p.rows
    assert back.action is Action.insert
    assert {c.column: c.target for c in back.cells} == {"id": "1", "price": "9.90", "name": "a"}
    assert gone.action is Action.delete
    s = statement(gone)
    assert s is not None and '"name" IS NOT DISTINCT FROM NULL::text' in s.sql


def test_delete_then_reinsert_by_a_later_transaction_conflicts() -> None:
    rows = table(
        ("1", [SNAP, v(2, 20, Op.DELETE), v(3, 30, Op.INSERT, id="1", price="2.00", name="z")])
    )
    p = plan(rows, [20], Mode.nocascade)
    assert p.refused
    assert [(c.column, c.txids, c.what) for c in p.conflicts] == [
        (None, (30,), "inserted again later")
    ]
    assert plan(rows, [20], Mode.nonconflict).writes == []


def test_later_delete_of_an_updated_row_conflicts() -> None:
    rows = table(("1", [SNAP, v(2, 20, Op.UPDATE, price="0.00"), v(3, 30, Op.DELETE)]))
    p = plan(rows, [20], Mode.nocascade)
    assert [(c.txids, c.what) for c in p.conflicts] == [((30,), "deleted later")]


def test_later_edit_of_a_row_the_selection_inserted_conflicts() -> None:
    rows = table(
        ("7", [v(2, 20, Op.INSERT, id="7", price="1.00", name="n"), v(3, 30, Op.UPDATE, name="m")])
    )
    p = plan(rows, [20], Mode.nonconflict)
    assert p.rows[0].action is Action.skip and p.conflicts[0].txids == (30,)


def test_two_selected_transactions_revert_to_before_the_first() -> None:
    rows = table(
        ("1", [SNAP, v(2, 20, Op.UPDATE, price="0.00"), v(3, 21, Op.UPDATE, price="1.00")])
    )
    (r,) = plan(rows, [20, 21], Mode.nocascade).rows
    assert [(c.expected, c.target) for c in r.cells] == [("1.00", "9.90")]


def test_script_is_one_guarded_transaction() -> None:
    rows = table(("1", [SNAP, v(2, 20, Op.UPDATE, price="0.00")]))
    text = "".join(script(plan(rows, [20], Mode.nocascade), "abc"))
    assert text.count("BEGIN;") == 1 and text.rstrip().endswith("COMMIT;")
    assert "pg_logical_emit_message(true, 'rowback.revert', 'abc'::text)" in text
    assert "IF NOT FOUND THEN RAISE EXCEPTION" in text


def test_a_later_delete_of_a_row_the_selection_inserted_is_reported() -> None:
    rows = table(("7", [v(2, 20, Op.INSERT, id="7", price="1.00", name="n"), v(3, 30, Op.DELETE)]))
    p = plan(rows, [20], Mode.nonconflict)
    assert p.writes == [] and [(c.txids, c.what) for c in p.conflicts] == [((30,), "deleted later")]
    assert plan(rows, [20], Mode.nocascade).refused
