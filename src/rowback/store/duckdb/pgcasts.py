"""PostgreSQL's assignment casts where its text changes form (for ``retype``).

``ALTER COLUMN ... TYPE`` without ``USING`` applies the assignment cast, and for most
types the new text is the old value in the new type's output. These are the casts where
it is not: to ``character(n)`` (padded with spaces), from it (trailing spaces removed), to
``character varying(n)`` (trailing spaces cut to fit), ``inet`` to text (the mask is always
shown), ``inet`` to ``cidr`` (host bits cleared), ``cidr`` to ``inet`` (a full mask not
shown), ``money`` to numeric (the currency's symbol and separators go) and back, floats
to numeric (15 or 6 significant digits, PostgreSQL's ``DBL_DIG``/``FLT_DIG``), numeric
text to a scale DuckDB's DECIMAL cannot hold, and ``json`` to ``jsonb`` (keys sorted,
duplicates dropped, numbers and spacing normalized). Money is read and written in the C
locale's form (``-$1,234.50``), as a fresh cluster prints it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

import duckdb
import numpy as np

_CHAR = re.compile(r"(?:character|bpchar)(?:\((\d+)\))?")
_VARCHAR = re.compile(r"character varying(?:\((\d+)\))?")
_STRINGS = re.compile(r"text|name|(?:character varying|character|bpchar)(?:\(\d+\))?")
_NUMERIC = re.compile(r"numeric(?:\((\d+)(?:,(\d+))?\))?")
JSONB_FUNCTION = "rb_jsonb"
_EXACT = Context(prec=200_000, Emax=200_000, Emin=-200_000)  # numeric's digits, and more


def _base(pg_type: str) -> str:
    return pg_type.strip().lower()


def is_string(pg_type: str) -> bool:
    return _STRINGS.fullmatch(_base(pg_type)) is not None


def string_cast(old_type: str, new_type: str, text: str) -> str:
    """SQL for the text of a value (``text``: SQL for its text under ``old_type``) cast to
    the string type ``new_type``."""
    old, new = _base(old_type), _base(new_type)
    if _CHAR.fullmatch(old) and is_string(new):
        text = f"rtrim({text}, ' ')"  # character's trailing spaces are padding
    elif old == "inet" and new != "name":  # text(inet) shows the mask, inet's output not
        text = (
            f"CASE WHEN contains({text}, '/') THEN {text} "
            f"WHEN contains({text}, ':') THEN {text} || '/128' ELSE {text} || '/32' END"
        )
    if new == "jsonb" and old == "json":
        return f"{JSONB_FUNCTION}({text})"
    if new == "money":
        return f"rb_money({numeric_text(old_type, text)})"
    if new == "cidr" and old == "inet":
        return f"rb_cidr({text})"
    if new == "inet" and old == "cidr":
        full = f"CASE WHEN contains({text}, ':') THEN '/128' ELSE '/32' END"
        return (
            f"CASE WHEN suffix({text}, {full}) THEN left({text}, -length({full})) ELSE {text} END"
        )
    char = _CHAR.fullmatch(new)
    if char and char.group(1):
        return f"rpad({text}, {int(char.group(1))}, ' ')"
    varchar = _VARCHAR.fullmatch(new)
    if varchar and varchar.group(1):
        # longer values can only be trailing spaces (else the ALTER fails): cut to fit
        return f"left({text}, {int(varchar.group(1))})"
    return text


def numeric_text(old_type: str, text: str, new_type: str | None = None) -> str:
    """SQL for the numeric text a cast to numeric (``new_type``, when it is one held as
    text: its scale applied) reads from a value of ``old_type`` (``text``: its text)."""
    old = _base(old_type)
    if old == "money":
        # the C and English locales' form: "-$1,234.50"
        text = f"regexp_replace({text}, '[^0-9.-]', '', 'g')"
    elif old in ("double precision", "real"):
        text = f"rb_float_numeric({text}, {15 if old == 'double precision' else 6})"
    if new_type is None:
        return text
    m = _NUMERIC.fullmatch(_base(new_type))
    scale = int(m.group(2) or 0) if m and m.group(1) else -1
    return f"rb_numeric({text}, {scale})"


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Make the casts above callable on ``con``; each gives NULL where PostgreSQL's cast
    would have failed (the retype then counts the value as a gap)."""
    functions: list[tuple[str, Callable[..., str], list[str]]] = [
        (JSONB_FUNCTION, jsonb_text, ["VARCHAR"]),
        ("rb_float_numeric", float_numeric, ["VARCHAR", "INTEGER"]),
        ("rb_numeric", numeric_scaled, ["VARCHAR", "INTEGER"]),
        ("rb_money", money_text, ["VARCHAR"]),
        ("rb_cidr", cidr_text, ["VARCHAR"]),
    ]
    for name, fn, args in functions:
        try:
            con.create_function(
                name,
                fn,
                args,  # type: ignore[arg-type]
                "VARCHAR",
                exception_handling=duckdb.PythonExceptionHandling.RETURN_NULL,
            )
        except duckdb.NotImplementedException:
            pass  # registered before on this connection


def float_numeric(text: str, digits: int) -> str:
    """float8/float4 (``digits`` 15/6) to numeric: the value printed with ``%.*g``, read
    back as numeric, as PostgreSQL's ``float8_numeric`` does.

    >>> float_numeric("16777216", 6), float_numeric("0.30000000000000004", 15)
    ('16777200', '0.3')
    """
    value = float(np.float32(text)) if digits == 6 else float(text)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return _plain(Decimal(f"{value:.{digits}g}"))


def numeric_scaled(text: str, scale: int) -> str:
    """Numeric text at ``scale`` (-1: as it is), rounded half away from zero."""
    if text in ("NaN", "Infinity", "-Infinity"):
        return text
    d = Decimal(text)
    if scale >= 0:
        d = d.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP, context=_EXACT)
    return _plain(d)


def money_text(text: str) -> str:
    """Numeric text as money prints it in the C locale: ``-$1,234.50``."""
    d = Decimal(text).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP, context=_EXACT)
    return ("-" if d < 0 else "") + f"${abs(d):,.2f}"


def cidr_text(text: str) -> str:
    """inet to cidr: the network, host bits cleared, mask always shown."""
    net = ipaddress.ip_network(text, strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped:
        return f"::ffff:{net.network_address.ipv4_mapped}/{net.prefixlen}"  # as PostgreSQL
    return str(net)


def _plain(d: Decimal) -> str:
    s = format(d, "f")
    return s.lstrip("-") if d.is_zero() else s  # numeric has no negative zero


def jsonb_text(text: str) -> str:
    """PostgreSQL's output of ``text::json::jsonb``.

    >>> jsonb_text('{"b": [1.50, 1e2, -0], "aa": true, "b": {}}')
    '{"b": {}, "aa": true}'
    """
    value = json.loads(text, parse_float=Decimal, parse_int=Decimal, parse_constant=_refuse)
    return _out(value)


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _out(v: Any) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, Decimal):
        return _plain(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_out(x) for x in v) + "]"
    # objects: the last of duplicate keys wins (dict), keys by length, then bytes
    items = sorted(v.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode()))
    return "{" + ", ".join(f"{_string(k)}: {_out(x)}" for k, x in items) + "}"


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
_ESCAPES["\t"] = "\\t"
_NEEDS = re.compile(r'["\\\x00-\x1f]')
_SURROGATE = re.compile("[\ud800-\udfff]")


def _string(s: str) -> str:
    def one(m: re.Match[str]) -> str:
        c = m.group()
        return _ESCAPES.get(c) or f"\\u{ord(c):04x}"

    if _SURROGATE.search(s):
        raise ValueError("lone surrogate")  # jsonb refuses it, so the ALTER did
    return '"' + _NEEDS.sub(one, s) + '"'
