"""Tests for rendering query results as JSON Lines, CSV and tables."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rowback.render import (
    FORMATS,
    iso_duration,
    parse_pg_array,
    to_json_value,
    write_rows,
)

PLUS_ONE = timezone(timedelta(hours=1))


def pg_quote(item: str | None) -> str:
    """Write one array element the way PostgreSQL's array_out does."""
    if item is None:
        return "NULL"
    special = '{},"\\ \t\n\r\v\f'
    if item == "" or item.upper() == "NULL" or any(c in special for c in item):
        return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return item


def pg_literal(items: Sequence[object]) -> str:
    """Write a (possibly nested) list as a PostgreSQL array literal."""
    parts = [pg_literal(i) if isinstance(i, list) else pg_quote(i) for i in items]  # type: ignore[arg-type]
    return "{" + ",".join(parts) + "}"


# --- to_json_value: plain Python types ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (False, False),
        (0, 0),
        (-42, -42),
        ((1 << 64) - 1, (1 << 64) - 1),
        (-(1 << 63), -(1 << 63)),
        (1 << 64, "18446744073709551616"),
        (-(1 << 63) - 1, "-9223372036854775809"),
        (1.5, 1.5),
        (-0.25, -0.25),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (Decimal("1.10"), "1.10"),
        (Decimal("-0.000"), "-0.000"),
        (Decimal("1E+2"), "100"),
        (Decimal("1E-7"), "0.0000001"),
        (Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
        (Decimal("NaN"), "NaN"),
        (Decimal("Infinity"), "Infinity"),
        (Decimal("-Infinity"), "-Infinity"),
        ("text", "text"),
        ("", ""),
        (b"\x00\xffhello", "AP9oZWxsbw=="),
        (b"a", "YQ=="),
        (b"", ""),
        (bytearray(b"ab"), "YWI="),
        (memoryview(b"abc"), "YWJj"),
        (datetime(2026, 11, 25, 10, 0, tzinfo=UTC), "2026-11-25T10:00:00+00:00"),
        (datetime(2026, 11, 25, 10, 0, tzinfo=PLUS_ONE), "2026-11-25T10:00:00+01:00"),
        (datetime(2026, 11, 25, 10, 0, 0, 5), "2026-11-25T10:00:00.000005"),
        (date(2026, 11, 25), "2026-11-25"),
        (time(10, 30, 1, 500000), "10:30:01.500000"),
        (time(10, 30, tzinfo=PLUS_ONE), "10:30:00+01:00"),
        (timedelta(0), "PT0S"),
        (timedelta(days=1, hours=2, minutes=3, seconds=4), "P1DT2H3M4S"),
        (timedelta(days=3), "P3D"),
        (timedelta(microseconds=1500), "PT0.0015S"),
        (timedelta(seconds=-1), "PT-1S"),
        (-timedelta(days=1, hours=2), "P-1DT-2H"),
        (UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
        ([1, Decimal("2.0"), None, [b"x"]], [1, "2.0", None, ["eA=="]]),
        ((1, "a"), [1, "a"]),
        ({"a": {"b": float("nan")}, 1: date(2026, 1, 1)}, {"a": {"b": "NaN"}, "1": "2026-01-01"}),
        (object, str(object)),
    ],
)
def test_plain_values(value: object, expected: object) -> None:
    assert to_json_value(value) == expected


def test_iso_duration_is_exact_to_the_microsecond() -> None:
    assert iso_duration(timedelta(hours=25, microseconds=1)) == "P1DT1H0.000001S"
    assert iso_duration(-timedelta(minutes=1, seconds=30)) == "PT-1M-30S"


# --- to_json_value: type hints -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hint", "expected"),
    [
        ('{"a": [1, 2.5, null, true]}', "json", {"a": [1, 2.5, None, True]}),
        ("[1,2]", "json", [1, 2]),
        ('"s"', "json", "s"),
        ("123456789012345678901234567890", "json", "123456789012345678901234567890"),
        (
            '{"big": 123456789012345678901234567890}',
            "json",
            {"big": "123456789012345678901234567890"},
        ),
        ('{"n": 1234567890123456789}', "json", {"n": 1234567890123456789}),
        (b'{"a":1}', "json", {"a": 1}),
        ({"already": "parsed"}, "json", {"already": "parsed"}),
        ("not json", "json", "not json"),
        (None, "json", None),
        ("1.10", "numeric", "1.10"),
        (Decimal("1.10"), "numeric", "1.10"),
        (7, "numeric", "7"),
        ("NaN", "numeric", "NaN"),
        (b"\x01\x02", "bytea", "AQI="),
        ("\\x0102", "bytea", "AQI="),
        ({"id": 1, "tags": ["a"]}, "row", {"id": 1, "tags": ["a"]}),
        ('{"id": 1}', "row", {"id": 1}),
        (["a", "b"], "changed", ["a", "b"]),
        ("{a,b}", "changed", ["a", "b"]),
        ('["a", "b"]', "changed", ["a", "b"]),
        ("{1,2,NULL}", "pgarray", ["1", "2", None]),
        ('{"a b","c\\"d"}', "pgarray", ["a b", 'c"d']),
        ("{{1,2},{3,4}}", "pgarray", [["1", "2"], ["3", "4"]]),
        ("{1,2,NULL}", "pgarray:int", [1, 2, None]),
        ("{{1,2},{3,NULL}}", "pgarray:int8", [[1, 2], [3, None]]),
        ("{1.10,2,NaN}", "pgarray:numeric", ["1.10", "2", "NaN"]),
        ("{1.5,NaN,Infinity,-Infinity}", "pgarray:float", [1.5, "NaN", "Infinity", "-Infinity"]),
        ("{t,f,NULL}", "pgarray:bool", [True, False, None]),
        ('{"{\\"a\\": 1}","[2]"}', "pgarray:json", [{"a": 1}, [2]]),
        ("{1,NULL}", "pgarray:text", ["1", None]),
        (
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "pgarray:uuid",
            ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
        ),
        ([1, None, 3], "pgarray:int", [1, None, 3]),
        ("{}", "pgarray:int", []),
        ("{1,x}", "pgarray:int", "{1,x}"),
        ("not an array", "pgarray", "not an array"),
        (None, "pgarray", None),
    ],
)
def test_hinted_values(value: object, hint: str, expected: object) -> None:
    assert to_json_value(value, hint) == expected


def test_numeric_never_goes_through_float() -> None:
    value = to_json_value(Decimal("0.1000000000000000055511151231257827"), "numeric")
    assert value == "0.1000000000000000055511151231257827"


def test_unknown_hint_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown type hint"):
        to_json_value(1, "money")


# --- parse_pg_array ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", []),
        ("{ }", []),
        ("{1,2,3}", ["1", "2", "3"]),
        ('{NULL,null,Null,"NULL"}', [None, None, None, "NULL"]),
        ('{""}', [""]),
        ('{"a,b","{}","\\\\"}', ["a,b", "{}", "\\"]),
        ("{  a b  , c }", ["a b", "c"]),
        ("{a\\,b,\\N}", ["a,b", "N"]),
        ("{a\\ }", ["a "]),
        ("{\\NULL}", ["NULL"]),
        ("{{1,2},{3,4}}", [["1", "2"], ["3", "4"]]),
        ("{{{1}},{{2}}}", [[["1"]], [["2"]]]),
        ("{{},{}}", [[], []]),
        ("[0:1]={1,2}", ["1", "2"]),
        ("[1:2][1:1]={{a},{b}}", [["a"], ["b"]]),
        (" [-1:0] = {x,y} ", ["x", "y"]),
        ('{"multi\nline",é}', ["multi\nline", "é"]),
    ],
)
def test_parse_pg_array(text: str, expected: list[object]) -> None:
    assert parse_pg_array(text) == expected


def test_parse_pg_array_with_another_delimiter() -> None:
    assert parse_pg_array("{(1,2);(3,4)}", delimiter=";") == ["(1,2)", "(3,4)"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1,2",
        "{",
        "{1",
        '{"a}',
        '{"a',
        "{1,}",
        "{,1}",
        "{,}",
        "{1}x",
        "{1}{2}",
        '{a"b}',
        "{a{b}}",
        "{1,{2}}",
        "{{1},2}",
        "[1:2]{1,2}",
        "[x]={1}",
        "{a\\",
    ],
)
def test_parse_pg_array_refuses_malformed_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_pg_array(text)


ELEMENTS = st.one_of(
    st.none(),
    st.sampled_from(
        ["", " ", "NULL", "null", "Null", '"', "\\", "{", "}", ",", "{}", "a b", "\\N"]
    ),
    st.text(alphabet=st.sampled_from('ab {},"\\\tNUL\n'), max_size=8),
    st.text(max_size=8),
)


@given(st.lists(ELEMENTS, max_size=8))
def test_pg_array_round_trip(items: list[str | None]) -> None:
    assert parse_pg_array(pg_literal(items)) == items


@given(
    st.integers(min_value=1, max_value=4).flatmap(
        lambda width: st.lists(st.lists(ELEMENTS, min_size=width, max_size=width), max_size=4)
    )
)
def test_pg_array_round_trip_two_dimensions(rows: list[list[str | None]]) -> None:
    assert parse_pg_array(pg_literal(rows)) == rows


# --- write_rows ----------------------------------------------------------------------------

COLUMNS = ["id", "name", "price", "tags", "at", "blob"]
TYPES = {"tags": "pgarray:int", "price": "numeric"}
ROWS = [
    (1, "alice", Decimal("1.10"), "{1,2,NULL}", datetime(2026, 1, 1, 9, tzinfo=PLUS_ONE), b"\x00"),
    (2, 'bob, "the" builder', None, "{}", None, None),
]


def render(fmt: str, rows: object = ROWS, **kwargs: object) -> tuple[int, str]:
    buf = io.StringIO()
    count = write_rows(buf, fmt, COLUMNS, rows, TYPES, **kwargs)  # type: ignore[arg-type]
    return count, buf.getvalue()


def test_formats() -> None:
    assert FORMATS == ("table", "json", "csv")


def test_json_lines() -> None:
    count, text = render("json")
    assert count == 2
    assert text.splitlines() == [
        '{"id":1,"name":"alice","price":"1.10","tags":[1,2,null],'
        '"at":"2026-01-01T09:00:00+01:00","blob":"AA=="}',
        '{"id":2,"name":"bob, \\"the\\" builder","price":null,"tags":[],"at":null,"blob":null}',
    ]
    assert text.endswith("\n")


def test_csv() -> None:
    count, text = render("csv")
    assert count == 2
    assert list(csv.reader(io.StringIO(text))) == [
        COLUMNS,
        ["1", "alice", "1.10", "[1,2,null]", "2026-01-01T09:00:00+01:00", "AA=="],
        ["2", 'bob, "the" builder', "", "[]", "", ""],
    ]
    assert text.startswith("id,name,price,tags,at,blob\n")


def test_csv_renders_scalars_like_json() -> None:
    buf = io.StringIO()
    rows = [(True, 1.5, float("nan"), {"k": [1]}, "line\nbreak")]
    write_rows(buf, "csv", list("abcde"), rows)
    assert list(csv.reader(io.StringIO(buf.getvalue())))[1] == [
        "true",
        "1.5",
        "NaN",
        '{"k":[1]}',
        "line\nbreak",
    ]


def test_table() -> None:
    long_value = "x" * 100
    buf = io.StringIO()
    rows = [(1, None, long_value, "[bold]not markup[/bold]"), (22, "", "short", "a\nb")]
    count = write_rows(buf, "table", ["id", "note", "long", "raw"], rows)
    text = buf.getvalue()
    assert count == 2
    assert "NULL" in text
    assert "x" * 59 + "…" in text and "x" * 60 not in text
    assert "[bold]not markup[/bold]" in text
    assert "a\\nb" in text
    assert "\x1b[" not in text  # no colour codes when the output is not a terminal
    assert max(len(line) for line in text.splitlines()) <= 200
    assert len(text.splitlines()) == 4  # header, rule, two rows


def test_table_caps_rows_and_says_how_many_were_left_out() -> None:
    buf = io.StringIO()
    count = write_rows(buf, "table", ["n"], ((i,) for i in range(25)), table_limit=10)
    text = buf.getvalue()
    assert count == 10
    assert "15 more rows not shown" in text and "--format json" in text
    assert " 9" in text and " 10 " not in text


def test_table_with_no_rows() -> None:
    count, text = render("table", rows=[])
    assert count == 0
    assert "price" in text


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_iterables(fmt: str) -> None:
    assert render(fmt, rows=iter(()))[0] == 0


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_streams_rows_as_they_come(fmt: str) -> None:
    buf = io.StringIO()

    def rows() -> Iterator[tuple[object, ...]]:
        yield from ROWS
        yield from ROWS
        raise RuntimeError("connection lost")

    with pytest.raises(RuntimeError):
        write_rows(buf, fmt, COLUMNS, rows(), TYPES)
    lines = buf.getvalue().splitlines()
    header = 1 if fmt == "csv" else 0
    assert len(lines) == header + 4
    if fmt == "json":
        assert [json.loads(line)["id"] for line in lines] == [1, 2, 1, 2]


@pytest.mark.parametrize("fmt", FORMATS)
def test_counts_a_generator(fmt: str) -> None:
    rows = ((i, f"n{i}", Decimal(i), "{}", None, None) for i in range(1234))
    assert render(fmt, rows=rows)[0] == 1234


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render("xml")


def test_unknown_hint_fails_before_writing() -> None:
    buf = io.StringIO()
    with pytest.raises(ValueError, match="unknown type hint"):
        write_rows(buf, "csv", ["a"], [(1,)], {"a": "nope"})
    assert buf.getvalue() == ""


def test_row_of_the_wrong_width() -> None:
    with pytest.raises(ValueError, match="2 values for 1 columns"):
        write_rows(io.StringIO(), "json", ["a"], [(1, 2)])
