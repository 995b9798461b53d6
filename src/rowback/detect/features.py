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
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from rowback.model import Change, Column, Op, Text

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
    groups: dict[tuple[int, str], list[Change]] = {}
    for c in changes:
        if c.op in (Op.SNAPSHOT, Op.TRUNCATE):
            continue  # a snapshot is not a write; TRUNCATE has no rows to summarise
        groups.setdefault((c.txid, c.table.qualified), []).append(c)
    return [_one(table, group) for (_, table), group in groups.items()]


def _one(table: str, changes: list[Change]) -> TxFeatures:
    inserts = updates = deletes = with_before = 0
    columns = changes[-1].table.columns  # the newest version the transaction wrote
    width = len(columns)
    written: list[list[Text]] = [[] for _ in columns]
    changed = [0] * width
    keys: list[tuple[Text, ...]] = []
    commit_us = changes[0].commit_us
    for c in changes:
        op = c.op
        if c.commit_us > commit_us:
            commit_us = c.commit_us
        if op == Op.INSERT:
            inserts += 1
        elif op == Op.UPDATE:
            updates += 1
        elif op == Op.DELETE:
            deletes += 1
        if (op == Op.UPDATE or op == Op.DELETE) and c.key is not None:
            keys.append(c.key)
        after = c.after
        if after is None or op == Op.DELETE:
            continue
        before = c.before if op == Op.UPDATE else None
        if before is not None:
            with_before += 1
        unchanged = c.unchanged
        for i, v in enumerate(after[:width]):
            if unchanged and i in unchanged:
                continue
            if before is not None and i < len(before):
                if before[i] == v:
                    continue
                changed[i] += 1
            written[i].append(v)
    cols = tuple(
        _column(col, vals, n) for col, vals, n in zip(columns, written, changed, strict=True)
    )
    if len(keys) > 1:
        keys.sort(key=repr)
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).hexdigest() if keys else ""
    ops = {Op.INSERT: inserts, Op.UPDATE: updates, Op.DELETE: deletes}
    return TxFeatures(
        table=table,
        txid=changes[0].txid,
        commit_us=commit_us,
        inserts=inserts,
        updates=updates,
        deletes=deletes,
        updates_with_before=with_before,
        columns=cols,
        key_digest=digest,
        example_keys=tuple(keys[:MAX_EXAMPLE_KEYS]),
        shape=_shape([op for op, n in ops.items() if n], cols, with_before),
    )


def _shape(ops: list[Op], cols: tuple[ColumnFeatures, ...], with_before: int) -> str:
    parts = [op.label for op in ops]  # in Op order
    if with_before:
        parts[-1:] = [f"{parts[-1]}({','.join(c.name for c in cols if c.changed)})"]
    return "+".join(parts)


def _column(col: Column, vals: list[Text], changed: int) -> ColumnFeatures:
    if not vals:  # most columns of most updates: nothing written, nothing to count
        if changed:
            return ColumnFeatures(col.name, col.type, 0, 0, 0, changed, (), 0, (), ())
        got = _NOTHING.get(col)
        if got is None:
            got = _NOTHING[col] = ColumnFeatures(col.name, col.type, 0, 0, 0, 0, (), 0, (), ())
            if len(_NOTHING) > 10_000:
                _NOTHING.clear()
        return got
    if len(vals) == 1:  # one row: the common transaction, without the counting
        return _single(col, vals[0], changed)
    counts = Counter(vals)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], repr(kv[0])))[:MAX_VALUES]
    numbers: list[float] = []
    years: list[int] = []
    is_time = "timestamp" in col.type or col.type == "date"
    for v in vals:
        if v is None:
            continue
        if len(numbers) < MAX_NUMBERS:
            f = _number(v)
            if f is not None:
                numbers.append(f)
        if is_time and len(years) < MAX_NUMBERS:
            y = _year(v)
            if y is not None:
                years.append(y)
    return ColumnFeatures(
        name=col.name,
        type=col.type,
        written=len(vals),
        nulls=counts.get(None, 0),
        empties=sum(n for v, n in counts.items() if v is not None and not v.strip()),
        changed=changed,
        values=tuple(top),
        distinct=len(counts),
        numbers=tuple(numbers),
        years=tuple(years),
    )


_NOTHING: dict[Column, ColumnFeatures] = {}
"""One shared "nothing written" summary per column: read-only, so it can be shared."""


def _single(col: Column, v: Text, changed: int) -> ColumnFeatures:
    """``_column`` of one written value."""
    numbers: tuple[float, ...] = ()
    years: tuple[int, ...] = ()
    if v is not None:
        f = _number(v)
        if f is not None:
            numbers = (f,)
        if "timestamp" in col.type or col.type == "date":
            y = _year(v)
            if y is not None:
                years = (y,)
    return ColumnFeatures(
        name=col.name,
        type=col.type,
        written=1,
        nulls=1 if v is None else 0,
        empties=1 if v is not None and not v.strip() else 0,
        changed=changed,
        values=((v, 1),),
        distinct=1,
        numbers=numbers,
        years=years,
    )


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
