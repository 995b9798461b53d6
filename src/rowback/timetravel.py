"""Time-travel logic every backend shares: finding a table by the names users give, and
reading the key values they give for a row. Backends write only their queries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from rowback.errors import BadParameter, NotFound, RowbackError


class Named(Protocol):
    @property
    def source(self) -> str: ...
    @property
    def schema(self) -> str: ...
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


def resolve(tables: Iterable[T], name: str) -> T:
    """Find a table by ``schema.table`` (or ``source:schema.table``, or a unique bare name)."""
    source, _, rest = name.rpartition(":")
    schema, _, rel = rest.rpartition(".")
    found = [
        t
        for t in tables
        if t.name == rel
        and (not schema or t.schema == schema)
        and (not source or t.source == source)
    ]
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFound(f"no captured table {name!r} in the store (see `rowback tables`)")
    names = ", ".join(sorted(f"{t.source}:{t.schema}.{t.name}" for t in found))
    raise RowbackError(f"table name {name!r} is ambiguous: {names}")


def key_values(table: str, key_columns: Sequence[str], given: Sequence[str]) -> list[str]:
    """The values of a row's key, in key order: repeated (``--key 1 --key a``) or one
    comma-separated value for a composite key.

    >>> key_values("public.t", ["a", "b"], ["1,x"])
    ['1', 'x']
    """
    values = list(given)
    if len(values) == 1 and len(key_columns) > 1:
        values = values[0].split(",")
    if len(values) != len(key_columns):
        names = ", ".join(key_columns)
        raise BadParameter("key", f"{table} has key ({names}): give {len(key_columns)} value(s)")
    return values
