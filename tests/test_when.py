"""Tests for reading the WHEN argument of the time-travel commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rowback.errors import RowbackError
from rowback.when import (
    AtLsn,
    AtTime,
    BeforeTx,
    WhenError,
    format_lsn,
    parse_lsn,
    parse_when,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T10:00:00Z", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)),
        ("2026-11-25T10:00:00z", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)),
        ("2026-11-25 10:00:00+01:00", datetime(2026, 11, 25, 9, 0, tzinfo=UTC)),
        ("2026-11-25T10:00:00-05:30", datetime(2026, 11, 25, 15, 30, tzinfo=UTC)),
        ("2026-11-25T10:00:00.250Z", datetime(2026, 11, 25, 10, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-25T10:00:00.123456+00:00", datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)),
        ("  2026-11-25T10:00Z  ", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)),
    ],
)
def test_iso_times_with_a_zone_become_utc(text: str, expected: datetime) -> None:
    point = parse_when(text, now=NOW)
    assert point == AtTime(expected)
    assert isinstance(point, AtTime) and point.ts.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["2026-11-25T10:00:00", "2026-11-25 10:00", "2026-11-25"])
def test_iso_times_without_a_zone_are_refused(text: str) -> None:
    with pytest.raises(WhenError, match="time zone is required") as info:
        parse_when(text, now=NOW)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("text", ["now", "NOW", " Now "])
def test_now(text: str) -> None:
    assert parse_when(text, now=NOW) == AtTime(NOW)


def test_now_defaults_to_the_clock() -> None:
    before = datetime.now(UTC)
    point = parse_when("now")
    assert isinstance(point, AtTime) and before <= point.ts <= datetime.now(UTC)


def test_now_in_another_zone_is_returned_in_utc() -> None:
    paris = datetime(2026, 11, 25, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    point = parse_when("-1h", now=paris)
    assert isinstance(point, AtTime)
    assert point.ts == datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    assert point.ts.tzinfo is UTC


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_when("-5m", now=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("-30s", timedelta(seconds=30)),
        ("-5m", timedelta(minutes=5)),
        ("-90min", timedelta(minutes=90)),
        ("-2h", timedelta(hours=2)),
        ("-1d", timedelta(days=1)),
        ("-1w", timedelta(weeks=1)),
        ("-1h30m", timedelta(hours=1, minutes=30)),
        ("-1h 30m", timedelta(hours=1, minutes=30)),
        ("-1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("-0s", timedelta(0)),
        ("5m ago", timedelta(minutes=5)),
        ("1h30m ago", timedelta(hours=1, minutes=30)),
        ("5m  ago", timedelta(minutes=5)),
        ("- 5m", timedelta(minutes=5)),
        ("90 minutes ago", timedelta(minutes=90)),
        ("2 days ago", timedelta(days=2)),
        ("1 week ago", timedelta(weeks=1)),
        ("3 hrs ago", timedelta(hours=3)),
        ("10 secs ago", timedelta(seconds=10)),
        ("-5M", timedelta(minutes=5)),
    ],
)
def test_relative_times_count_back_from_now(text: str, back: timedelta) -> None:
    assert parse_when(text, now=NOW) == AtTime(NOW - back)


@pytest.mark.parametrize(
    "text",
    ["-5", "-5x", "-m", "-", "5m", "-5m ago", "ago", " ago", "-1.5h", "-5 months", "-1h30", "+5m"],
)
def test_malformed_relative_times_are_refused(text: str) -> None:
    with pytest.raises(WhenError):
        parse_when(text, now=NOW)


def test_relative_time_too_far_back() -> None:
    with pytest.raises(WhenError, match="too far back"):
        parse_when("-999999999999999w", now=NOW)
    with pytest.raises(WhenError, match="too far back"):
        parse_when("-1000000w", now=NOW)


@pytest.mark.parametrize(
    ("text", "lsn"),
    [
        ("lsn:0/16B3748", 0x16B3748),
        ("LSN:0/16b3748", 0x16B3748),
        ("lsn: 1/0 ", 1 << 32),
        ("lsn:FFFFFFFF/FFFFFFFF", (1 << 64) - 1),
        ("lsn:0/0", 0),
    ],
)
def test_lsn_points(text: str, lsn: int) -> None:
    assert parse_when(text) == AtLsn(lsn)


@pytest.mark.parametrize(
    "text", ["lsn:", "lsn:16B3748", "lsn:0/", "lsn:0/G", "lsn:100000000/0", "lsn:0/16B3748/1"]
)
def test_bad_lsns_are_refused(text: str) -> None:
    with pytest.raises(WhenError, match="LSN"):
        parse_when(text)


@pytest.mark.parametrize(("text", "txid"), [("tx:12345", 12345), ("TX: 7 ", 7), ("tx:1", 1)])
def test_transaction_points(text: str, txid: int) -> None:
    assert parse_when(text) == BeforeTx(txid)


@pytest.mark.parametrize("text", ["tx:", "tx:0", "tx:-1", "tx:abc", "tx:1.5", "tx:0x10"])
def test_bad_transaction_ids_are_refused(text: str) -> None:
    with pytest.raises(WhenError, match="transaction id"):
        parse_when(text)


@pytest.mark.parametrize(
    "text", ["", "   ", "yesterday", "12345", "0/16B3748", "2026-13-01T00:00Z"]
)
def test_junk_is_refused_with_one_line_naming_the_value_and_the_forms(text: str) -> None:
    with pytest.raises(WhenError) as info:
        parse_when(text, now=NOW)
    message = str(info.value)
    assert "\n" not in message
    assert repr(text) in message
    for form in ("Z", "now", "-5m", "ago", "lsn:0/16B3748", "tx:12345"):
        assert form in message


def test_when_error_is_a_rowback_error() -> None:
    assert issubclass(WhenError, RowbackError)


def test_points_are_frozen_and_hashable() -> None:
    point = AtLsn(5)
    with pytest.raises(AttributeError):
        point.lsn = 6  # type: ignore[misc]
    assert len({AtLsn(5), AtLsn(5), BeforeTx(5)}) == 2


@pytest.mark.parametrize(
    ("text", "lsn"),
    [("0/16B3748", 23803720), ("0/0", 0), ("1/0", 1 << 32), ("a/b", 0xA_0000000B), (" 0/1 ", 1)],
)
def test_parse_lsn(text: str, lsn: int) -> None:
    assert parse_lsn(text) == lsn


@pytest.mark.parametrize(
    "text", ["", "0", "/0", "0/", "0/1/2", "x/1", "123456789/0", "-1/0", "0x1/0"]
)
def test_parse_lsn_refuses_junk(text: str) -> None:
    with pytest.raises(ValueError):
        parse_lsn(text)


@pytest.mark.parametrize(
    ("lsn", "text"),
    [(0, "0/0"), (23803720, "0/16B3748"), (1 << 32, "1/0"), ((1 << 64) - 1, "FFFFFFFF/FFFFFFFF")],
)
def test_format_lsn_matches_postgresql(lsn: int, text: str) -> None:
    assert format_lsn(lsn) == text


@pytest.mark.parametrize("lsn", [-1, 1 << 64])
def test_format_lsn_refuses_out_of_range(lsn: int) -> None:
    with pytest.raises(ValueError):
        format_lsn(lsn)


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_lsn_round_trip(n: int) -> None:
    assert parse_lsn(format_lsn(n)) == n
    assert parse_when(f"lsn:{format_lsn(n)}") == AtLsn(n)
