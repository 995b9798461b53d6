"""How PostgreSQL column types are kept in DuckDB, and how their text form is cast.

Numbers stay numbers so DuckDB's integer and float codecs compress them; anything DuckDB
cannot hold exactly (unbounded numeric, arrays, intervals, json) stays PostgreSQL text
and carries a rendering hint instead.
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
        return f"CAST({expr} AS {self.duck})"


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
