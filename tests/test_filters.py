"""Row filters: the CLI's --where read into (column, op, value), and the API's form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rowback.errors import BadParameter
from rowback.filters import Filter, Op, parse_param, parse_where


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("amount > 50", [Filter("amount", Op.gt, "50")]),
        ("ts > '2020-01-01'", [Filter("ts", Op.gt, "2020-01-01")]),
        ("Status = 'it''s'", [Filter("status", Op.eq, "it's")]),
        ('"Mixed Case" <> -1.5e3', [Filter("Mixed Case", Op.ne, "-1.5e3")]),
        ("a IS NULL and b is not null", [Filter("a", Op.isnull), Filter("b", Op.notnull)]),
        ("id IN (1, 500000, 'x')", [Filter("id", Op.in_, ("1", "500000", "x"))]),
        (
            "name LIKE 'a%' AND ok = true",
            [Filter("name", Op.like, "a%"), Filter("ok", Op.eq, "true")],
        ),
    ],
)
def test_where_reads_into_filters(text: str, want: list[Filter]) -> None:
    assert parse_where(text) == want


@pytest.mark.parametrize(
    "text",
    [
        "1=1; DROP TABLE x",
        "a = 1 OR 1 = 1",
        "a = (SELECT 1)",
        "a = b",
        "a =",
        "= 1",
        "a = 1 AND",
        "a IN (1, 2",
        "a IS 1",
        "a = 1 -- comment",
    ],
)
def test_where_refuses_anything_but_conjunctions_of_comparisons(text: str) -> None:
    with pytest.raises(BadParameter) as e:
        parse_where(text)
    assert e.value.param == "--where" and text in str(e.value)


@given(
    column=st.text(st.characters(blacklist_characters=":"), min_size=1, max_size=12),
    op=st.sampled_from(list(Op)),
    value=st.text(max_size=20),
    items=st.lists(st.text(max_size=8), max_size=4),
)
def test_api_form_reads_back_to_the_same_filter(
    column: str, op: Op, value: str, items: list[str]
) -> None:
    if op in (Op.isnull, Op.notnull):
        f = Filter(column, op)
    elif op is Op.in_:
        f = Filter(column, op, tuple(items))
    else:
        f = Filter(column, op, value)
    assert parse_param(f.as_param()) == f
