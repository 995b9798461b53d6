"""Parse the WHEN argument of the time-travel commands into a point in history.

A point is a wall-clock time, a WAL position or "just before transaction N". Times must
carry a time zone: an implicit zone silently shifts an answer by hours, so we refuse to
guess. Relative times (``-5m``, ``1h30m ago``) count back from now.

>>> parse_when("2026-11-25T10:00:00+01:00")
AtTime(ts=datetime.datetime(2026, 11, 25, 9, 0, tzinfo=datetime.timezone.utc))
>>> parse_when("lsn:0/16B3748")
AtLsn(lsn=23803720)
>>> parse_when("tx:12345")
BeforeTx(txid=12345, source=None)
>>> parse_when("tx:orders-db:12345")
BeforeTx(txid=12345, source='orders-db')
>>> parse_when("-1h30m", now=datetime(2026, 11, 25, 10, 0, tzinfo=UTC))
AtTime(ts=datetime.datetime(2026, 11, 25, 8, 30, tzinfo=datetime.timezone.utc))
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rowback.errors import RowbackError

__all__ = [
    "AtLsn",
    "AtTime",
    "BeforeTx",
    "Point",
    "WhenError",
    "format_lsn",
    "parse_lsn",
    "parse_when",
]

ACCEPTED_FORMS = (
    "an ISO time with a zone (2026-11-25T10:00:00Z, 2026-11-25 10:00:00+01:00), 'now', "
    "a relative time (-5m, -1h30m, 90min ago; units s, m/min, h, d, w), "
    "lsn:0/16B3748 or tx:12345"
)

_UNIT_SECONDS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400),
}
_UNITS = "|".join(sorted(_UNIT_SECONDS, key=len, reverse=True))
_PART = re.compile(rf"\s*(\d+)\s*({_UNITS})(?![a-z])")
_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")
_TXID = re.compile(r"\d+")


class WhenError(RowbackError):
    """The WHEN argument could not be read as a point in history."""


@dataclass(frozen=True)
class AtTime:
    """The state as of a wall-clock time (timezone-aware, in UTC)."""

    ts: datetime


@dataclass(frozen=True)
class AtLsn:
    """The state after every transaction committed at or before this WAL position."""

    lsn: int


@dataclass(frozen=True)
class BeforeTx:
    """The state just before the transaction with this id committed; ``source`` says
    whose id it is (``tx:SOURCE:TXID``) when several sources share ids."""

    txid: int
    source: str | None = None


Point = AtTime | AtLsn | BeforeTx


def point_text(point: Point) -> str:
    """``point`` as WHEN text that reads back to it exactly: a relative time resolved on
    this clock, so a service asked for it answers for the same instant.

    >>> point_text(AtTime(datetime(2026, 11, 25, 9, 0, 0, 1, tzinfo=UTC)))
    '2026-11-25T09:00:00.000001+00:00'
    >>> parse_when(point_text(AtLsn(23803720)))
    AtLsn(lsn=23803720)
    """
    if isinstance(point, AtTime):
        return point.ts.isoformat()
    if isinstance(point, AtLsn):
        return f"lsn:{format_lsn(point.lsn)}"
    return f"tx:{point.source}:{point.txid}" if point.source else f"tx:{point.txid}"


def parse_when(text: str, now: datetime | None = None) -> Point:
    """Read a WHEN argument; ``now`` (aware, defaults to the clock) anchors relative times.

    Raises WhenError with a one-line message naming the value and the accepted forms.

    >>> parse_when("5m ago", now=datetime(2026, 11, 25, 10, 0, tzinfo=UTC)).ts.isoformat()
    '2026-11-25T09:55:00+00:00'
    """
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    value = text.strip()
    lowered = value.lower()
    if lowered.startswith("lsn:"):
        return AtLsn(_lsn_of(text, value[4:]))
    if lowered.startswith("tx:"):
        source, _, txid = value[3:].rpartition(":")
        return BeforeTx(_txid_of(text, txid), source or None)
    if lowered == "now":
        return AtTime(_now(now))
    if lowered.startswith("-") or lowered.endswith(" ago"):
        return AtTime(_shift(text, _now(now), _relative(text, lowered)))
    return AtTime(_iso_time(text, value))


def parse_lsn(text: str) -> int:
    """Read a PostgreSQL LSN (``hi/lo`` in hex, up to 8 digits each) as an integer.

    >>> parse_lsn("0/16B3748")
    23803720
    >>> parse_lsn("1/0")
    4294967296
    """
    match = _LSN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an LSN (expected hex 'hi/lo' such as 0/16B3748): {text!r}")
    return int(match[1], 16) << 32 | int(match[2], 16)


def format_lsn(lsn: int) -> str:
    """Write an LSN as PostgreSQL does: uppercase hex, ``hi/lo``, no leading zeros.

    >>> format_lsn(23803720)
    '0/16B3748'
    """
    if not 0 <= lsn < 1 << 64:
        raise ValueError(f"an LSN is an unsigned 64-bit integer, got {lsn}")
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def _relative(text: str, lowered: str) -> timedelta:
    """Read ``-1h30m`` or ``1h30m ago`` as a duration back in time.

    A day is 24 hours and a week 7 days; ``m`` means minutes (there are no months).

    >>> _relative("-1h30m", "-1h30m")
    datetime.timedelta(seconds=5400)
    >>> _relative("2 days ago", "2 days ago")
    datetime.timedelta(days=2)
    """
    body = (lowered[1:] if lowered.startswith("-") else lowered[: -len(" ago")]).strip()
    delta = _sum_parts(body)
    if delta is None:
        raise _error(text, "not a relative time such as -5m, -1h30m or 90min ago")
    return delta


def _sum_parts(body: str) -> timedelta | None:
    """Add up ``1h30m``-style parts; None unless the whole body is such parts."""
    pos, seconds = 0, 0
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None:
            return None
        seconds += int(match[1]) * _UNIT_SECONDS[match[2]]
        pos = match.end()
    if pos == 0:
        return None
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        return timedelta.max


def _now(now: datetime | None) -> datetime:
    """The anchor for relative times, in UTC."""
    return (now or datetime.now(UTC)).astimezone(UTC)


def _shift(text: str, now: datetime, delta: timedelta) -> datetime:
    """``now - delta``, as a WhenError when it falls before year 1."""
    try:
        return now - delta
    except OverflowError:
        raise _error(text, "reaches too far back") from None


def _iso_time(text: str, value: str) -> datetime:
    """Read an ISO-8601 time that names its zone, converted to UTC."""
    try:
        ts = datetime.fromisoformat(value.upper())
    except ValueError:
        raise _error(text, "not a recognised time") from None
    if ts.tzinfo is None:
        raise _error(text, "a time zone is required, e.g. append Z for UTC or +01:00")
    return ts.astimezone(UTC)


def _lsn_of(text: str, body: str) -> int:
    """The LSN after ``lsn:``."""
    try:
        return parse_lsn(body)
    except ValueError:
        raise _error(text, "the LSN must be hex 'hi/lo' such as 0/16B3748") from None


def _txid_of(text: str, body: str) -> int:
    """The positive transaction id after ``tx:``."""
    body = body.strip()
    if _TXID.fullmatch(body) is None or int(body) == 0:
        raise _error(text, "the transaction id must be a positive integer")
    return int(body)


def _error(text: str, reason: str) -> WhenError:
    """A one-line WhenError naming the bad value, the reason and the accepted forms."""
    return WhenError(f"cannot read WHEN {text!r}: {reason}; use {ACCEPTED_FORMS}")
