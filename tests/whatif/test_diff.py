"""The pure half: images in, changes, cell lines and a summary out (no server)."""

from __future__ import annotations

import pytest

from rowback.whatif.diff import (
    CASCADE,
    DIRECT,
    TRIGGER,
    Failure,
    Outcome,
    cell_rows,
    from_doc,
    summary,
    summary_line,
    table_changes,
    to_doc,
    via_of,
)

AFTER = {("1",): {"id": "1", "price": "0"}, ("9",): {"id": "9", "price": "5"}}
BEFORE = {("1",): {"id": "1", "price": "2"}}
GONE = {("3",): {"id": "3", "price": "7"}}


def test_changes_pair_images_by_key_and_name_changed_cells() -> None:
    got = table_changes("s.t", ["id"], AFTER, BEFORE, GONE)
    assert [(c.op.value, c.key, c.changed) for c in got] == [
        ("update", {"id": "1"}, ["price"]),
        ("insert", {"id": "9"}, ["id", "price"]),
        ("delete", {"id": "3"}, ["id", "price"]),
    ]


def test_cell_lines_show_changed_cells_of_updates_and_every_cell_otherwise() -> None:
    got = list(cell_rows(table_changes("s.t", ["id"], AFTER, BEFORE, GONE)))
    assert [(r[2], r[4], r[5], r[6]) for r in got] == [
        ("update", "price", "2", "0"),
        ("insert", "id", None, "9"),
        ("insert", "price", None, "5"),
        ("delete", "id", "3", None),
        ("delete", "price", "7", None),
    ]


@pytest.mark.parametrize(
    ("table", "want"),
    [("a.order", DIRECT), ("a.line", CASCADE), ("a.audit", TRIGGER)],
)
def test_via_tells_direct_cascade_and_trigger(table: str, want: str) -> None:
    assert via_of(table, {"a.order"}, {"a.line": frozenset({"a.order"})}) == want


def test_summary_counts_every_change_and_reports_the_failure() -> None:
    changes = table_changes("s.t", ["id"], AFTER, BEFORE, GONE)
    s = summary(Outcome(changes, Failure("23514", "violates", "t_price_check")), shown=1)
    assert (s["rows"], s["shown"], s["inserted"], s["updated"], s["deleted"]) == (3, 1, 1, 1, 1)
    assert s["error"]["constraint"] == "t_price_check" and s["would_fail"]
    assert "t_price_check" in summary_line(s)


def test_a_change_survives_the_service_answer() -> None:
    for c in table_changes("s.t", ["id"], AFTER, BEFORE, GONE):
        assert from_doc(to_doc(c)) == c
