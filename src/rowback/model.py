"""The change event, table schema and source position shared by every source and store.

Pure data, no drivers. Values travel as *text in PostgreSQL's output form* (what
``SELECT col::text`` or ``pgoutput`` prints): that keeps numeric exact, lets capture
compare versions without parsing each value, and leaves typing to the store, which
casts whole columns at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import pyarrow as pa

Text = str | None
"""A value in PostgreSQL text form, or SQL NULL."""


class Op(IntEnum):
    """What a change did to a row. Stored as a small integer so history compresses."""

    SNAPSHOT = 0
    INSERT = 1
    UPDATE = 2
    DELETE = 3
    TRUNCATE = 4

    @property
    def label(self) -> str:
        """The name users see: insert, update, delete, truncate, snapshot."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table version. ``type`` is PostgreSQL's name, e.g. ``numeric(12,2)``."""

    name: str
    type: str
    key: bool = False
    missing: str | None = None
    """The value rows older than the column have without holding it: PostgreSQL's
    ``ADD COLUMN … DEFAULT x`` rewrites no row and sends no change for them."""
    number: int | None = None
    """PostgreSQL's column number (``attnum``), None where the source has none. A retyped
    column keeps it; ``DROP COLUMN a, ADD COLUMN a …`` gives ``a`` a new one."""


@dataclass(frozen=True, slots=True)
class TableSchema:
    """One version of a captured table's columns.

    A new version (column added, dropped or retyped) is a new object; the store keeps
    every version so old history stays readable.
    """

    source: str
    schema: str
    name: str
    columns: tuple[Column, ...]
    key_indexes: tuple[int, ...] = field(init=False, repr=False, compare=False)
    """Positions of the primary-key columns within ``columns`` (derived, cached)."""

    qualified: str = field(init=False, repr=False, compare=False)
    """``schema.table`` as users type it (derived, cached: asked for every change)."""

    def __post_init__(self) -> None:
        keys = tuple(i for i, c in enumerate(self.columns) if c.key)
        object.__setattr__(self, "key_indexes", keys)
        object.__setattr__(self, "qualified", f"{self.schema}.{self.name}")

    def key_of(self, row: list[Text] | tuple[Text, ...]) -> tuple[Text, ...]:
        """The primary key of a full row, in key-column order."""
        if len(self.key_indexes) == 1:
            return (row[self.key_indexes[0]],)
        return tuple([row[i] for i in self.key_indexes])


@dataclass(slots=True)
class Change:
    """One row change, normalized from any source.

    ``after`` is aligned with ``table.columns``; indexes in ``unchanged`` were not sent by
    the source (PostgreSQL's TOAST-unchanged values) and are filled from history.
    ``before`` is the old row when the source sent one (a full row under REPLICA
    IDENTITY FULL, a Debezium ``before``); the store checks it against its own last
    version instead of storing it. ``lsn`` is the commit position and ``seq`` the order
    within the transaction; ``commit_us`` is microseconds since the Unix epoch.
    """

    table: TableSchema
    op: Op
    key: tuple[Text, ...] | None
    after: list[Text] | None
    before: list[Text] | None
    commit_us: int
    txid: int
    lsn: int
    seq: int
    unchanged: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    """Changes to one table version in columns, for sources that decode in bulk.

    The same information as a run of ``Change`` objects without TOAST-unchanged values
    or TRUNCATE: ``op`` (uint8 ``Op`` values), ``txid``/``lsn`` (uint64), ``seq``
    (uint32) and ``commit_us`` (int64) per change; ``after`` holds one string array per
    column of ``table`` (a delete carries its key columns only); ``before`` likewise,
    valid where ``has_before`` is true, or None when no change has one.

    A block of a stream that interleaves tables is written as one batch per table;
    ``rows`` (uint64) then gives each change's place in the block, in the order the
    stream had them (None: the batch is the whole write, in order).
    """

    table: TableSchema
    op: pa.Array
    txid: pa.Array
    lsn: pa.Array
    seq: pa.Array
    commit_us: pa.Array
    after: tuple[pa.Array, ...]
    before: tuple[pa.Array, ...] | None = None
    has_before: pa.Array | None = None
    rows: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.op)

    def changes(self, start: int = 0, stop: int | None = None) -> list[Change]:
        """The same changes as objects (for stores without a bulk path, for detection and
        for tests); ``start``/``stop``: only those, so a big batch is read in pieces."""
        stop = len(self) if stop is None else min(stop, len(self))
        span = max(0, stop - start)

        def part(a: pa.Array) -> list[Any]:
            got: list[Any] = a.slice(start, span).to_pylist()
            return got

        cols = zip(*(part(a) for a in self.after), strict=True)
        befores: list[list[Text] | None] = [None] * span
        if self.before is not None and self.has_before is not None:
            has = part(self.has_before)
            rows = zip(*(part(a) for a in self.before), strict=True)
            befores = [list(r) if h else None for r, h in zip(rows, has, strict=True)]
        meta = zip(
            part(self.op),
            part(self.txid),
            part(self.lsn),
            part(self.seq),
            part(self.commit_us),
            strict=True,
        )
        out = []
        for (op, txid, lsn, seq, ts), row, before in zip(meta, cols, befores, strict=True):
            op = Op(op)
            key = self.table.key_of(row)
            after = None if op == Op.DELETE else list(row)
            out.append(Change(self.table, op, key, after, before, ts, txid, lsn, seq))
        return out


@dataclass(frozen=True, slots=True)
class Quarantined:
    """An input the sources could not turn into a change: kept, never silently dropped."""

    source: str
    location: str
    line: int | None
    error: str
    raw: bytes
    id: int | None = None
    """Its number in the store's quarantine (None until it is stored)."""


@dataclass(slots=True)
class WriteStats:
    """What one ``Store.write`` did; ``gaps`` counts versions that did not match history."""

    written: int = 0
    gaps: int = 0
    gap_examples: list[str] = field(default_factory=list)
