"""PostgreSQL's assignment casts where its text changes form (for ``retype``).

``ALTER COLUMN ... TYPE`` without ``USING`` applies the assignment cast, and for most
types the new text is the old value in the new type's output. These are the casts where
it is not: to ``character(n)`` (padded with spaces), from it (trailing spaces removed), to
``character varying(n)`` (trailing spaces cut to fit), ``inet`` to text (the mask is always
shown), ``money`` to numeric (the currency's symbol and separators go), and ``json`` to
``jsonb`` (keys sorted, duplicates dropped, numbers and spacing normalized).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import duckdb

_CHAR = re.compile(r"(?:character|bpchar)(?:\((\d+)\))?")
_VARCHAR = re.compile(r"character varying(?:\((\d+)\))?")
_STRINGS = re.compile(r"text|name|(?:character varying|character|bpchar)(?:\(\d+\))?")
JSONB_FUNCTION = "rb_jsonb"


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
    elif old == "inet":
        text = (
            f"CASE WHEN contains({text}, '/') THEN {text} "
            f"WHEN contains({text}, ':') THEN {text} || '/128' ELSE {text} || '/32' END"
        )
    if new == "jsonb" and old == "json":
        return f"{JSONB_FUNCTION}({text})"
    char = _CHAR.fullmatch(new)
    if char and char.group(1):
        return f"rpad({text}, {int(char.group(1))}, ' ')"
    varchar = _VARCHAR.fullmatch(new)
    if varchar and varchar.group(1):
        # longer values can only be trailing spaces (else the ALTER fails): cut to fit
        return f"left({text}, {int(varchar.group(1))})"
    return text


def numeric_text(old_type: str, text: str) -> str:
    """SQL for the text a numeric cast reads from a value of ``old_type``."""
    if _base(old_type) == "money":
        # the C and English locales' form: "-$1,234.50"
        return f"regexp_replace({text}, '[^0-9.-]', '', 'g')"
    return text


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Make ``rb_jsonb`` callable on ``con`` (NULL where the text is not JSON jsonb takes)."""
    try:
        con.create_function(
            JSONB_FUNCTION,
            jsonb_text,
            ["VARCHAR"],
            "VARCHAR",
            exception_handling=duckdb.PythonExceptionHandling.RETURN_NULL,
        )
    except duckdb.NotImplementedException:
        pass  # registered before on this connection


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
        s = format(v, "f")
        return s.lstrip("-") if v.is_zero() else s  # numeric has no negative zero
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
