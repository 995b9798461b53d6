"""How PostgreSQL column types are kept in DuckDB, and how their text form is cast.

Numbers stay numbers so DuckDB's integer and float codecs compress them; anything DuckDB
cannot hold exactly (unbounded numeric, arrays, intervals, json) stays PostgreSQL text
and carries a rendering hint instead.

A few values of a typed column are beyond it or beyond Python:

- DATE and TIMESTAMP hold BC values and +-infinity, but DuckDB spells an era ``(BC)``
  (a TIMESTAMP even reads PostgreSQL's ``... BC`` silently as AD), and Python's datetime
  holds neither: :meth:`Physical.cast` reads the era, :meth:`Physical.output` hands such
  values to Python as PostgreSQL's text;
- DECIMAL holds no ``NaN``/``Infinity`` and TIMESTAMP nothing after 294247: such a value
  (:meth:`Physical.overflows`) makes the store *widen* its column to the text for good
  (:meth:`Physical.widened`, ``catalog.widen``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_TYPMOD = re.compile(r"\(\s*(\d+)\s*(?:,\s*(-?\d+)\s*)?\)")

_SIMPLE: dict[str, tuple[str, str | None]] = {
    "smallint": ("SMALLINT", None),
    "integer": ("INTEGER", None),
    "bigint": ("BIGINT", None),
    "real": ("FLOAT", None),
    "double precision": ("DOUBLE", None),
    "boolean": ("BOOLEAN", None),
    "date": ("DATE", None),
    "timestamp without time zone": ("TIMESTAMP", None),
    "timestamp with time zone": ("TIMESTAMPTZ", None),
    "time without time zone": ("TIME", None),
    "uuid": ("UUID", None),
    "json": ("VARCHAR", "json"),
    "jsonb": ("VARCHAR", "json"),
    "bytea": ("BLOB", "bytea"),
    "numeric": ("VARCHAR", "numeric"),
}

_ARRAY_ELEMENT_HINTS = {
    "smallint": "int",
    "integer": "int",
    "bigint": "int",
    "numeric": "numeric",
    "real": "float",
    "double precision": "float",
    "boolean": "bool",
    "json": "json",
    "jsonb": "json",
}


# PostgreSQL's "0044-03-15 BC" and "0044-03-15 10:00:00[+00] BC", read as DuckDB values
# (``{x}``: the text): the date with DuckDB's "(BC)", plus the time of day (with its offset).
_BC_DATE = "CAST(split_part({x}, ' ', 1) || ' (BC)' AS DATE)"
_BC_CASTS = {
    "DATE": _BC_DATE,
    "TIMESTAMP": f"{_BC_DATE} + CAST(split_part({{x}}, ' ', 2) AS TIME)",
    "TIMESTAMPTZ": f"make_timestamptz(epoch_us({_BC_DATE}) + "
    "epoch_us(CAST('1970-01-01 ' || split_part({x}, ' ', 2) AS TIMESTAMPTZ)))",
}

# The values Python's date and datetime hold; TIMESTAMPTZ keeps a day's margin since
# Python gets it in the session's time zone.
_PYTHON_RANGE = {
    "DATE": ("DATE '0001-01-01'", "DATE '9999-12-31'"),
    "TIMESTAMP": ("TIMESTAMP '0001-01-01'", "TIMESTAMP '9999-12-31 23:59:59.999999'"),
    "TIMESTAMPTZ": ("TIMESTAMPTZ '0001-01-02 00:00+00'", "TIMESTAMPTZ '9999-12-30 00:00+00'"),
}

_NUMERIC_SPECIALS = ("NaN", "Infinity", "-Infinity")
_TIMESTAMP_END = 294247  # DuckDB's timestamps end in this year; PostgreSQL's in 294276


@dataclass(frozen=True)
class Physical:
    """The DuckDB type of a column, how to cast its text, and how to render it."""

    duck: str
    hint: str | None

    def cast(self, expr: str) -> str:
        """SQL turning PostgreSQL text ``expr`` into this type.

        >>> Physical("BLOB", "bytea").cast("c1")
        'from_hex(substr(c1, 3))'
        """
        if self.duck == "VARCHAR":
            return expr
        if self.duck == "BLOB":
            return f"from_hex(substr({expr}, 3))"
        plain = f"CAST({expr} AS {self.duck})"
        bc = _BC_CASTS.get(self.duck)
        if bc is None:
            return plain
        return f"CASE WHEN suffix({expr}, ' BC') THEN {bc.format(x=expr)} ELSE {plain} END"

    def text(self, expr: str) -> str:
        """SQL turning a value ``expr`` of this type into text that :meth:`cast` reads back:
        PostgreSQL's own text for numeric(p,s), dates and times (UTC, ``+00``).

        >>> Physical("DATE", None).text("c1")
        "replace(CAST(c1 AS VARCHAR), ' (BC)', ' BC')"
        """
        plain = f"CAST({expr} AS VARCHAR)"
        if self.duck == "VARCHAR":
            return expr
        if self.duck == "BLOB":
            return f"'\\x' || lower(hex({expr}))"
        if self.duck == "DATE":
            return f"replace({plain}, ' (BC)', ' BC')"
        if self.duck == "TIMESTAMP":
            bc = f"isfinite({expr}) AND {expr} < TIMESTAMP '0001-01-01'"
            return f"CASE WHEN {bc} THEN replace({plain}, ' (BC)', '') || ' BC' ELSE {plain} END"
        if self.duck == "TIMESTAMPTZ":
            utc = f"CAST(make_timestamp(epoch_us({expr})) AS VARCHAR)"  # whatever the TimeZone
            return (
                f"CASE WHEN NOT isfinite({expr}) THEN {plain} "
                f"WHEN {expr} < TIMESTAMPTZ '0001-01-01 00:00+00' "
                f"THEN replace({utc}, ' (BC)', '') || '+00 BC' ELSE {utc} || '+00' END"
            )
        return plain

    def output(self, expr: str) -> str:
        """SQL for what Python gets of a value ``expr`` of this type: the value, or, for
        dates and times Python cannot hold (infinities, BC, years past 9999), PostgreSQL's
        text. Only SQL can tell ``infinity`` from 9999-12-31, which DuckDB gives Python for
        both. The two kinds travel as one UNION column, which Python reads as either."""
        bounds = _PYTHON_RANGE.get(self.duck)
        if bounds is None:
            return expr
        lo, hi = bounds
        return (
            f"CASE WHEN {expr} BETWEEN {lo} AND {hi} THEN union_value(v := {expr}) "
            f"ELSE union_value(s := {self.text(expr)}) END"
        )

    def overflow(self, expr: str) -> str | None:
        """SQL telling whether PostgreSQL text ``expr`` is beyond this type (None: no value
        is); the same test as :meth:`overflows`."""
        if self.duck.startswith("DECIMAL"):
            return f"{expr} IN {_NUMERIC_SPECIALS}"
        if self.duck in ("TIMESTAMP", "TIMESTAMPTZ"):
            year = f"TRY_CAST(split_part({expr}, '-', 1) AS BIGINT)"
            return f"({year} >= {_TIMESTAMP_END} AND NOT suffix({expr}, ' BC'))"
        return None

    def overflows(self, text: str) -> bool:
        """Whether PostgreSQL text ``text`` is beyond this type, so its column must widen.

        >>> Physical("DECIMAL(12,2)", "numeric").overflows("NaN")
        True
        >>> Physical("TIMESTAMP", None).overflows("294276-12-31 23:59:59")
        True
        """
        if self.duck.startswith("DECIMAL"):
            return text in _NUMERIC_SPECIALS
        if self.duck in ("TIMESTAMP", "TIMESTAMPTZ"):
            year = text.partition("-")[0]
            return year.isdigit() and int(year) >= _TIMESTAMP_END and not text.endswith(" BC")
        return False

    def widened(self) -> Physical:
        """This column once widened: PostgreSQL text, rendered as before.

        >>> Physical("DECIMAL(12,2)", "numeric").widened()
        Physical(duck='VARCHAR', hint='numeric')
        """
        return Physical("VARCHAR", self.hint)


@functools.lru_cache(maxsize=4096)
def physical(pg_type: str) -> Physical:
    """Map a ``format_type()`` name to its DuckDB form.

    >>> physical("numeric(12,2)")
    Physical(duck='DECIMAL(12,2)', hint='numeric')
    >>> physical("integer[]")
    Physical(duck='VARCHAR', hint='pgarray:int')
    >>> physical("timestamp(3) with time zone").duck
    'TIMESTAMPTZ'
    """
    t = pg_type.strip().lower()
    if t.endswith("[]"):
        elem = _TYPMOD.sub("", t.rstrip("[]")).strip()
        return Physical("VARCHAR", "pgarray:" + _ARRAY_ELEMENT_HINTS.get(elem, "text"))
    base = _TYPMOD.sub("", t).strip()
    if base == "numeric":
        m = _TYPMOD.search(t)
        if m and int(m.group(1)) <= 38:
            scale = int(m.group(2) or 0)
            if 0 <= scale <= int(m.group(1)):
                return Physical(f"DECIMAL({m.group(1)},{scale})", "numeric")
    duck, hint = _SIMPLE.get(base, ("VARCHAR", None))
    return Physical(duck, hint)
