"""What was written into columns: one value everywhere, empties, unseen categories, odd
timestamps, and columns that are normally never updated.

Each detector keeps a few counters per (table, column) and expresses a transaction's
evidence as a count against an expected count (``poisson_z``) or a share against a
learned frequency (``binomial_z``), so "never in 5,000 values" and "1% of the time" are
judged on the same scale. ``NullsDetector`` also sums its sub-threshold evidence over
the last hour (``DripWindow``) to catch empties dripped in slowly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rowback.detect.base import Kind, Signal
from rowback.detect.calibrate import poisson_z, score
from rowback.detect.features import MAX_NUMBERS, ColumnFeatures, TxFeatures
from rowback.detect.stats import (
    DECAY_AT,
    MIN_HISTORY,
    DripWindow,
    PerColumn,
    binomial_z,
    plural,
    rate,
)


def _nonnull(c: ColumnFeatures) -> int:
    return c.written - c.nulls


# --- constant -----------------------------------------------------------------------

MAX_COUNTED = 128
"""Values counted per column; past it the least frequent half is dropped."""
CONSTANT_ROWS = 20
CONSTANT_SHARE = 0.9
CONSTANT_HISTORY = 10
"""Transactions writing a column before its bulk writes are judged. Fewer than the other
detectors' ``MIN_HISTORY``: a column such as a price is written by few transactions once
updates count only the columns they change, and 20 rows set to one value against ten
varied writes is already strong evidence (the binomial test carries the uncertainty)."""


class _Constant:
    __slots__ = ("txs", "total", "counts", "big", "big_const")

    def __init__(self) -> None:
        self.txs = 0.0
        self.total = 0.0
        self.counts: dict[str, float] = {}
        self.big = 0.0
        """Transactions writing at least ``CONSTANT_ROWS`` values to the column."""
        self.big_const = 0.0
        """Of those, the ones setting nearly all of them to one value."""

    def state(self) -> list[Any]:
        return [self.txs, self.total, self.big, self.big_const, list(self.counts.items())]


class ConstantDetector(PerColumn[_Constant]):
    """Many rows of a column set to one value when its bulk writes usually vary."""

    name = "constant"
    kinds = frozenset({Kind.constant})

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[str, int] = {}
        """Transactions learned per table: a column is judged after ``CONSTANT_HISTORY``
        of its own writes, but only on a table with ``MIN_HISTORY`` transactions."""

    def learn_one(self, f: TxFeatures) -> None:
        self._seen[f.table] = self._seen.get(f.table, 0) + 1
        super().learn_one(f)

    def score_one(self, f: TxFeatures) -> list[Signal]:
        if self._seen.get(f.table, 0) < MIN_HISTORY:
            return []
        return super().score_one(f)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "seen": sorted(self._seen.items())}

    def load(self, state: dict[str, Any]) -> None:
        super().load(state)
        self._seen = {str(t): int(n) for t, n in state.get("seen", [])}

    def _new(self) -> _Constant:
        return _Constant()

    def _from_state(self, s: Any) -> _Constant:
        st = _Constant()
        st.txs, st.total, st.big, st.big_const = (float(x) for x in s[:4])
        st.counts = {str(k): float(v) for k, v in s[4]}
        return st

    def _learn(self, st: _Constant, f: TxFeatures, c: ColumnFeatures) -> None:
        n = _nonnull(c)
        if n <= 0:
            return
        st.txs += 1.0
        st.total += n
        for v, k in c.values:
            if v is not None:
                st.counts[v] = st.counts.get(v, 0.0) + k
        if len(st.counts) > MAX_COUNTED:
            top = sorted(st.counts.items(), key=lambda kv: (-kv[1], kv[0]))
            st.counts = dict(top[: MAX_COUNTED // 2])
        if n >= CONSTANT_ROWS:
            st.big += 1.0
            if c.top[1] >= CONSTANT_SHARE * n and c.top[0] is not None:
                st.big_const += 1.0
        if st.total > DECAY_AT:
            st.total, st.txs = st.total / 2, st.txs / 2
            st.counts = {k: v / 2 for k, v in st.counts.items()}

    def _score(self, st: _Constant, f: TxFeatures, c: ColumnFeatures) -> Signal | None:
        v, k = c.top
        n = _nonnull(c)
        if st.txs < CONSTANT_HISTORY or v is None or n < CONSTANT_ROWS or k < CONSTANT_SHARE * n:
            return None
        if st.big_const >= 3:  # bulk writes of one value are part of this column's routine
            return None
        q = max(st.counts.get(v, 0.0), 1.0) / max(st.total, 1.0)
        z = binomial_z(k, n, q)
        usual = f"{st.big_const:.0f} of {st.big:.0f} bulk writes" if st.big else "no bulk writes"
        return Signal(
            Kind.constant,
            score(z),
            columns=(c.name,),
            normal=f"{v!r} in {q:.1%} of values; {usual} set one value",
            seen=f"{plural(k, 'row')} of {n:,} set to {v!r}",
            rows=f.rows,
            examples=(v,),
        )


# --- nulls and empties ------------------------------------------------------------


class _Nulls:
    __slots__ = ("written", "empty", "window")

    def __init__(self) -> None:
        self.written = 0.0
        self.empty = 0.0
        self.window = DripWindow()

    def evidence(self, c: ColumnFeatures) -> tuple[int, float]:
        return c.nulls + c.empties, rate(self.empty, self.written) * c.written

    def state(self) -> list[Any]:
        return [self.written, self.empty, self.window.state()]


class NullsDetector(PerColumn[_Nulls]):
    """NULLs or empty strings where a column is rarely empty, at once or dripped over an hour."""

    name = "nulls"
    kinds = frozenset({Kind.nulls, Kind.drip})

    def _new(self) -> _Nulls:
        return _Nulls()

    def _from_state(self, s: Any) -> _Nulls:
        st = _Nulls()
        st.written, st.empty = float(s[0]), float(s[1])
        st.window = DripWindow.from_state(s[2])
        return st

    def _learn(self, st: _Nulls, f: TxFeatures, c: ColumnFeatures) -> None:
        if st.written >= MIN_HISTORY:
            st.window.add(f.commit_us, *st.evidence(c))
        st.written += c.written
        st.empty += c.nulls + c.empties
        if st.written > DECAY_AT:
            st.written, st.empty = st.written / 2, st.empty / 2

    def _score(self, st: _Nulls, f: TxFeatures, c: ColumnFeatures) -> list[Signal] | None:
        if st.written < MIN_HISTORY:
            return None
        k, lam = st.evidence(c)
        if k == 0:
            return None
        z = poisson_z(k, lam)
        dz, dk, dlam = st.window.z(f.commit_us, k, lam)
        normal = f"{st.empty / st.written:.2%} empty ({st.empty:,.0f} of {st.written:,.0f} values)"
        seen = f"{k:,} of {c.written:,} values empty"
        out = [
            Signal(
                Kind.nulls,
                score(z),
                columns=(c.name,),
                normal=normal,
                seen=seen,
                rows=f.rows,
                examples=f.example_keys,
            )
        ]
        if dz > z:
            out.append(
                Signal(
                    Kind.drip,
                    score(dz),
                    columns=(c.name,),
                    normal=f"{dlam:.1f} empty values expected in an hour; {normal}",
                    seen=f"{dk:,.0f} empty values in the last hour",
                    rows=f.rows,
                    examples=f.example_keys,
                )
            )
        return out


# --- category --------------------------------------------------------------------

MAX_CATEGORIES = 50
CATEGORY_WARMUP = 200
"""Values a column needs, with at most ``MAX_CATEGORIES`` distinct, to count as categorical."""
MAX_CATEGORY_LEN = 200
_NOT_CATEGORICAL = (
    "int",
    "smallint",
    "bigint",
    "numeric",
    "decimal",
    "real",
    "double",
    "float",
    "money",
    "serial",
    "oid",
    "timestamp",
    "date",
    "time",
    "interval",
)


class _Category:
    __slots__ = ("seen", "values", "novel", "open")

    def __init__(self) -> None:
        self.seen = 0.0
        self.values: dict[str, float] = {}
        self.novel = 0.0
        """Values written after warm-up that were new then."""
        self.open = False
        """Too many distinct values: not a categorical column; values no longer kept."""

    def unseen(self, c: ColumnFeatures) -> list[tuple[str, int]]:
        return [(v, k) for v, k in c.values if v is not None and v.strip() and v not in self.values]

    def state(self) -> list[Any]:
        return [self.seen, self.novel, self.open, list(self.values.items())]


class CategoryDetector(PerColumn[_Category]):
    """Values never seen before in a low-cardinality (status-like) column."""

    name = "category"
    kinds = frozenset({Kind.category})

    def _columns(self, f: TxFeatures) -> Iterator[ColumnFeatures]:
        return (c for c in f.columns if c.written and not c.type.startswith(_NOT_CATEGORICAL))

    def _new(self) -> _Category:
        return _Category()

    def _from_state(self, s: Any) -> _Category:
        st = _Category()
        st.seen, st.novel, st.open = float(s[0]), float(s[1]), bool(s[2])
        st.values = {str(k): float(v) for k, v in s[3]}
        return st

    def _learn(self, st: _Category, f: TxFeatures, c: ColumnFeatures) -> None:
        st.seen += _nonnull(c)
        if st.seen > DECAY_AT:
            st.seen, st.novel = st.seen / 2, st.novel / 2
        if st.open:
            return
        for v, k in st.unseen(c):
            if st.seen > CATEGORY_WARMUP:
                st.novel += k
            st.values[v] = 0.0
        for w, k in c.values:
            if w is not None and w in st.values:
                st.values[w] += k
        too_long = any(w is not None and len(w) > MAX_CATEGORY_LEN for w, _ in c.values)
        if len(st.values) > MAX_CATEGORIES or c.distinct > len(c.values) or too_long:
            st.open, st.values = True, {}

    def _score(self, st: _Category, f: TxFeatures, c: ColumnFeatures) -> Signal | None:
        if st.open or st.seen < CATEGORY_WARMUP:
            return None
        new = st.unseen(c)
        if not new:
            return None
        k = sum(n for _, n in new)
        z = poisson_z(k, rate(st.novel, st.seen) * _nonnull(c))
        known = sorted(st.values, key=lambda v: (-st.values[v], v))
        shown = ", ".join(known[:5]) + (", …" if len(known) > 5 else "")
        return Signal(
            Kind.category,
            score(z),
            columns=(c.name,),
            normal=f"{len(known)} values seen: {shown}",
            seen=", ".join(f"{v!r} ×{n}" for v, n in new[:5]),
            rows=f.rows,
            examples=tuple(v for v, _ in new[:5]),
        )


# --- timestamps --------------------------------------------------------------------

EPOCH_YEAR = 1971
"""Years at or before this look like a reset to the Unix epoch (or zero)."""
FUTURE_YEARS = 5
"""Years beyond the latest normal value that look like a far-future sentinel."""


class _Years:
    __slots__ = ("n", "odd", "lo", "hi")

    def __init__(self) -> None:
        self.n = 0.0
        self.odd = 0.0
        self.lo = 0
        self.hi = 0

    def is_odd(self, y: int) -> bool:
        return y <= EPOCH_YEAR or y >= self.hi + FUTURE_YEARS

    def state(self) -> list[Any]:
        return [self.n, self.odd, self.lo, self.hi]


class TimestampDetector(PerColumn[_Years]):
    """Timestamps reset to the epoch or set far into the future where the column never had such."""

    name = "timestamp"
    kinds = frozenset({Kind.timestamp})

    def _columns(self, f: TxFeatures) -> Iterator[ColumnFeatures]:
        return (c for c in f.columns if c.years)

    def _new(self) -> _Years:
        return _Years()

    def _from_state(self, s: Any) -> _Years:
        st = _Years()
        st.n, st.odd = float(s[0]), float(s[1])
        st.lo, st.hi = int(s[2]), int(s[3])
        return st

    def _learn(self, st: _Years, f: TxFeatures, c: ColumnFeatures) -> None:
        trained = st.n >= MIN_HISTORY
        for y in c.years:
            if trained and st.is_odd(y):
                st.odd += 1.0
                continue  # a sentinel never moves what "normal years" are
            if st.n == 0 or y < st.lo:
                st.lo = y
            if st.n == 0 or y > st.hi:
                st.hi = y
            st.n += 1.0
        if st.n > DECAY_AT:
            st.n, st.odd = st.n / 2, st.odd / 2

    def _score(self, st: _Years, f: TxFeatures, c: ColumnFeatures) -> Signal | None:
        if st.n < MIN_HISTORY:
            return None
        odd = [y for y in c.years if st.is_odd(y)]
        if not odd:
            return None
        n = len(c.years)  # a capped sample: scale the counts up to what was written
        scale = max(1.0, (_nonnull(c) - c.empties) / n) if n >= MAX_NUMBERS else 1.0
        z = poisson_z(len(odd) * scale, rate(st.odd, st.n + st.odd) * len(c.years) * scale)
        return Signal(
            Kind.timestamp,
            score(z),
            columns=(c.name,),
            normal=f"years {st.lo}–{st.hi}; {st.odd:,.0f} odd of {st.n + st.odd:,.0f} values",
            seen=f"{len(odd)} of {len(c.years)} values in year {odd[0]}",
            rows=f.rows,
            examples=tuple(dict.fromkeys(odd))[:5],
        )


# --- frozen columns -------------------------------------------------------------


class _Frozen:
    __slots__ = ("updates", "changed")

    def __init__(self) -> None:
        self.updates = 0.0
        """Updates with a before-image: only they show which columns changed."""
        self.changed: dict[str, float] = {}


FROZEN_HISTORY = 200


class FrozenDetector:
    """A column that updates with a before-image never changed, now changed."""

    name = "frozen"
    kinds = frozenset({Kind.frozen})

    def __init__(self) -> None:
        self._tables: dict[str, _Frozen] = {}

    def learn_one(self, f: TxFeatures) -> None:
        if not f.updates_with_before:
            return
        t = self._tables.get(f.table)
        if t is None:
            t = self._tables[f.table] = _Frozen()
        t.updates += f.updates_with_before
        for c in f.columns:
            if c.changed:
                t.changed[c.name] = t.changed.get(c.name, 0.0) + c.changed
        if t.updates > DECAY_AT:
            t.updates /= 2
            t.changed = {k: v / 2 for k, v in t.changed.items()}

    def see_one(self, f: TxFeatures) -> None:
        """Nothing recent to count: what stays unchanged is learned only from the normal."""

    def score_one(self, f: TxFeatures) -> list[Signal]:
        t = self._tables.get(f.table)
        if t is None or t.updates < FROZEN_HISTORY or not f.updates_with_before:
            return []
        out = []
        for c in f.columns:
            if not c.changed:
                continue
            was = t.changed.get(c.name, 0.0)
            z = poisson_z(c.changed, rate(was, t.updates) * f.updates_with_before)
            if z > 0:
                out.append(
                    Signal(
                        Kind.frozen,
                        score(z),
                        columns=(c.name,),
                        normal=f"changed by {was:,.0f} of {t.updates:,.0f} updates",
                        seen=f"changed in {plural(c.changed, 'row')}",
                        rows=f.rows,
                        examples=f.example_keys,
                    )
                )
        return out

    def state(self) -> dict[str, Any]:
        return {
            "tables": [[k, t.updates, list(t.changed.items())] for k, t in self._tables.items()]
        }

    def load(self, state: dict[str, Any]) -> None:
        self._tables = {}
        for k, updates, changed in state["tables"]:
            t = self._tables[str(k)] = _Frozen()
            t.updates = float(updates)
            t.changed = {str(c): float(n) for c, n in changed}
