"""How much was written: transaction size, rows and inserts per minute, rewritten rows.

``VolumeDetector`` keeps, per table, the sizes of its transactions (overall, per
statement shape, and per shape and hour of day) and the rows and inserts of each minute
(overall, per hour of day, per hour of week). It scores a transaction against the least
surprising baseline with enough data, so a nightly 50,000-row job is normal at 02:00
once seen there a few times, yet the same size at 14:00 still alarms.

``RunawayDetector`` counts how often the same set of rows was rewritten within the last
five minutes of commit time, against how often that normally happens for key sets of
that size (one hot counter row being updated all day is normal once learned).
"""

from __future__ import annotations

import math
from typing import Any

from rowback.detect.base import Kind, Signal
from rowback.detect.calibrate import score
from rowback.detect.features import TxFeatures
from rowback.detect.stats import (
    MIN_HISTORY,
    TAIL_EXCUSE,
    US_PER_MINUTE,
    LogHist,
    hour_of_day,
    hour_of_week,
    least_surprise,
    plural,
)

MAX_SHAPES = 32
"""Statement shapes remembered per table (least recently seen are forgotten first)."""
SIZE_MIN_SCALE = 0.5
"""Smallest sd of log1p(rows) per transaction: a perfectly regular table is not brittle."""
MINUTE_MIN_SCALE = 0.4
MINUTE_SHARE = 5
"""A transaction adds at most this many rows, or twice the table's p99 transaction size,
to its minute's count: ``oversized`` judges a big transaction by itself, and a nightly
job's three 1,000-row statements must not make the next one-row order a volume alarm,
while a flood of ordinary transactions still counts in full."""


def _hists_state(d: dict[int, LogHist]) -> list[Any]:
    return [[k, h.state()] for k, h in d.items()]


def _hists_load(s: list[Any]) -> dict[int, LogHist]:
    return {int(k): LogHist.from_state(h) for k, h in s}


def _hist(d: dict[int, LogHist], key: int, cap: float) -> LogHist:
    h = d.get(key)
    if h is None:
        h = d[key] = LogHist(cap)
    return h


class _Shape:
    __slots__ = ("all", "hours")

    def __init__(self) -> None:
        self.all = LogHist()
        self.hours: dict[int, LogHist] = {}

    def state(self) -> list[Any]:
        return [self.all.state(), _hists_state(self.hours)]

    @classmethod
    def from_state(cls, s: list[Any]) -> _Shape:
        sh = cls()
        sh.all = LogHist.from_state(s[0])
        sh.hours = _hists_load(s[1])
        return sh


class _PerMinute:
    """One per-minute count (rows or inserts) overall, per hour of day, per hour of week."""

    __slots__ = ("all", "hod", "how")

    def __init__(self) -> None:
        self.all = LogHist()
        self.hod: dict[int, LogHist] = {}
        self.how: dict[int, LogHist] = {}

    def add(self, minute: int, x: float) -> None:
        us = minute * US_PER_MINUTE
        self.all.add(x)
        _hist(self.hod, hour_of_day(us), 2000.0).add(x)
        _hist(self.how, hour_of_week(us), 1000.0).add(x)

    def judge(self, us: int, x: float) -> tuple[float, LogHist, bool] | None:
        seasonal = [self.hod.get(hour_of_day(us)), self.how.get(hour_of_week(us))]
        return least_surprise(self.all, seasonal, x, MINUTE_MIN_SCALE)

    def state(self) -> list[Any]:
        return [self.all.state(), _hists_state(self.hod), _hists_state(self.how)]

    @classmethod
    def from_state(cls, s: list[Any]) -> _PerMinute:
        p = cls()
        p.all = LogHist.from_state(s[0])
        p.hod, p.how = _hists_load(s[1]), _hists_load(s[2])
        return p


class _TableVolume:
    __slots__ = (
        "sizes",
        "size_hours",
        "shapes",
        "minute",
        "m_rows",
        "m_inserts",
        "m_bad",
        "m_bad_inserts",
        "rows",
        "ins",
    )

    def __init__(self) -> None:
        self.sizes = LogHist()
        self.size_hours: dict[int, LogHist] = {}
        self.shapes: dict[str, _Shape] = {}
        self.minute = -1
        self.m_rows = 0
        self.m_inserts = 0
        self.m_bad = 0
        """Rows of this minute judged anomalous: counted in the minute, never folded."""
        self.m_bad_inserts = 0
        self.rows = _PerMinute()
        self.ins = _PerMinute()

    def learn(self, f: TxFeatures) -> None:
        h = hour_of_day(f.commit_us)
        self.sizes.add(f.rows)
        _hist(self.size_hours, h, 2000.0).add(f.rows)
        sh = self.shapes.pop(f.shape, None) or _Shape()
        self.shapes[f.shape] = sh  # re-inserted: dict order is least recently seen first
        if len(self.shapes) > MAX_SHAPES:
            del self.shapes[next(iter(self.shapes))]
        sh.all.add(f.rows)
        _hist(sh.hours, h, 1000.0).add(f.rows)
        share = self._share()
        self._roll(f)
        self.m_rows += min(f.rows, share)
        self.m_inserts += min(f.inserts, share)

    def see(self, f: TxFeatures) -> None:
        share = self._share()
        self._roll(f)
        self.m_bad += min(f.rows, share)
        self.m_bad_inserts += min(f.inserts, share)

    def _share(self) -> int:
        """The most rows one transaction adds to its minute (``MINUTE_SHARE``)."""
        if self.sizes.n < MIN_HISTORY:
            return 1 << 62
        return max(MINUTE_SHARE, math.ceil(2 * math.expm1(self.sizes.quantile(0.99))))

    def _roll(self, f: TxFeatures) -> None:
        m = f.commit_us // US_PER_MINUTE
        if m > self.minute:
            self._fold()
            self.minute, self.m_rows, self.m_inserts = m, 0, 0
            self.m_bad = self.m_bad_inserts = 0

    def _fold(self) -> None:
        if self.m_rows:
            self.rows.add(self.minute, self.m_rows)
        if self.m_inserts:
            self.ins.add(self.minute, self.m_inserts)

    def score(self, f: TxFeatures) -> list[Signal]:
        if self.sizes.n < MIN_HISTORY:
            return []
        out = []
        size = self._oversized(f)
        if size is not None:
            out.append(size)
        same = f.commit_us // US_PER_MINUTE <= self.minute
        share = self._share()
        rows = min(f.rows, share) + (self.m_rows + self.m_bad if same else 0)
        got = self.rows.judge(f.commit_us, rows)
        if got is not None and got[0] > 0:
            out.append(self._signal(Kind.volume, f, got, rows, "row", "per minute"))
        if f.inserts:
            ins = min(f.inserts, share) + (self.m_inserts + self.m_bad_inserts if same else 0)
            got = self.ins.judge(f.commit_us, ins)
            if got is not None and got[0] > 0:
                out.append(self._signal(Kind.insert_flood, f, got, ins, "insert", "per minute"))
        return out

    def _oversized(self, f: TxFeatures) -> Signal | None:
        h = hour_of_day(f.commit_us)
        sh = self.shapes.get(f.shape)
        got = None
        if sh is not None:
            got = least_surprise(sh.all, [sh.hours.get(h)], f.rows, SIZE_MIN_SCALE)
        if got is None:  # a new or rare shape: judge it against the whole table
            got = least_surprise(self.sizes, [self.size_hours.get(h)], f.rows, SIZE_MIN_SCALE)
        if got is None or got[0] <= 0:
            return None
        return self._signal(Kind.oversized, f, got, f.rows, "row", "per transaction")

    @staticmethod
    def _signal(
        kind: Kind, f: TxFeatures, got: tuple[float, LogHist, bool], x: int, unit: str, per: str
    ) -> Signal:
        z, base, excused = got
        normal = base.describe(unit) + f" {per}"
        if excused:
            normal += ", seen at this hour before"
        return Signal(
            kind,
            score(z),
            normal=normal,
            seen=f"{plural(x, unit)} {per.replace('per ', 'this ')}",
            rows=f.rows,
            examples=f.example_keys,
        )

    def state(self) -> dict[str, Any]:
        return {
            "sizes": self.sizes.state(),
            "size_hours": _hists_state(self.size_hours),
            "shapes": [[k, s.state()] for k, s in self.shapes.items()],
            "minute": [self.minute, self.m_rows, self.m_inserts, self.m_bad, self.m_bad_inserts],
            "rows": self.rows.state(),
            "inserts": self.ins.state(),
        }

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> _TableVolume:
        t = cls()
        t.sizes = LogHist.from_state(s["sizes"])
        t.size_hours = _hists_load(s["size_hours"])
        t.shapes = {str(k): _Shape.from_state(v) for k, v in s["shapes"]}
        minute = [int(x) for x in s["minute"]] + [0, 0]
        t.minute, t.m_rows, t.m_inserts, t.m_bad, t.m_bad_inserts = minute[:5]
        t.rows = _PerMinute.from_state(s["rows"])
        t.ins = _PerMinute.from_state(s["inserts"])
        return t


class VolumeDetector:
    """Oversized transactions, unusual rows per minute, insert floods (seasonal-aware)."""

    name = "volume"
    kinds = frozenset({Kind.volume, Kind.oversized, Kind.insert_flood})

    def __init__(self) -> None:
        self._tables: dict[str, _TableVolume] = {}

    def learn_one(self, f: TxFeatures) -> None:
        t = self._tables.get(f.table)
        if t is None:
            t = self._tables[f.table] = _TableVolume()
        t.learn(f)

    def score_one(self, f: TxFeatures) -> list[Signal]:
        t = self._tables.get(f.table)
        return t.score(f) if t is not None else []

    def see_one(self, f: TxFeatures) -> None:
        t = self._tables.get(f.table)
        if t is not None:
            t.see(f)

    def state(self) -> dict[str, Any]:
        return {"tables": [[k, t.state()] for k, t in self._tables.items()]}

    def load(self, state: dict[str, Any]) -> None:
        self._tables = {str(k): _TableVolume.from_state(v) for k, v in state["tables"]}


RUNAWAY_WINDOW_US = 5 * US_PER_MINUTE
MAX_KEYSETS = 512
"""Key sets remembered per table (least recently written forgotten first)."""
MAX_TIMES = 12
"""Rewrite times kept per key set: enough to tell 'again and again'."""
AGAIN_FLOOR = 0.015
"""The least chance assumed of a repeated rewrite: 3 writes in 5 minutes stay below the
alert (z 2.9), 6 score 0.8."""


def _size_class(rows: int) -> int:
    """0 for one row, 1 for 2–9 rows, 2 for 10–99, …: a hot single row (a counter updated
    all day) is judged apart from sets of rows.

    >>> _size_class(1), _size_class(3), _size_class(50), _size_class(50_000)
    (0, 1, 2, 5)
    """
    return 0 if rows <= 1 else len(str(rows))


class _TableRunaway:
    __slots__ = ("recent", "classes", "n")

    def __init__(self) -> None:
        self.recent: dict[str, list[int]] = {}
        self.classes: dict[int, list[float]] = {}
        """Size class -> transactions by rewrites seen within the window (0..MAX_TIMES)."""
        self.n = 0.0

    def rewrites(self, f: TxFeatures) -> int:
        times = self.recent.get(f.key_digest)
        if not times:
            return 0
        lo = f.commit_us - RUNAWAY_WINDOW_US
        return sum(1 for t in times if lo < t <= f.commit_us)

    def again(self, rows: int, r: int) -> tuple[float, float]:
        """(share of transactions on key sets of this size that were a second or later
        rewrite within the window, transactions that saw at least ``r`` rewrites)."""
        hist = self.classes.get(_size_class(rows), [])
        p = (sum(hist[2:]) + 0.5) / (sum(hist) + 1.0)
        return min(max(p, AGAIN_FLOOR), 0.9), sum(hist[r:])

    def learn(self, f: TxFeatures) -> None:
        r = self.rewrites(f)
        hist = self.classes.setdefault(_size_class(f.updates + f.deletes), [0.0] * (MAX_TIMES + 1))
        hist[r] += 1.0
        if sum(hist) > 100_000:
            hist[:] = [c / 2 for c in hist]
        self.n = min(self.n + 1.0, 1e9)
        self.see(f)

    def see(self, f: TxFeatures) -> None:
        """Remember when these rows were written (a rewrite counts whoever judged it)."""
        times = self.recent.pop(f.key_digest, [])
        lo = f.commit_us - RUNAWAY_WINDOW_US
        times = [t for t in times if t > lo][-(MAX_TIMES - 1) :]
        times.append(f.commit_us)
        self.recent[f.key_digest] = times
        while len(self.recent) > MAX_KEYSETS:
            del self.recent[next(iter(self.recent))]

    def state(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "classes": [[k, list(v)] for k, v in self.classes.items()],
            "recent": [[k, list(v)] for k, v in self.recent.items()],
        }

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> _TableRunaway:
        t = cls()
        t.n = float(s["n"])
        t.classes = {int(k): [float(x) for x in v] for k, v in s["classes"]}
        t.recent = {str(k): [int(x) for x in v] for k, v in s["recent"]}
        return t


class RunawayDetector:
    """The same rows rewritten again and again within five minutes (a runaway loop)."""

    name = "runaway"
    kinds = frozenset({Kind.runaway})

    def __init__(self) -> None:
        self._tables: dict[str, _TableRunaway] = {}

    def learn_one(self, f: TxFeatures) -> None:
        if not f.key_digest:
            return
        t = self._tables.get(f.table)
        if t is None:
            t = self._tables[f.table] = _TableRunaway()
        t.learn(f)

    def see_one(self, f: TxFeatures) -> None:
        t = self._tables.get(f.table)
        if t is not None and f.key_digest:
            t.see(f)

    def score_one(self, f: TxFeatures) -> list[Signal]:
        t = self._tables.get(f.table)
        if t is None or not f.key_digest or t.n < MIN_HISTORY:
            return []
        r = t.rewrites(f)
        rows = f.updates + f.deletes
        p, tail = t.again(rows, r)
        if r < 2 or tail >= TAIL_EXCUSE:  # once is a workflow; this many is routine here
            return []
        # each rewrite beyond the first is a further rare event: -ln P = (r - 1) ln(1/p)
        z = math.sqrt(2.0 * (r - 1) * math.log(1.0 / p))
        return [
            Signal(
                Kind.runaway,
                score(z),
                normal=f"{p:.1%} of rewritten sets of {plural(rows, 'row')} are rewritten "
                "again within 5 minutes",
                seen=f"the same {plural(rows, 'row')} written {r + 1} times within 5 minutes",
                rows=f.rows,
                examples=f.example_keys,
            )
        ]

    def state(self) -> dict[str, Any]:
        return {"tables": [[k, t.state()] for k, t in self._tables.items()]}

    def load(self, state: dict[str, Any]) -> None:
        self._tables = {str(k): _TableRunaway.from_state(v) for k, v in state["tables"]}
