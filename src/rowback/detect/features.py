"""From a transaction's row changes to the summary every detector reads.

The unit of detection is one transaction on one table (``TxFeatures``): one bad statement
is one transaction, so scoring per transaction keeps a 1,000-row UPDATE one observation,
and per-table keeps baselines meaningful. A column's "written" values are what inserts
and updates put there: with a before-image an update writes only the columns it changed;
without one every sent column counts as written and none as "changed" (capture that
keeps before-images gives the frozen-column detector its input).
"""

from __future__ import annotations

import hashlib
from bisect import insort
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rowback.model import Change, Op, TableSchema, Text

MAX_VALUES = 64
"""Distinct values kept per column per transaction (most frequent first)."""
MAX_NUMBERS = 256
"""Numeric values kept per column per transaction (the first ones written)."""
MAX_EXAMPLE_KEYS = 5


# Not frozen, though read-only by convention: a frozen dataclass sets each field through
# ``object.__setattr__``, and these are built for every transaction on the capture path.
@dataclass(slots=True)
class ColumnFeatures:
    """What one transaction wrote to one column."""

    name: str
    type: str
    written: int
    """Values written (inserted, or changed or sent by an update)."""
    nulls: int
    empties: int
    """Empty or whitespace-only strings."""
    changed: int
    """Updates whose before-image shows this column changed."""
    values: tuple[tuple[Text, int], ...]
    """The most frequent written values with their counts, most frequent first."""
    distinct: int
    numbers: tuple[float, ...]
    """Written values that parse as finite numbers (the first ``MAX_NUMBERS``)."""
    years: tuple[int, ...]
    """Years of written timestamp/date values (timestamp-typed columns only), capped."""

    @property
    def top(self) -> tuple[Text, int]:
        """The most frequent written value and its count."""
        return self.values[0] if self.values else (None, 0)


@dataclass(slots=True)
class TxFeatures:
    """One transaction's changes to one table, summarised for detection."""

    table: str
    txid: int
    commit_us: int
    inserts: int
    updates: int
    deletes: int
    updates_with_before: int
    columns: tuple[ColumnFeatures, ...]
    key_digest: str
    """Digest of the sorted keys updated or deleted: equal digests rewrote the same rows."""
    example_keys: tuple[tuple[Text, ...], ...]
    shape: str
    """Statement shape, e.g. ``update(price,status)``: what the transaction did, not to whom."""

    @property
    def rows(self) -> int:
        return self.inserts + self.updates + self.deletes


def tx_features(changes: Iterable[Change]) -> list[TxFeatures]:
    """Summarise changes per (transaction, table), in order of first appearance."""
    return [acc.finish() for acc in summarise(changes, {}).values()]


Summaries = dict[tuple[int, str], "TxSummary"]
"""Per (transaction, qualified table), in order of first appearance."""


def summarise(changes: Iterable[Change], into: Summaries) -> Summaries:
    """Add ``changes`` to the summaries ``into`` (made when first seen), and return it."""
    for c in changes:
        if c.op == Op.SNAPSHOT or c.op == Op.TRUNCATE:
            continue  # a snapshot is not a write; TRUNCATE has no rows to summarise
        key = (c.txid, c.table.qualified)
        acc = into.get(key)
        if acc is None:
            acc = into[key] = TxSummary(key[1], c.txid)
        acc.add(c)
    return into


MAX_DISTINCT = 4_096
"""Distinct values counted per column of one transaction; past it only the values already
counted grow, so a million-row transaction summarised across many writes stays small (the
most frequent values of a bulk write are among its first)."""
_MASK64 = (1 << 64) - 1


class _ColumnSummary:
    """What one transaction wrote to one column so far."""

    __slots__ = (
        "name",
        "type",
        "is_time",
        "written",
        "nulls",
        "empties",
        "changed",
        "counts",
        "uncounted",
        "numbers",
        "years",
    )

    def __init__(self, name: str, type_: str) -> None:
        self.name = name
        self.type = type_
        self.is_time = "timestamp" in type_ or type_ == "date"
        self.written = self.nulls = self.empties = self.changed = self.uncounted = 0
        self.counts: dict[Text, int] = {}
        self.numbers: list[float] = []
        self.years: list[int] = []

    def add(self, v: Text) -> None:
        self.written += 1
        counts = self.counts
        n = counts.get(v)
        if n is not None:
            counts[v] = n + 1
        elif len(counts) < MAX_DISTINCT:
            counts[v] = 1
        else:
            self.uncounted += 1
        if v is None:
            self.nulls += 1
            return
        if not v.strip():
            self.empties += 1
        if len(self.numbers) < MAX_NUMBERS:
            f = _number(v)
            if f is not None:
                self.numbers.append(f)
        if self.is_time and len(self.years) < MAX_NUMBERS:
            y = _year(v)
            if y is not None:
                self.years.append(y)

    def finish(self) -> ColumnFeatures:
        counts = self.counts
        if len(counts) == 1:
            top = list(counts.items())
        else:
            top = sorted(counts.items(), key=lambda kv: (-kv[1], repr(kv[0])))[:MAX_VALUES]
        return ColumnFeatures(
            name=self.name,
            type=self.type,
            written=self.written,
            nulls=self.nulls,
            empties=self.empties,
            changed=self.changed,
            values=tuple(top),
            distinct=len(counts) + self.uncounted,  # an upper bound past MAX_DISTINCT
            numbers=tuple(self.numbers),
            years=tuple(self.years),
        )

    def state(self) -> list[Any]:
        return [
            self.name,
            self.type,
            [self.written, self.nulls, self.empties, self.changed, self.uncounted],
            [[v, n] for v, n in self.counts.items()],
            self.numbers,
            self.years,
        ]

    @classmethod
    def from_state(cls, s: list[Any]) -> _ColumnSummary:
        c = cls(str(s[0]), str(s[1]))
        c.written, c.nulls, c.empties, c.changed, c.uncounted = (int(x) for x in s[2])
        c.counts = {v: int(n) for v, n in s[3]}
        c.numbers = [float(x) for x in s[4]]
        c.years = [int(x) for x in s[5]]
        return c


_NOTHING: dict[tuple[str, str], ColumnFeatures] = {}
"""One shared "nothing written" summary per column: read-only, so it can be shared."""


def _finish(c: _ColumnSummary | None, name: str, type_: str) -> ColumnFeatures:
    if c is not None:
        return c.finish()
    key = (name, type_)
    got = _NOTHING.get(key)
    if got is None:
        got = ColumnFeatures(name, type_, 0, 0, 0, 0, (), 0, (), ())
        if len(_NOTHING) < 10_000:
            _NOTHING[key] = got
    return got


class TxSummary:
    """One transaction's changes to one table, summarised as they arrive, in bounded
    memory: a transaction that several writes cut into pieces is judged whole, once."""

    __slots__ = (
        "table",
        "txid",
        "commit_us",
        "ops",
        "with_before",
        "columns",
        "order",
        "digest",
        "examples",
        "keys",
        "_schema",
        "_bound",
    )

    def __init__(self, table: str, txid: int) -> None:
        self.table = table
        self.txid = txid
        self.commit_us = -(1 << 62)
        self.ops = [0, 0, 0]
        """Inserts, updates, deletes."""
        self.with_before = 0
        self.columns: dict[str, _ColumnSummary] = {}
        self.order: list[tuple[str, str]] = []
        """Column names and types of the newest table version seen (the features' order)."""
        self.digest = 0
        """Sum of the keys' hashes (mod 2**64): the same multiset of keys, the same sum,
        in whatever order and pieces they came."""
        self.examples: list[tuple[str, int, tuple[Text, ...]]] = []
        """The ``MAX_EXAMPLE_KEYS`` first keys by repr (ties in arrival order)."""
        self.keys = 0
        self._schema: object = None
        self._bound: list[_ColumnSummary | None] = []

    def _bind(self, schema: TableSchema) -> None:
        cols = self.columns
        bound: list[_ColumnSummary | None] = []
        for col in schema.columns:
            got = cols.get(col.name)
            if got is not None and got.type != col.type:  # retyped within the transaction
                got.type, got.is_time = col.type, "timestamp" in col.type or col.type == "date"
            bound.append(got)
        self._bound = bound
        self.order = [(col.name, col.type) for col in schema.columns]
        self._schema = schema

    def _column(self, i: int) -> _ColumnSummary:
        """The summary of column ``i`` of the bound version, made when first written."""
        name, type_ = self.order[i]
        got = self.columns[name] = _ColumnSummary(name, type_)
        self._bound[i] = got
        return got

    def add(self, c: Change) -> None:
        if c.table is not self._schema:
            self._bind(c.table)
        op = c.op
        if c.commit_us > self.commit_us:
            self.commit_us = c.commit_us
        if op == Op.INSERT:
            self.ops[0] += 1
        elif op == Op.UPDATE:
            self.ops[1] += 1
        elif op == Op.DELETE:
            self.ops[2] += 1
        if (op == Op.UPDATE or op == Op.DELETE) and c.key is not None:
            self._key(c.key)
        after = c.after
        if after is None or op == Op.DELETE:
            return
        before = c.before if op == Op.UPDATE else None
        if before is not None:
            self.with_before += 1
        unchanged = c.unchanged
        bound = self._bound
        for i, v in enumerate(after[: len(bound)]):
            if unchanged and i in unchanged:
                continue
            if before is not None and i < len(before):
                if before[i] == v:
                    continue
                cs = bound[i] or self._column(i)
                cs.changed += 1
            else:
                cs = bound[i] or self._column(i)
            cs.add(v)

    def _key(self, key: tuple[Text, ...]) -> None:
        r = repr(key)
        h = hashlib.blake2b(r.encode(), digest_size=8).digest()
        self.digest = (self.digest + int.from_bytes(h, "big")) & _MASK64
        self.keys += 1
        ex = self.examples
        if len(ex) < MAX_EXAMPLE_KEYS or r < ex[-1][0]:
            insort(ex, (r, self.keys, key))
            del ex[MAX_EXAMPLE_KEYS:]

    def finish(self) -> TxFeatures:
        got = self.columns.get
        cols = tuple([_finish(got(name), name, type_) for name, type_ in self.order])
        ins, upd, dels = self.ops
        present = []
        if ins:
            present.append(Op.INSERT)
        if upd:
            present.append(Op.UPDATE)
        if dels:
            present.append(Op.DELETE)
        return TxFeatures(
            table=self.table,
            txid=self.txid,
            commit_us=self.commit_us,
            inserts=ins,
            updates=upd,
            deletes=dels,
            updates_with_before=self.with_before,
            columns=cols,
            key_digest=f"{self.digest:016x}" if self.keys else "",
            example_keys=tuple(k for _, _, k in self.examples),
            shape=_shape(present, cols, self.with_before),
        )

    def state(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "txid": self.txid,
            "at": self.commit_us,
            "ops": self.ops,
            "with_before": self.with_before,
            "columns": [c.state() for c in self.columns.values()],
            "order": [list(o) for o in self.order],
            "digest": self.digest,
            "keys": self.keys,
            "examples": [[r, i, list(k)] for r, i, k in self.examples],
        }

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> TxSummary:
        t = cls(str(s["table"]), int(s["txid"]))
        t.commit_us = int(s["at"])
        t.ops = [int(x) for x in s["ops"]]
        t.with_before = int(s["with_before"])
        for c in s["columns"]:
            col = _ColumnSummary.from_state(c)
            t.columns[col.name] = col
        t.order = [(str(n), str(ty)) for n, ty in s["order"]]
        t.digest, t.keys = int(s["digest"]), int(s["keys"])
        t.examples = [(str(r), int(i), tuple(k)) for r, i, k in s["examples"]]
        return t


def _shape(ops: list[Op], cols: tuple[ColumnFeatures, ...], with_before: int) -> str:
    parts = [op.label for op in ops]  # in Op order
    if with_before:
        parts[-1:] = [f"{parts[-1]}({','.join(c.name for c in cols if c.changed)})"]
    return "+".join(parts)


def _number(v: str) -> float | None:
    """A finite float from PostgreSQL text, or None (so '1e400', 'NaN' and words are skipped)."""
    try:
        f = float(v)
    except ValueError:
        return None
    return f if f == f and abs(f) != float("inf") else None


def _year(v: str) -> int | None:
    """The year of a PostgreSQL date/timestamp text; 'infinity' counts as far future.

    >>> _year("1970-01-01 00:00:00+00"), _year("infinity"), _year("-infinity"), _year("x")
    (1970, 9999, 1, None)
    """
    if v == "infinity":
        return 9999
    if v == "-infinity":
        return 1
    head = v.split("-", 1)[0]
    return int(head) if head.isdigit() and len(v) > len(head) else None
