"""The small, bounded summaries the statistical detectors share.

Every summary here is deterministic, costs O(1) or O(bins) per call (no sorting of long
histories), stays a few KB however long the stream, and round-trips through JSON exactly
(``state`` / ``from_state``): floats survive ``json`` unchanged and keys are rebuilt in
the order they were saved, so a reloaded detector scores exactly as the original.

The detectors themselves live in ``stats_volume`` (volume, oversized, insert flood,
runaway), ``stats_values`` (constant, nulls, category, timestamp, frozen) and
``stats_outlier`` (numeric outliers); ``registry.default_detectors`` lists them all.

Counts over time (rows per minute, rewrites within five minutes, an hour's drip) include
only transactions passed to ``learn_one``. Under the engine's learning gate an alarm from
one of them stays at about the level where it first crossed the threshold, since nothing
after that is learned; a detector that sees every transaction sees the count grow.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

from rowback.detect.base import Kind, Signal
from rowback.detect.calibrate import MAD_TO_SD, poisson_z
from rowback.detect.features import ColumnFeatures, TxFeatures

MIN_HISTORY = 50
"""Observations a baseline needs before it may raise an alarm: no alarms from cold start."""
TAIL_EXCUSE = 3.0
"""A size seen this many times in a seasonal baseline (this hour) is normal there."""
US_PER_MINUTE = 60_000_000
US_PER_HOUR = 3_600_000_000
_THURSDAY = 72
"""1970-01-01 was a Thursday: shifting by 3 days makes hour 0 of the week Monday 00:00."""


def hour_of_day(us: int) -> int:
    """The UTC hour of a commit time in µs.

    >>> hour_of_day(2 * US_PER_HOUR + 5)
    2
    """
    return (us // US_PER_HOUR) % 24


def hour_of_week(us: int) -> int:
    """Hours since Monday 00:00 UTC (0–167).

    >>> hour_of_week(0)  # Thursday 1970-01-01 00:00
    72
    """
    return (us // US_PER_HOUR + _THURSDAY) % 168


def rate(k: float, n: float) -> float:
    """Events per trial with half an event of prior: never seen in ``n`` trials is ~1/2n.

    >>> rate(0, 999)
    0.0005
    """
    return (k + 0.5) / (n + 1.0)


def plural(n: float, unit: str) -> str:
    """``n`` formatted with thousands separators and a plural unit.

    >>> plural(10000, "row"), plural(1, "row")
    ('10,000 rows', '1 row')
    """
    return f"{n:,.0f} {unit}" if round(n) == 1 else f"{n:,.0f} {unit}s"


def number(x: float) -> str:
    """A value as people read it: ``25,000``, ``2.5``, ``-3``.

    >>> number(25000.0), number(2.5), number(-3.0)
    ('25,000', '2.5', '-3')
    """
    return f"{x:,.0f}" if x == int(x) and abs(x) < 1e15 else f"{x:,.4g}"


def binomial_z(k: int, n: int, q: float) -> float:
    """How surprising ``k`` of ``n`` rows sharing a value is when a row has it with
    probability ``q``, as a z (signed root of the binomial likelihood ratio).

    >>> round(binomial_z(20, 20, 0.4), 1)
    6.1
    """
    if n <= 0 or k <= n * q:
        return 0.0
    q = min(max(q, 1e-9), 1.0 - 1e-9)
    p = k / n
    s = k * math.log(p / q)
    if k < n:
        s += (n - k) * math.log((1.0 - p) / (1.0 - q))
    return math.sqrt(2.0 * max(s, 0.0))


class LogHist:
    """Counts of ``log1p(x)`` in bins of 1/8 (a ~13% step), for sizes and rates.

    Median, MAD, quantiles and tail counts walk the occupied bins (a few dozen at most),
    so no history is ever sorted. Past ``cap`` observations every count halves: old
    behaviour fades and the summary stays small.

    >>> h = LogHist()
    >>> for x in [1, 2, 3, 2, 1, 2]:
    ...     h.add(x)
    >>> round(math.expm1(h.quantile(0.5)))
    2
    """

    __slots__ = ("counts", "n", "cap", "_keys", "_spread")
    BINS = 8.0

    def __init__(self, cap: float = 4000.0) -> None:
        self.counts: dict[int, float] = {}
        self.n = 0.0
        self.cap = cap
        self._keys: list[int] = []
        """The occupied bins in order (derived from ``counts``; kept, not re-sorted)."""
        self._spread: tuple[float, float] | None = None
        """(median, MAD) until the next ``add``: per-minute baselines change once a
        minute but are asked about every transaction."""

    def add(self, x: float) -> None:
        b = round(math.log1p(max(x, 0.0)) * self.BINS)
        self._spread = None
        got = self.counts.get(b)
        if got is None:
            insort(self._keys, b)
            got = 0.0
        self.counts[b] = got + 1.0
        self.n += 1.0
        if self.n > self.cap:
            self.counts = {k: c / 2 for k, c in self.counts.items() if c >= 1 / 32}
            self.n = sum(self.counts.values())
            self._keys = sorted(self.counts)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile, in log1p space."""
        target = q * self.n
        acc = 0.0
        counts = self.counts
        for b in self._keys:
            acc += counts[b]
            if acc >= target:
                return b / self.BINS
        return self._keys[-1] / self.BINS if self._keys else 0.0

    def z(self, x: float, min_scale: float) -> float:
        """Robust z of ``log1p(x)``: distance from the median in MAD-based sds."""
        spread = self._spread
        if spread is None:
            med = self.quantile(0.5)
            spread = self._spread = (med, self._mad(med))
        med, mad = spread
        return (math.log1p(max(x, 0.0)) - med) / max(mad * MAD_TO_SD, min_scale)

    def _mad(self, med: float) -> float:
        """The median absolute deviation from ``med`` (a bin), in log1p space: the bins
        walked outwards from the median, nearest first, both sides of a distance at once."""
        keys, counts = self._keys, self.counts
        half = 0.5 * self.n
        mb = med * self.BINS
        hi = bisect_left(keys, mb)
        lo = hi - 1
        acc = 0.0
        while lo >= 0 or hi < len(keys):
            dl = mb - keys[lo] if lo >= 0 else math.inf
            dh = keys[hi] - mb if hi < len(keys) else math.inf
            d = min(dl, dh)
            step = 0.0
            if dh == d:
                step += counts[keys[hi]]
                hi += 1
            if dl == d:
                step = counts[keys[lo]] + step if dh == d else counts[keys[lo]]
                lo -= 1
            acc += step
            if acc >= half:
                return d / self.BINS
        return 0.0

    def tail(self, x: float, slack: float = math.log(2.0)) -> float:
        """Observations at least ``x / e**slack``-ish: how often this size was seen."""
        lo = (math.log1p(max(x, 0.0)) - slack) * self.BINS
        return sum(c for b, c in self.counts.items() if b >= lo)

    def describe(self, unit: str) -> str:
        """``median 3 rows (p99 12)``."""
        med = math.expm1(self.quantile(0.5))
        p99 = math.expm1(self.quantile(0.99))
        return f"median {plural(med, unit)} (p99 {p99:,.0f})"

    def state(self) -> list[Any]:
        return [self.n, self.cap, [[b, c] for b, c in self.counts.items()]]

    @classmethod
    def from_state(cls, s: list[Any]) -> LogHist:
        h = cls(float(s[1]))
        h.n = float(s[0])
        h.counts = {int(b): float(c) for b, c in s[2]}
        h._keys = sorted(h.counts)
        h._spread = None
        return h


def least_surprise(
    plain: LogHist | None, seasonal: list[LogHist | None], x: float, min_scale: float
) -> tuple[float, LogHist, bool] | None:
    """The least surprising z of ``x`` among the baselines that have enough data.

    A plain baseline counts once it has ``MIN_HISTORY`` observations. A seasonal one
    (this hour of the day or week) excuses ``x`` outright once it saw that size
    ``TAIL_EXCUSE`` times, so a recurring batch job is normal at its hour; with enough
    data it also gives its own z. Returns (z, baseline, excused) or None when none
    qualifies.
    """
    for s in seasonal:  # an excuse first: it makes every z moot (and most sizes have one)
        if s is not None and s.tail(x) >= TAIL_EXCUSE:
            return (0.0, s, True)
    best: tuple[float, LogHist, bool] | None = None
    if plain is not None and plain.n >= MIN_HISTORY:
        best = (plain.z(x, min_scale), plain, False)
    for s in seasonal:
        if s is None:
            continue
        if s.n >= MIN_HISTORY:
            z = s.z(x, min_scale)
            if best is None or z < best[0]:
                best = (z, s, False)
    return best


class Sample:
    """A bounded, deterministic reservoir of a column's numbers, kept sorted too.

    Reservoir sampling (algorithm R) over the last ``SEEN_CAP``-ish values, driven by a
    64-bit LCG whose state is saved: quantiles are O(1) reads of the sorted copy and an
    update is a bisect plus a memmove.
    """

    __slots__ = ("slots", "sorted", "seen", "rng", "size", "version")
    SEEN_CAP = 20_000
    _MUL = 6364136223846793005
    _INC = 1442695040888963407
    _MASK = (1 << 64) - 1

    def __init__(self, size: int = 256, seed: int = 0x5EED) -> None:
        self.slots: list[float] = []
        self.sorted: list[float] = []
        self.seen = 0
        self.rng = seed
        self.size = size
        self.version = 0
        """Bumped whenever ``sorted`` changes, so summaries of it can be cached."""

    def add(self, x: float) -> None:
        self.seen = min(self.seen + 1, self.SEEN_CAP)
        if len(self.slots) < self.size:
            self.slots.append(x)
            insort(self.sorted, x)
            self.version += 1
            return
        self.rng = (self.rng * self._MUL + self._INC) & self._MASK
        j = (self.rng >> 33) % self.seen
        if j < self.size:
            old = self.slots[j]
            self.slots[j] = x
            del self.sorted[bisect_left(self.sorted, old)]
            insort(self.sorted, x)
            self.version += 1

    def quantile(self, q: float) -> float:
        s = self.sorted
        return s[min(len(s) - 1, int(q * len(s)))]

    def state(self) -> list[Any]:
        return [self.seen, self.rng, self.size, self.slots]

    @classmethod
    def from_state(cls, s: list[Any]) -> Sample:
        r = cls(int(s[2]), int(s[1]))
        r.seen = int(s[0])
        r.slots = [float(x) for x in s[3]]
        r.sorted = sorted(r.slots)
        return r


class DripWindow:
    """Per-minute sums of small evidence (count seen, count expected, transactions with
    evidence) over the last hour of commit time: 60 buckets at most.

    Each transaction's evidence may be too small to alarm; the hour's sum against the
    hour's expectation (``poisson_z``) shows a slow drip.
    """

    __slots__ = ("buckets",)
    MINUTES = 60

    def __init__(self) -> None:
        self.buckets: deque[list[float]] = deque()

    def add(self, us: int, k: float, lam: float) -> None:
        m = float(us // US_PER_MINUTE)
        k, lam = float(k), float(lam)
        b = self.buckets
        if b and b[-1][0] >= m:
            last = b[-1]
            last[1] += k
            last[2] += lam
            last[3] += 1.0 if k > 0 else 0.0
        else:
            b.append([m, k, lam, 1.0 if k > 0 else 0.0])
        while b and b[0][0] <= m - self.MINUTES:
            b.popleft()

    def z(self, us: int, k: float, lam: float) -> tuple[float, float, float]:
        """(z, events, expected) of the last hour plus this transaction's ``k``/``lam``;
        z is 0 unless this transaction and at least two earlier ones carry evidence."""
        m = us // US_PER_MINUTE
        kk, ll, hits = k, lam, 0.0
        for bm, bk, bl, bh in self.buckets:
            if bm > m - self.MINUTES:
                kk += bk
                ll += bl
                hits += bh
        if k <= 0 or hits < 2:
            return 0.0, kk, ll
        return poisson_z(kk, ll), kk, ll

    def state(self) -> list[Any]:
        return [list(b) for b in self.buckets]

    @classmethod
    def from_state(cls, s: list[Any]) -> DripWindow:
        w = cls()
        w.buckets = deque([float(x) for x in b] for b in s)
        return w


DECAY_AT = 1e6
"""Counters halve past this many values, so the baseline follows slow change."""


class _ColumnState(Protocol):
    def state(self) -> Any: ...


S = TypeVar("S", bound=_ColumnState)


class PerColumn(Generic[S]):
    """Per (table, column) state with the JSON plumbing; subclasses judge one column."""

    name: str
    kinds: frozenset[Kind]

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, S]] = {}

    def _new(self) -> S:
        raise NotImplementedError

    def _from_state(self, s: Any) -> S:
        raise NotImplementedError

    def _learn(self, st: S, f: TxFeatures, c: ColumnFeatures) -> None:
        raise NotImplementedError

    def _score(self, st: S, f: TxFeatures, c: ColumnFeatures) -> Signal | list[Signal] | None:
        raise NotImplementedError

    def _columns(self, f: TxFeatures) -> Iterator[ColumnFeatures]:
        return (c for c in f.columns if c.written)

    def learn_one(self, f: TxFeatures) -> None:
        cols = self._tables.setdefault(f.table, {})
        for c in self._columns(f):
            st = cols.get(c.name)
            if st is None:
                st = cols[c.name] = self._new()
            self._learn(st, f, c)

    def see_one(self, f: TxFeatures) -> None:
        """Per-column detectors keep no count of recent activity beyond their drip
        windows, which hold evidence below the alert threshold by design."""

    def score_one(self, f: TxFeatures) -> list[Signal]:
        cols = self._tables.get(f.table)
        if not cols:
            return []
        out: list[Signal] = []
        for c in self._columns(f):
            st = cols.get(c.name)
            if st is not None:
                got = self._score(st, f, c)
                sigs = [got] if isinstance(got, Signal) else got or []
                out.extend(s for s in sigs if s.score > 0)
        return out

    def state(self) -> dict[str, Any]:
        return {
            "tables": [
                [t, [[c, s.state()] for c, s in cols.items()]] for t, cols in self._tables.items()
            ]
        }

    def load(self, state: dict[str, Any]) -> None:
        self._tables = {
            str(t): {str(c): self._from_state(s) for c, s in cols} for t, cols in state["tables"]
        }
