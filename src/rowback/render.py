"""Render query results as a table, JSON Lines or CSV.

Values become JSON-ready objects by one set of rules, shared by every format:

- ints and floats stay numbers; NaN and infinities become "NaN", "Infinity", "-Infinity";
  ints beyond the 64-bit range become exact strings (JSON readers would round them);
- Decimal and ``numeric`` values become exact strings, never floats;
- datetime, date and time become ISO-8601 (aware datetimes keep their offset); those
  Python cannot hold (infinity, BC, years past 9999) come from the store as PostgreSQL's
  text (``'infinity'``, ``'0044-03-15 BC'``) and stay strings, as do numeric ``'NaN'``;
- timedelta becomes an ISO-8601 duration written the way PostgreSQL's ``iso_8601``
  interval style does (``P1DT2H``, ``PT-1H-30M``, ``PT0S``): readable, exact and
  accepted back by PostgreSQL;
- bytes become standard padded base64; UUIDs become strings; dicts and lists recurse.

A column may carry a type hint (``json``, ``pgarray[:elem]``, ``numeric``, ``bytea``,
``row``, ``changed``); a ``row`` value that is a store's ``Image`` carries a hint per
column, so the store hands over values and only the edge renders them. A value that does not
parse under its hint is shown as it came, so one bad value never aborts a long export.

>>> to_json_value(Decimal("1.10"))
'1.10'
>>> to_json_value('{1,NULL,"a b"}', "pgarray")
['1', None, 'a b']
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import islice
from types import MappingProxyType
from typing import TextIO
from uuid import UUID

import orjson
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rowback.store.base import Image

__all__ = ["FORMATS", "iso_duration", "parse_pg_array", "to_json_value", "write_rows"]

FORMATS = ("table", "json", "csv")

TABLE_ROW_LIMIT = 10_000
"""Table output buffers rows to size its columns, so it shows at most this many."""

CELL_WIDTH = 60
"""Table cells longer than this are cut and end in an ellipsis."""

NON_TTY_WIDTH = 200
"""The console width used when the output is not a terminal."""

_NO_TYPES: Mapping[str, str] = MappingProxyType({})
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1  # what orjson can write as a number
_LONG_DIGITS = re.compile(r"\d{19,}")  # orjson would read such a number as a float
_PG_SPACE = " \t\n\r\v\f"  # the whitespace PostgreSQL's array_in skips
_DIMS = re.compile(r"\s*(?:\[\s*[+-]?\d+\s*(?::\s*[+-]?\d+\s*)?\]\s*)+=")

Converter = Callable[[object], object]


def to_json_value(value: object, type_hint: str | None = None) -> object:
    """Turn a value into a JSON-ready object, reading it as ``type_hint`` when given.

    >>> to_json_value(b"hi")
    'aGk='
    >>> to_json_value(float("nan"))
    'NaN'
    >>> to_json_value('{"a": [1, 2]}', "json")
    {'a': [1, 2]}
    >>> to_json_value("{{1,2},{3,4}}", "pgarray:int")
    [[1, 2], [3, 4]]
    """
    return _converter(type_hint)(value)


def parse_pg_array(text: str, delimiter: str = ",") -> list[object]:
    """Read a PostgreSQL array literal into lists of strings and None.

    Follows ``array_in``: double quotes and backslash escapes, unquoted ``NULL`` (any case)
    is None while ``"NULL"`` is the string, whitespace around unquoted elements is dropped,
    nested braces give nested lists and ``[1:2]=`` dimension decorations are skipped.

    >>> parse_pg_array('{1,NULL,"NULL","a \\\\"b\\\\"",""}')
    ['1', None, 'NULL', 'a "b"', '']
    >>> parse_pg_array("[0:1]={{a,b},{c,d}}")
    [['a', 'b'], ['c', 'd']]
    >>> parse_pg_array("{}")
    []
    """
    match = _DIMS.match(text)
    pos = _skip_space(text, match.end() if match else 0)
    if not text.startswith("{", pos):
        raise ValueError(f"a PostgreSQL array starts with '{{': {text!r}")
    items, pos = _parse_level(text, pos, delimiter)
    if _skip_space(text, pos) != len(text):
        raise ValueError(f"junk after the closing brace of a PostgreSQL array: {text!r}")
    return items


def write_rows(
    out: TextIO,
    fmt: str,
    columns: list[str],
    rows: Iterable[Sequence[object]],
    types: Mapping[str, str] = _NO_TYPES,
    *,
    table_limit: int = TABLE_ROW_LIMIT,
    width: int | None = None,
    whole: Sequence[str] = (),
) -> int:
    """Write ``rows`` to ``out`` as ``fmt`` (one of FORMATS); return how many were written.

        ``json`` writes JSON Lines and ``csv`` a header then one line per row (NULL is an empty
        field), both streaming row by row. ``table`` buffers up to ``table_limit`` rows, then
        counts the rest and says how many were left out; the count returned is of rows shown.
    Its cells are cut to fit, except in the ``whole`` columns, which wrap instead.

        >>> import io
        >>> buf = io.StringIO()
        >>> write_rows(buf, "json", ["id", "price"], [(1, Decimal("9.90"))])
        1
        >>> buf.getvalue()
        '{"id":1,"price":"9.90"}\\n'
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt != "table":
        pieces = 0
        for text in iter_text(fmt, columns, rows, types):
            out.write(text)
            pieces += 1
        return pieces - 1 if fmt == "csv" else pieces  # a CSV's first line is its header
    converters = [_converter(types.get(name)) for name in columns]
    numeric = [types.get(name) == "numeric" for name in columns]
    return _write_table(out, columns, converters, numeric, rows, table_limit, set(whole), width)


def iter_text(
    fmt: str,
    columns: list[str],
    rows: Iterable[Sequence[object]],
    types: Mapping[str, str] = _NO_TYPES,
    *,
    width: int | None = None,
    whole: Sequence[str] = (),
) -> Iterator[str]:
    """``rows`` as ``fmt`` in pieces, lazily: what ``write_rows`` writes, for a server to
    stream. Besides FORMATS, ``document`` is one JSON object with columns and rows."""
    converters = [_converter(types.get(name)) for name in columns]
    if fmt == "json":
        return _json_lines(columns, converters, rows)
    if fmt == "document":
        return _json_document(columns, converters, rows)
    if fmt == "csv":
        return _csv_lines(columns, converters, rows)
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    buf = io.StringIO()
    numeric = [types.get(name) == "numeric" for name in columns]
    _write_table(buf, columns, converters, numeric, rows, TABLE_ROW_LIMIT, set(whole), width)
    return iter([buf.getvalue()])


# --- value conversion ---------------------------------------------------------------------


def _converter(hint: str | None) -> Converter:
    """The function converting one value under ``hint``; ValueError if the hint is unknown."""
    if hint is None:
        return _plain
    kind, _, element = hint.partition(":")
    if kind == "pgarray":
        return _guarded(_pgarray_reader(element or "text"))
    reader = _HINT_READERS.get(hint)
    if reader is None:
        known = ", ".join([*_HINT_READERS, "pgarray[:elem]"])
        raise ValueError(f"unknown type hint {hint!r}; known hints: {known}")
    return _guarded(reader)


def _guarded(reader: Converter) -> Converter:
    """Wrap a hint reader: None stays None, and a value it cannot read is shown plainly."""

    def convert(value: object) -> object:
        if value is None:
            return None
        try:
            return reader(value)
        except (ValueError, TypeError):
            return _plain(value)

    return convert


def _plain(value: object) -> object:
    """Convert a value by its Python type alone (the rules in the module docstring)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if _INT_MIN <= value <= _INT_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else _float_name(value)
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return iso_duration(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {_key_text(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def _float_name(value: float) -> str:
    """The JSON-safe name of a non-finite float, spelled as PostgreSQL spells it."""
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _decimal_text(value: Decimal) -> str:
    """A Decimal as exact positional text (``1E+2`` becomes ``100``, scale is kept)."""
    return format(value, "f") if value.is_finite() else str(value)


def _key_text(key: object) -> str:
    """A dict key as a string, since JSON object keys must be strings."""
    return key if isinstance(key, str) else _scalar_text(_plain(key))


def iso_duration(value: timedelta) -> str:
    """Write a timedelta as an ISO-8601 duration with PostgreSQL's per-field signs.

    >>> iso_duration(timedelta(days=1, hours=2, seconds=3.5))
    'P1DT2H3.5S'
    >>> iso_duration(-timedelta(hours=1, minutes=30))
    'PT-1H-30M'
    >>> iso_duration(timedelta(0))
    'PT0S'
    """
    micros = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if micros < 0 else ""
    days, rest = divmod(abs(micros), 86400 * 1_000_000)
    hours, rest = divmod(rest, 3600 * 1_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    clock = "".join(f"{sign}{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M")) if n)
    if seconds or fraction:
        digits = f".{fraction:06d}".rstrip("0") if fraction else ""
        clock += f"{sign}{seconds}{digits}S"
    text = "P" + (f"{sign}{days}D" if days else "") + (f"T{clock}" if clock else "")
    return "PT0S" if text == "P" else text


def _read_json(value: object) -> object:
    """Parse JSON text exactly (long integers are not rounded through floats)."""
    if not isinstance(value, str | bytes | bytearray | memoryview):
        return _plain(value)
    raw = value if isinstance(value, str) else bytes(value).decode("utf-8")
    if _LONG_DIGITS.search(raw):
        return _plain(json.loads(raw))
    return orjson.loads(raw)


def _read_numeric(value: object) -> object:
    """A numeric as exact text, whether it arrives as text, Decimal or int."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _plain(value)


def _read_bytea(value: object) -> object:
    """Bytes as base64; PostgreSQL's ``\\x`` hex text is decoded first."""
    if isinstance(value, str) and value.startswith("\\x"):
        return base64.b64encode(bytes.fromhex(value[2:])).decode("ascii")
    return _plain(value)


def _read_row(value: object) -> object:
    """A whole row image: a store's ``Image`` (each value read under its own hint), JSON
    text, or values already JSON-ready.

    >>> _read_row(Image({"id": 1, "price": Decimal("9.90")}, {"price": "numeric"}))
    {'id': 1, 'price': '9.90'}
    """
    if isinstance(value, Image):
        types = value.types
        return {_key_text(k): _plain(to_json_value(v, types.get(k))) for k, v in value.items()}
    return _read_json(value) if isinstance(value, str) else _plain(value)


def _read_changed(value: object) -> object:
    """Names of changed columns, from a list, a JSON array or a PostgreSQL array."""
    if isinstance(value, str):
        parsed = parse_pg_array(value) if value.lstrip().startswith("{") else _read_json(value)
        return _plain(parsed)
    if isinstance(value, list | tuple):
        return [None if v is None else str(v) for v in value]
    return _plain(value)


_HINT_READERS: dict[str, Converter] = {
    "json": _read_json,
    "numeric": _read_numeric,
    "bytea": _read_bytea,
    "row": _read_row,
    "changed": _read_changed,
}


def _read_int(value: object) -> object:
    """An integer element."""
    return _plain(int(value) if isinstance(value, str) else value)


def _read_float(value: object) -> object:
    """A float element; NaN and infinities become their names."""
    return _plain(float(value) if isinstance(value, str) else value)


def _read_bool(value: object) -> object:
    """A boolean element, from PostgreSQL's ``t``/``f`` or ``true``/``false``."""
    if isinstance(value, bool):
        return value
    names = {"t": True, "true": True, "f": False, "false": False}
    if isinstance(value, str) and value.lower() in names:
        return names[value.lower()]
    raise ValueError(f"not a boolean: {value!r}")


_ELEMENT_READERS: dict[str, Converter] = {
    **dict.fromkeys(("int", "int2", "int4", "int8", "integer", "smallint", "bigint"), _read_int),
    **dict.fromkeys(("float", "float4", "float8", "real", "double precision"), _read_float),
    **dict.fromkeys(("numeric", "decimal"), _read_numeric),
    **dict.fromkeys(("bool", "boolean"), _read_bool),
    **dict.fromkeys(("json", "jsonb"), _read_json),
}
"""Element readers for ``pgarray:<element>``; other element types (uuid, date, …) stay text."""


def _pgarray_reader(element: str) -> Converter:
    """A reader for PostgreSQL array text (or a list) with elements read as ``element``."""
    read_element = _ELEMENT_READERS.get(element.lower(), _plain)

    def read(value: object) -> object:
        items = parse_pg_array(value) if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return _plain(value)
        return _map_nested(items, read_element)

    return read


def _map_nested(items: Sequence[object], read: Converter) -> list[object]:
    """Apply ``read`` to every non-null leaf of nested lists."""
    return [
        _map_nested(v, read) if isinstance(v, list | tuple) else None if v is None else read(v)
        for v in items
    ]


# --- PostgreSQL array literals ------------------------------------------------------------


def _skip_space(text: str, pos: int) -> int:
    """The first position at or after ``pos`` that is not array whitespace."""
    while pos < len(text) and text[pos] in _PG_SPACE:
        pos += 1
    return pos


def _parse_level(text: str, pos: int, delimiter: str) -> tuple[list[object], int]:
    """Parse ``{...}`` starting at ``pos``; return its items and the position after it."""
    items: list[object] = []
    pos = _skip_space(text, pos + 1)
    if text.startswith("}", pos):
        return items, pos + 1
    while True:
        item, pos = _parse_item(text, _skip_space(text, pos), delimiter)
        items.append(item)
        pos = _skip_space(text, pos)
        if text.startswith(delimiter, pos):
            pos += 1
        elif text.startswith("}", pos):
            _check_uniform(text, items)
            return items, pos + 1
        else:
            raise ValueError(f"expected {delimiter!r} or '}}' at {pos} in {text!r}")


def _parse_item(text: str, pos: int, delimiter: str) -> tuple[object, int]:
    """Parse one element (nested array, quoted or unquoted) starting at ``pos``."""
    if text.startswith("{", pos):
        return _parse_level(text, pos, delimiter)
    if text.startswith('"', pos):
        return _parse_quoted(text, pos)
    return _parse_unquoted(text, pos, delimiter)


def _parse_quoted(text: str, pos: int) -> tuple[str, int]:
    """Parse ``"..."`` with backslash escapes; return the string and the position after."""
    chars: list[str] = []
    pos += 1
    while pos < len(text):
        ch = text[pos]
        if ch == '"':
            return "".join(chars), pos + 1
        if ch == "\\":
            pos += 1
            if pos == len(text):
                break
            ch = text[pos]
        chars.append(ch)
        pos += 1
    raise ValueError(f"unterminated quoted element in {text!r}")


def _parse_unquoted(text: str, pos: int, delimiter: str) -> tuple[str | None, int]:
    """Parse a bare element up to the delimiter or ``}``; bare ``NULL`` is None."""
    chars: list[str] = []
    keep = 0  # length up to the last escaped or non-space character
    escaped = False
    while pos < len(text) and not text.startswith(delimiter, pos) and text[pos] != "}":
        ch = text[pos]
        if ch in '{"':
            raise ValueError(f"unexpected {ch!r} at {pos} in {text!r}")
        if ch == "\\":
            pos += 1
            if pos == len(text):
                break
            chars.append(text[pos])
            keep, escaped = len(chars), True
        else:
            chars.append(ch)
            keep = len(chars) if ch not in _PG_SPACE else keep
        pos += 1
    if pos == len(text):
        raise ValueError(f"unterminated PostgreSQL array: {text!r}")
    value = "".join(chars[:keep])
    if not value and not escaped:
        raise ValueError(f"empty element at {pos} in {text!r}")
    return (None if not escaped and value.upper() == "NULL" else value), pos


def _check_uniform(text: str, items: list[object]) -> None:
    """Reject a level mixing sub-arrays and scalars, as PostgreSQL does."""
    nested = [isinstance(item, list) for item in items]
    if any(nested) and not all(nested):
        raise ValueError(f"array mixes nested arrays and scalars: {text!r}")


# --- output formats -----------------------------------------------------------------------


def _converted(
    columns: list[str], converters: list[Converter], rows: Iterable[Sequence[object]]
) -> Iterator[list[object]]:
    """Each row with every value converted to JSON-ready form, lazily."""
    width = len(columns)
    for row in rows:
        if len(row) != width:
            raise ValueError(f"row has {len(row)} values for {width} columns")
        yield [convert(value) for convert, value in zip(converters, row, strict=True)]


def _json_lines(
    columns: list[str], converters: list[Converter], rows: Iterable[Sequence[object]]
) -> Iterator[str]:
    """JSON Lines, one object per row, streaming."""
    for values in _converted(columns, converters, rows):
        yield orjson.dumps(dict(zip(columns, values, strict=True))).decode("utf-8") + "\n"


def _json_document(
    columns: list[str], converters: list[Converter], rows: Iterable[Sequence[object]]
) -> Iterator[str]:
    """One JSON object ``{"columns": [...], "rows": [{...}, ...]}``, streamed a row at a
    time (never built whole)."""
    yield '{"columns":' + orjson.dumps(columns).decode("utf-8") + ',"rows":['
    sep = ""
    for values in _converted(columns, converters, rows):
        yield sep + orjson.dumps(dict(zip(columns, values, strict=True))).decode("utf-8")
        sep = ","
    yield "]}\n"


def _scalar_text(value: object) -> str:
    """A JSON-ready value as one text field: strings bare, NULL empty, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode("utf-8")


class _Line:
    """A file-like that hands back what csv.writer wrote for one row."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)


def _csv_lines(
    columns: list[str], converters: list[Converter], rows: Iterable[Sequence[object]]
) -> Iterator[str]:
    """A header and one CSV line per row, streaming; NULL is an empty field."""
    line = _Line()
    writer = csv.writer(line, lineterminator="\n")
    writer.writerow(columns)
    yield line.text
    for values in _converted(columns, converters, rows):
        line.text = ""
        writer.writerow([_scalar_text(v) for v in values])
        yield line.text


def _cell(value: object, whole: bool = False) -> Text:
    """A table cell: NULL dim, control characters escaped, long text cut with an ellipsis
    (unless ``whole``)."""
    if value is None:
        return Text("NULL", style="dim")
    text = _scalar_text(value).replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    if len(text) > CELL_WIDTH and not whole:
        text = text[: CELL_WIDTH - 1] + "…"
    return Text(text)


def _is_number(value: object) -> bool:
    """Whether a converted value is a JSON number (for right-aligning a column)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _write_table(
    out: TextIO,
    columns: list[str],
    converters: list[Converter],
    numeric: list[bool],
    rows: Iterable[Sequence[object]],
    limit: int,
    whole: set[str],
    width: int | None = None,
) -> int:
    """Print a rich table of the first ``limit`` rows and say how many more were left out."""
    iterator = iter(rows)
    shown = list(_converted(columns, converters, islice(iterator, limit)))
    omitted = sum(1 for _ in iterator)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for i, name in enumerate(columns):
        values = [row[i] for row in shown if row[i] is not None]
        right = numeric[i] or (bool(values) and all(_is_number(v) for v in values))
        wrap = name in whole
        table.add_column(
            Text(name),
            justify="right" if right else "left",
            no_wrap=not wrap,
            overflow="fold" if wrap else "ellipsis",
        )
    for row in shown:
        table.add_row(*(_cell(v, c in whole) for c, v in zip(columns, row, strict=True)))
    console = _console(out, width)
    console.print(table)
    if omitted:
        noun = "row" if omitted == 1 else "rows"
        console.print(
            Text(f"… {omitted:,} more {noun} not shown; use --format json or csv for all rows")
        )
    return len(shown)


def _console(out: TextIO, width: int | None = None) -> Console:
    """A rich console writing to ``out``: ``width`` if given, else the terminal's width on
    a tty, NON_TTY_WIDTH otherwise."""
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):
        tty = False
    return Console(
        file=out,
        width=width if width is not None else None if tty else NON_TTY_WIDTH,
        force_jupyter=False,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
    )
