"""Debezium JSON values to PostgreSQL text: scalars, numerics, arrays and structures.

Every converter takes one non-null JSON value and returns the text PostgreSQL would print
for it, or raises ``BadValue``. The store casts that text to typed columns in bulk, so a
value that would not cast must be rejected here, one line at a time, instead of failing a
whole write.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from typing import Any

import orjson

Converter = Callable[[Any], str]

INT_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
_MAX_DECIMAL_CHARS = 100_000


class BadValue(ValueError):
    """A JSON value that does not fit its column; the message says what was expected."""


def kind(v: object) -> str:
    """The JSON kind of a parsed value, as error messages name it."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def expected(pg_type: str, v: object) -> BadValue:
    """The error for a value of the wrong JSON kind."""
    return BadValue(f"expected {pg_type}, got {kind(v)}")


# -- scalars ---------------------------------------------------------------------------


def text(v: Any) -> str:
    if v.__class__ is not str:
        raise expected("text", v)
    return v


def boolean(v: Any) -> str:
    if v is True:
        return "t"
    if v is False:
        return "f"
    raise expected("boolean", v)


def integer(pg_type: str) -> Converter:
    """Integers of ``pg_type``'s width; out-of-range values would fail the store's cast."""
    lo, hi = INT_RANGES[pg_type]

    def conv(v: Any) -> str:
        if v.__class__ is not int:
            raise expected(pg_type, v)
        if not lo <= v <= hi:
            raise BadValue(f"{v} is out of range for {pg_type}")
        return str(v)

    return conv


_SPECIAL_FLOATS = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity"}


def float_text(v: float, fixed_below: int = 15) -> str:
    """PostgreSQL's shortest exact text of a float: ``1.5``, ``1e+16``, ``NaN``.

    PostgreSQL prints fixed-point while the decimal exponent is below 15 (6 for ``real``)
    and drops a trailing ``.0``; Python's ``repr`` switches at 16 and keeps ``.0``.

    >>> float_text(1e15), float_text(1234567.0, 6), float_text(-0.0), float_text(0.1)
    ('1e+15', '1.234567e+06', '-0', '0.1')
    """
    r = repr(v)
    if "e" in r:
        return r
    if r[-1] in "fn":  # inf, -inf, nan
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    neg = r[0] == "-"
    whole, _, frac = (r[1:] if neg else r).partition(".")
    if whole == "0" or len(whole) <= fixed_below:
        return r[:-2] if frac == "0" else r
    digits = (whole + frac).rstrip("0")
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{'-' if neg else ''}{mantissa}e+{len(whole) - 1:02d}"


def floating(pg_type: str) -> Converter:
    """Floats (JSON numbers, or Jackson's quoted ``NaN``/``Infinity``) of ``pg_type``."""
    fixed_below = 6 if pg_type == "real" else 15
    limit = 3.4028235677973366e38 if pg_type == "real" else float("inf")

    def conv(v: Any) -> str:
        c = v.__class__
        if c is int:
            v, c = float(v), float
        if c is float:
            if -limit <= v <= limit or v != v:
                return float_text(v, fixed_below)
            if v in (float("inf"), float("-inf")):
                return "Infinity" if v > 0 else "-Infinity"
            raise BadValue(f"{v!r} is out of range for {pg_type}")
        if c is str and v in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[v]
        raise expected(pg_type, v)

    return conv


INT64 = integer("bigint")


def json_any(v: Any) -> str:
    """Any JSON value as compact JSON text (``jsonb`` columns inferred from objects)."""
    return orjson.dumps(v).decode()


def json_text(v: Any) -> str:
    """``io.debezium.data.Json``: already PostgreSQL's JSON text; checked, kept verbatim."""
    if v.__class__ is not str:
        raise expected("jsonb", v)
    try:
        orjson.loads(v)
    except orjson.JSONDecodeError:
        raise BadValue("expected jsonb, got a string that is not JSON") from None
    return v


def _b64(v: Any, pg_type: str) -> bytes:
    if v.__class__ is not str:
        raise expected(pg_type, v)
    try:
        return binascii.a2b_base64(v, strict_mode=True)
    except (binascii.Error, ValueError):
        raise BadValue(f"expected {pg_type} as base64, got a string that is not base64") from None


def bytea(v: Any) -> str:
    return "\\x" + _b64(v, "bytea").hex()


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def uuid(v: Any) -> str:
    if v.__class__ is not str or _UUID.fullmatch(v) is None:
        raise BadValue(f"expected uuid, got {kind(v) if v.__class__ is not str else repr(v)}")
    return v.lower()


# -- numeric ---------------------------------------------------------------------------


def numeric_text(unscaled: int, scale: int) -> str:
    """Exact decimal text of ``unscaled * 10**-scale``, with ``scale`` fraction digits.

    >>> numeric_text(12345, 2), numeric_text(-5, 2), numeric_text(12, -3)
    ('123.45', '-0.05', '12000')
    """
    s = str(abs(unscaled))
    if scale > 0:
        if len(s) <= scale:
            s = "0" * (scale - len(s) + 1) + s
        s = s[:-scale] + "." + s[-scale:]
    elif scale < 0 and unscaled:
        s += "0" * -scale
    return "-" + s if unscaled < 0 else s


def _unscaled(v: Any) -> int:
    if v.__class__ is str and len(v) > _MAX_DECIMAL_CHARS:
        raise BadValue(f"numeric value of {len(v)} base64 characters is too long")
    return int.from_bytes(_b64(v, "numeric"), "big", signed=True)


class Decimal:
    """``org.apache.kafka.connect.data.Decimal``: base64 two's complement, fixed scale.
    A class, not a closure, so the bulk decoder can read ``scale`` and ``limit``."""

    def __init__(self, scale: int, precision: int | None) -> None:
        self.scale = scale
        self.precision = precision
        self.limit = precision if precision is not None and precision <= 38 else None

    def __call__(self, v: Any) -> str:
        u = _unscaled(v)
        out = numeric_text(u, self.scale)
        if self.limit is not None and len(str(abs(u))) > self.limit:
            raise BadValue(f"{out} does not fit numeric({self.precision},{self.scale})")
        return out


def decimal(scale: int, precision: int | None) -> Converter:
    return Decimal(scale, precision)


def variable_decimal(v: Any) -> str:
    """``io.debezium.data.VariableScaleDecimal``: ``{"scale": int, "value": base64}``."""
    if v.__class__ is not dict:
        raise expected("numeric", v)
    scale = v.get("scale")
    if scale.__class__ is not int or not -1000 <= scale <= 1000:
        raise BadValue("expected numeric with an integer scale between -1000 and 1000")
    return numeric_text(_unscaled(v.get("value")), scale)


# -- arrays and structures -------------------------------------------------------------

_NEEDS_QUOTES = re.compile(r'[{},"\\\s]')


def _array_element(s: str) -> str:
    """Quote an array element the way PostgreSQL's ``array_out`` does."""
    if s and _NEEDS_QUOTES.search(s) is None and s.upper() != "NULL":
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def array(element: Converter, nested: bool) -> Converter:
    """A JSON list as PostgreSQL array text (``{1,2,NULL}``); ``nested`` when elements are
    arrays themselves (their text is already braced and must not be quoted)."""

    def conv(v: Any) -> str:
        if v.__class__ is not list:
            raise BadValue(f"expected an array, got {kind(v)}")
        parts = []
        for e in v:
            if e is None:
                parts.append("NULL")
            else:
                s = element(e)
                parts.append(s if nested else _array_element(s))
        return "{" + ",".join(parts) + "}"

    return conv


def structure(v: Any) -> str:
    """A Connect struct or map, kept as compact JSON."""
    if v.__class__ not in (dict, list):
        raise expected("jsonb", v)
    return orjson.dumps(v).decode()
