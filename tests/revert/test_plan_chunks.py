"""Planning in bounded memory: the store gives a big table's touched rows in parts, the
plan spills its rows to disk in chunks, and neither changes the plan or its SQL."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import rowback.revert as rv
from rowback.model import Change, Column, Op, TableSchema
from rowback.revert import Mode, prepare
from rowback.revert.plan import Action, Cell, PlanRows, RowPlan
from rowback.revert.sql import statements
from rowback.store.duckdb import DuckDBStore

rplan = importlib.import_module("rowback.revert.plan")  # the package exports plan(), too

A = TableSchema("pg", "public", "a", (Column("id", "integer", key=True), Column("x", "integer")))
B = TableSchema(
    "pg",
    "public",
    "b",
    (Column("k1", "integer", key=True), Column("k2", "text", key=True), Column("y", "text")),
)


def row(table: str, key: str, action: Action) -> RowPlan:
    return RowPlan(table, ("id",), (key,), ("integer",), action, (Cell("x", "int", "1", "2"),))


def test_plan_rows_spill_keeps_order_and_finds_each_table_and_action() -> None:
    rows = [
        row("t.a" if i % 3 else "t.b", str(i), Action(("update", "delete")[i % 2]))
        for i in range(11)
    ]
    got = PlanRows(rows, spill=3)
    assert len(got) == 11 and list(got) == rows, "three chunks on disk and two in memory"
    assert got[0] == rows[0] and got[-1] == rows[-1] and got[7] == rows[7]
    with pytest.raises(IndexError):
        got[11]
    for t in ("t.a", "t.b"):
        for a in (Action.update, Action.delete):
            assert list(got.of(t, a)) == [r for r in rows if (r.table, r.action) == (t, a)]
    got.close()
    assert list(got) == rows[9:], "closing drops what was spilled"


def _changes(store: DuckDBStore) -> tuple[int, int]:
    """50 rows of a and 30 of b; tx 2 damages 40 rows of a, deletes 10 of b and inserts
    5 into a; tx 3, later, rewrites some of the damaged cells. Returns (bad, later)."""
    snap = [Change(A, Op.SNAPSHOT, None, [str(i), str(i)], None, 0, 1, 1, i) for i in range(50)]
    snap += [
        Change(B, Op.SNAPSHOT, None, [str(i % 7), f"k{i}", f"y{i}"], None, 0, 1, 1, 50 + i)
        for i in range(30)
    ]
    store.write(snap, "pg", {"lsn": 1})
    bad = [Change(A, Op.UPDATE, None, [str(i), "-1"], None, 10, 2, 2, i) for i in range(40)]
    bad += [
        Change(B, Op.DELETE, (str(i % 7), f"k{i}"), None, None, 10, 2, 2, 40 + i) for i in range(10)
    ]
    bad += [
        Change(A, Op.INSERT, None, [str(100 + i), "7"], None, 10, 2, 2, 60 + i) for i in range(5)
    ]
    store.write(bad, "pg", {"lsn": 2})
    later = [Change(A, Op.UPDATE, None, [str(i), "5"], None, 20, 3, 3, i) for i in range(0, 40, 6)]
    store.write(later, "pg", {"lsn": 3})
    return 2, 3


def _key(r: RowPlan) -> tuple[object, ...]:
    return (r.table, r.key)


@pytest.mark.parametrize("mode", [Mode.nonconflict, Mode.force, Mode.cascade, Mode.nocascade])
def test_a_plan_in_parts_and_spilled_equals_the_plan_in_one_piece(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: Mode
) -> None:
    s = DuckDBStore(tmp_path)
    try:
        bad, _ = _changes(s)
        whole = prepare(s, [bad], mode)
        assert whole.n_writes > 0 and len(whole.rows) == 55
        parts = list(s.touched_versions([bad], None, 7))
        assert len(parts) >= 8, "50+ rows of a in parts of about 7, 10 rows of b"
        seen = [(t.table, r.key) for t in parts for r in t.rows]
        assert len(seen) == len(set(seen)) == 55, "each row whole, in one part"
        one = {(t.table, r.key): r for t in s.touched_versions([bad]) for r in t.rows}
        assert {(t.table, r.key): r for t in parts for r in t.rows} == one

        monkeypatch.setattr(rv, "CHUNK_ROWS", 7)
        monkeypatch.setattr(rplan, "SPILL_ROWS", 4)
        small = prepare(s, [bad], mode)
        assert small.rows._chunks, "the plan was spilled"
        assert sorted(small.rows, key=_key) == sorted(whole.rows, key=_key)
        assert sorted(map(repr, small.conflicts)) == sorted(map(repr, whole.conflicts))
        assert (small.n_writes, small.refused, small.pulled) == (
            whole.n_writes,
            whole.refused,
            whole.pulled,
        )

        # the same statements, in the same phases and table order (rows within a
        # table may come in another order: the parts split them by a hash of the key)
        def phases(p: rplan.Plan) -> list[tuple[str, str, list[str]]]:
            out: list[tuple[str, str, list[str]]] = []
            for st in statements(p):
                head = (st.row.table, st.row.action.value)
                if not out or out[-1][:2] != head:
                    out.append((*head, []))
                out[-1][2].append(st.sql)
            return [(t, a, sorted(sqls)) for t, a, sqls in out]

        assert phases(small) == phases(whole)
    finally:
        s.close()


def test_max_rows_stops_planning_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = DuckDBStore(tmp_path)
    try:
        bad, _ = _changes(s)
        monkeypatch.setattr(rv, "CHUNK_ROWS", 7)
        planned: list[int] = []
        real = rplan.plan_row

        def counting(*args: object, **kw: object) -> RowPlan | None:
            planned.append(1)
            return real(*args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(rplan, "plan_row", counting)
        with pytest.raises(Exception, match="more than --max-rows 10 rows"):
            prepare(s, [bad], Mode.force, max_rows=10)
        assert len(planned) < 30, "it stopped soon after the 11th row, not after all 55"
    finally:
        s.close()
