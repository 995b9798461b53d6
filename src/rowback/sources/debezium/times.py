"""Debezium's date and time encodings to PostgreSQL text.

Days, milli-, micro- and nanoseconds since the epoch or since midnight, and ISO-8601
strings with an offset, become ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (``+00`` for
``timestamp with time zone``), with PostgreSQL's `` BC`` after dates before year 1.
Dates are limited to PostgreSQL's range (from 4714-11-24 BC) and to what the store holds.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from rowback.sources.debezium.convert import BadValue, Converter, expected, kind

_MAX_YEAR = 294246  # DuckDB's timestamps end in 294247; PostgreSQL's a little later
_MIN_DAYS = -2440588  # 4714-11-24 BC, PostgreSQL's first date (Julian day 0)
_EPOCH = datetime(1970, 1, 1)
_EPOCH_DATE = _EPOCH.date()
_INF_AT = 9223372036825200000  # PostgreSQL JDBC's "infinity" timestamp, near int64 max


def _civil(days: int) -> tuple[int, int, int]:
    """Year, month, day of a day count from 1970-01-01 (proleptic Gregorian)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _date(days: int) -> tuple[str, str]:
    """``YYYY-MM-DD`` of a day count, and the era suffix PostgreSQL prints last."""
    y, m, d = _civil(days)
    if days < _MIN_DAYS or y > _MAX_YEAR:
        shown = f"{y:04d}-{m:02d}-{d:02d}" if y > 0 else f"{1 - y:04d}-{m:02d}-{d:02d} BC"
        raise BadValue(f"{shown} is outside 4714-11-24 BC..{_MAX_YEAR}-12-31")
    if y < 1:  # astronomical year 0 is 1 BC
        return f"{1 - y:04d}-{m:02d}-{d:02d}", " BC"
    return f"{y:04d}-{m:02d}-{d:02d}", ""


def _clock(micros: int) -> str:
    secs, frac = divmod(micros, 1_000_000)
    hh, rest = divmod(secs, 3600)
    out = f"{hh:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return out + f".{frac:06d}".rstrip("0") if frac else out


def _int_value(v: Any, pg_type: str) -> int:
    if v.__class__ is not int:
        raise expected(pg_type, v)
    return v


def date(v: Any) -> str:
    """Days since the epoch (``io.debezium.time.Date``)."""
    days = _int_value(v, "date")
    try:
        return (_EPOCH_DATE + timedelta(days=days)).isoformat()  # fast, for years 1..9999
    except OverflowError:
        return "".join(_date(days))


def timestamp(per_second: int) -> Converter:
    """Epoch counts (ms, µs or ns per ``per_second``) as ``YYYY-MM-DD HH:MM:SS[.ffffff]``."""

    def conv(v: Any) -> str:
        n = _int_value(v, "timestamp without time zone")
        if n >= _INF_AT:
            return "infinity"
        if n <= -_INF_AT:
            return "-infinity"
        micros = n * 1_000_000 // per_second
        try:
            text = (_EPOCH + timedelta(microseconds=micros)).isoformat(" ")
        except OverflowError:  # years past 9999, which datetime cannot hold
            days, rest = divmod(micros, 86_400_000_000)
            day, era = _date(days)
            return f"{day} {_clock(rest)}{era}"
        return text.rstrip("0") if len(text) > 19 else text

    return conv


def time_of_day(per_second: int) -> Converter:
    """Time since midnight in ms, µs or ns (``Time``, ``MicroTime``, ``NanoTime``)."""

    def conv(v: Any) -> str:
        micros = _int_value(v, "time without time zone") * 1_000_000 // per_second
        if not 0 <= micros <= 86_400_000_000:
            raise BadValue(f"time of {v} is outside 00:00:00..24:00:00")
        return _clock(micros)

    return conv


# ASCII digits only: Python's \d also matches other scripts' digits, which the fast path
# would copy into the text and the store could not cast
_ZONED = re.compile(
    r"(\d{4,6})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d(?::?\d\d)?)",
    re.ASCII,
)
_ZONED_TIME = re.compile(r"(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d(?::?\d\d)?)", re.ASCII)


_ZULU = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):([0-5]\d):(\d\d)(\.\d{1,6})?Z", re.ASCII)
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _month_days(year: int, month: int) -> int:
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return _DAYS[month - 1] + leap


def _offset(z: str) -> timedelta:
    if z == "Z":
        return timedelta(0)
    minutes = int(z[1:3]) * 60 + (int(z[-2:]) if len(z) > 3 else 0)
    return timedelta(minutes=-minutes if z[0] == "-" else minutes)


def zoned_timestamp(v: Any) -> str:
    """ISO-8601 with an offset (``io.debezium.time.ZonedTimestamp``), printed in UTC."""
    pg_type = "timestamp with time zone"
    if v.__class__ is not str:
        raise expected(pg_type, v)
    if v in ("infinity", "-infinity"):
        return v
    m = _ZULU.fullmatch(v)
    if m is not None:  # the common case, UTC: checked and reformatted without datetime
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
        if y and 1 <= mo <= 12 and 1 <= d <= _month_days(y, mo) and m[4] < "24" and m[6] < "60":
            frac = (m[7] or "").rstrip("0")
            return f"{v[:10]} {v[11:19]}{frac if len(frac) > 1 else ''}+00"
    m = _ZONED.fullmatch(v)
    if m is None:
        raise BadValue(f"expected {pg_type}, got {v[:40]!r}")
    micros = int((m[7] or "")[:6].ljust(6, "0"))
    try:
        local = datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]))
        utc = local - _offset(m[8])
    except (ValueError, OverflowError):
        raise BadValue(f"expected {pg_type}, got {v[:40]!r}") from None
    clock = _clock((utc.hour * 3600 + utc.minute * 60 + utc.second) * 1_000_000 + micros)
    return f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} {clock}+00"


def zoned_time(v: Any) -> str:
    """``io.debezium.time.ZonedTime`` (``10:15:30.5Z``) as ``time with time zone`` text."""
    if v.__class__ is not str or (m := _ZONED_TIME.fullmatch(v)) is None:
        shown = repr(v[:40]) if v.__class__ is str else kind(v)
        raise BadValue(f"expected time with time zone, got {shown}")
    hh, mi, ss = int(m[1]), int(m[2]), int(m[3])
    if hh > 24 or mi > 59 or ss > 59:
        raise BadValue(f"expected time with time zone, got {v[:40]!r}")
    frac = (m[4] or "")[:6].rstrip("0")
    zone = "+00" if m[5] in ("Z", "+00", "+0000", "+00:00") else m[5]
    return f"{m[1]}:{m[2]}:{m[3]}{'.' + frac if frac else ''}{zone}"
