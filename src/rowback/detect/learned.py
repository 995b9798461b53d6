"""Learned detectors (the ``rowback[ml]`` extra): small scikit-learn networks per table.

``AutoencoderDetector`` learns to reconstruct a standardised summary of each transaction
(size, operation mix, value concentration, emptiness, given the hour of day) through a
3-unit bottleneck; a transaction it reconstructs badly is unlike anything learned.
``RateForecaster`` forecasts the next minute's writes from the last ten minutes and the
time of day and week, and flags a minute whose writes run far above the forecast.

Both train in mini-batches with ``partial_fit`` and judge evidence against their own
recent errors: the error of a new point becomes a z against the errors the model made on
points it had not yet trained on (``nets.baseline``: only their upper tail sets the
scale), then ``calibrate.score`` maps it to [0, 1] like every other detector. Both are
seeded and never shuffle, so equal inputs give equal scores and equal state.

State is JSON-able: buffers, statistics and the networks as base64 pickles, which must
only come from the user's own store (see ``nets``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from rowback.detect.base import Kind, Signal
from rowback.detect.calibrate import score
from rowback.detect.features import TxFeatures
from rowback.detect.nets import baseline, clock, fit, forward, freeze, net, thaw
from rowback.detect.stats import US_PER_MINUTE, plural

BATCH = 32
"""Transactions the autoencoder buffers before training: amortises ``partial_fit``'s
fixed cost (~1 ms a call)."""
RATE_BATCH = 120
"""Closed minutes the forecaster buffers before training (idle minutes count too)."""
RECENT = 512
"""Recent out-of-sample errors kept per table: the baseline a new error is judged by."""
MIN_ERRORS = 32


class _PerTable:
    """The ``Detector`` methods of a detector that keeps one model per table."""

    _table: ClassVar[type[_TableCoder] | type[_TableRate]]

    def __init__(self) -> None:
        self._tables: dict[str, _TableCoder | _TableRate] = {}

    def learn_one(self, f: TxFeatures) -> None:
        t = self._tables.get(f.table)
        if t is None:
            t = self._tables[f.table] = self._table()
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
        self._tables = {str(k): self._table.from_state(v) for k, v in state["tables"]}


# --- the autoencoder ------------------------------------------------------------------

FEATURES = (
    "rows",
    "insert share",
    "update share",
    "delete share",
    "top-value share",
    "empty share",
    "distinct ratio",
    "columns written",
    "hour",
    "hour",
)
CONTENT = 8
"""Features reconstructed; the hour of day after them is context only. The day of week
is left out: a network extrapolates wildly on a weekday it has not seen yet, and as the
engine does not learn what alarmed, the first Friday would alarm every Friday after."""
_FEATURE_KIND: tuple[Kind, ...] = (
    *(Kind.oversized, Kind.volume, Kind.volume, Kind.volume),
    *(Kind.constant, Kind.nulls, Kind.constant, Kind.volume),
)
AE_MIN_LEARNED = 200
MIN_SD = 0.1
"""Smallest sd a feature is standardised by: a never-varying feature still has a unit."""
CLIP = 50.0
AE_MIN_SCALE = 0.05


def vector(f: TxFeatures) -> list[float]:
    """The 10 numbers the autoencoder sees for one transaction (see ``FEATURES``)."""
    rows = max(f.rows, 1)
    cols = [c for c in f.columns if c.written]
    total = sum(c.written for c in cols)
    top = max((c.top[1] / c.written for c in cols if c.written > 1), default=0.0)
    empty = sum(c.nulls + c.empties for c in cols) / total if total else 0.0
    distinct = sum(c.distinct for c in cols) / total if total else 0.0
    return [
        math.log1p(f.rows),
        f.inserts / rows,
        f.updates / rows,
        f.deletes / rows,
        top,
        empty,
        distinct,
        math.log1p(len(cols)),
        *clock(f.commit_us)[:2],
    ]


class _TableCoder:
    __slots__ = ("n", "buf", "k", "mean", "m2", "model", "errors", "center", "scale")

    def __init__(self) -> None:
        self.n = 0
        self.buf: list[list[float]] = []
        self.k = 0
        self.mean = np.zeros(len(FEATURES))
        self.m2 = np.zeros(len(FEATURES))
        self.model: Any = None
        self.errors: deque[float] = deque(maxlen=RECENT)
        self.center = 0.0
        self.scale = 1.0

    def _standard(self, x: np.ndarray) -> np.ndarray:
        sd = np.maximum(np.sqrt(self.m2 / max(self.k, 1)), MIN_SD)
        z: np.ndarray = np.clip((x - self.mean) / sd, -CLIP, CLIP)
        z[:, CONTENT:] = x[:, CONTENT:]  # the hour is on the unit circle already
        return z

    def see(self, f: TxFeatures) -> None:
        """An autoencoder judges each transaction alone: nothing recent to count."""

    def learn(self, f: TxFeatures) -> None:
        self.n += 1
        self.buf.append(vector(f))
        if len(self.buf) >= BATCH:
            self._train()

    def _train(self) -> None:
        x = np.array(self.buf)
        self.buf = []
        nb = len(x)
        mb = x.mean(axis=0)
        delta = mb - self.mean  # Chan's batch form of Welford's update
        tot = self.k + nb
        self.mean = self.mean + delta * nb / tot
        self.m2 = self.m2 + ((x - mb) ** 2).sum(axis=0) + delta**2 * self.k * nb / tot
        self.k = tot
        z = self._standard(x)
        if self.model is None:
            self.model = net((8, 3, 8), BATCH)
        else:  # errors on points not yet trained on: an honest baseline
            err = np.sqrt(((forward(self.model, z) - z[:, :CONTENT]) ** 2).mean(axis=1))
            self.errors.extend(float(e) for e in err)
            self.center, self.scale = baseline(self.errors, AE_MIN_SCALE, median=True)
        fit(self.model, z, z[:, :CONTENT])

    def score(self, f: TxFeatures) -> list[Signal]:
        if self.n < AE_MIN_LEARNED or len(self.errors) < MIN_ERRORS:
            return []
        z = self._standard(np.array([vector(f)]))
        sq = ((forward(self.model, z) - z[:, :CONTENT]) ** 2)[0]
        err = math.sqrt(float(sq.mean()))
        zs = (err - self.center) / self.scale
        if zs <= 0:
            return []
        worst = int(np.argmax(sq))
        kind = _FEATURE_KIND[worst]
        columns: tuple[str, ...] = ()
        if kind in (Kind.constant, Kind.nulls):
            cols = [c for c in f.columns if c.written]
            if kind == Kind.constant:
                cols = [c for c in cols if c.written > 1 and c.top[1] / c.written >= 0.5]
            else:
                cols = [c for c in cols if c.nulls + c.empties]
            columns = tuple(c.name for c in cols)
        return [
            Signal(
                kind,
                score(zs),
                columns=columns,
                normal=f"reconstruction error p50 {self.center:.2g}",
                seen=f"error {err:.2g}, mostly {FEATURES[worst]} "
                f"({plural(f.rows, 'row')}; pattern unlike any learned)",
                rows=f.rows,
                examples=f.example_keys,
            )
        ]

    def state(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "buf": self.buf,
            "k": self.k,
            "mean": self.mean.tolist(),
            "m2": self.m2.tolist(),
            "model": None if self.model is None else freeze(self.model),
            "errors": list(self.errors),
            "baseline": [self.center, self.scale],
        }

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> _TableCoder:
        t = cls()
        t.model = thaw(s["model"])
        if t.model is None and s["model"] is not None:
            return t  # saved by another scikit-learn: learn this table again
        t.n, t.k = int(s["n"]), int(s["k"])
        t.buf = [[float(v) for v in row] for row in s["buf"]]
        t.mean = np.array(s["mean"], dtype=np.float64)
        t.m2 = np.array(s["m2"], dtype=np.float64)
        t.errors = deque((float(e) for e in s["errors"]), maxlen=RECENT)
        t.center, t.scale = (float(v) for v in s["baseline"])
        return t


class AutoencoderDetector(_PerTable):
    """Transactions unlike any learned: a per-table bottleneck network reconstructs them
    badly (size, operation mix, constant values, empties, at this hour)."""

    name = "autoencoder"
    kinds = frozenset({Kind.volume, Kind.oversized, Kind.constant, Kind.nulls})
    _table = _TableCoder


# --- the rate forecaster -------------------------------------------------------------

LAGS = 10
"""Past minutes the forecast reads."""
MAX_GAP = 60
"""Idle minutes filled in with zeros after a gap, at most: bounds the work of one call."""
RATE_MIN_MINUTES = 60
RATE_MIN_SCALE = 0.3
"""Smallest scale of log1p(writes) residuals: a perfectly regular table is not brittle."""


def _closed(minute: int, count: int, until: int) -> tuple[list[int], list[float]]:
    """The minutes closed when a write arrives in minute ``until``: ``minute`` itself
    (``count`` writes) and the idle minutes just before ``until``, with their log1p counts."""
    idle = min(until - minute - 1, MAX_GAP)
    return [minute, *range(until - idle, until)], [math.log1p(count)] + [0.0] * idle


def _inputs(hist: Sequence[float], minutes: Sequence[int], ys: Sequence[float]) -> np.ndarray:
    """Forecast inputs for each of ``minutes``: the ``LAGS`` values before it (``hist``
    then ``ys``) and its time of day and week."""
    h = list(hist)
    xs = []
    for m, y in zip(minutes, ys, strict=True):
        xs.append(h[-LAGS:] + clock(m * US_PER_MINUTE))
        h.append(y)
    return np.array(xs)


class _TableRate:
    __slots__ = (
        *("minute", "count", "inserts", "hist", "seen", "bad", "bad_inserts"),
        *("h0", "pm", "py", "model", "resid", "scale"),
    )

    def __init__(self) -> None:
        self.minute = -1
        self.count = 0
        self.inserts = 0
        self.hist = [0.0] * LAGS
        self.seen = 0
        self.bad = 0
        """Rows of this minute judged anomalous: they count in its rate, never in training."""
        self.bad_inserts = 0
        self.h0 = [0.0] * LAGS
        """The history before the first untrained minute: with ``pm`` and ``py`` it
        rebuilds the training inputs, so pending minutes cost two numbers each."""
        self.pm: list[int] = []
        self.py: list[float] = []
        self.model: Any = None
        self.resid: deque[float] = deque(maxlen=RECENT)
        self.scale = 1.0
        """Residuals at the 95th percentile are 1.645 scales above the forecast."""

    def learn(self, f: TxFeatures) -> None:
        self._roll(f.commit_us // US_PER_MINUTE)
        self.count += f.rows
        self.inserts += f.inserts

    def see(self, f: TxFeatures) -> None:
        self._roll(f.commit_us // US_PER_MINUTE)
        self.bad += f.rows
        self.bad_inserts += f.inserts

    def _roll(self, m: int) -> None:
        if self.minute < 0:
            self.minute = m
        if m > self.minute:
            ms, ys = _closed(self.minute, self.count, m)
            if self.model is not None:  # residuals of a forecast made before training on them
                pred = forward(self.model, _inputs(self.hist, ms, ys))[:, 0]
                self.resid.extend(float(r) for r in np.array(ys) - pred)
            if not self.py:
                self.h0 = self.hist
            self.hist = (self.hist + ys)[-LAGS:]
            self.seen += len(ys)
            self.pm += ms
            self.py += ys
            self.minute, self.count, self.inserts = m, 0, 0
            self.bad = self.bad_inserts = 0
            if len(self.py) >= RATE_BATCH:
                self._train()

    def _train(self) -> None:
        if self.model is None:
            self.model = net((16, 8), RATE_BATCH)
        fit(self.model, _inputs(self.h0, self.pm, self.py), np.array(self.py))
        self.pm, self.py = [], []
        if self.resid:
            self.scale = baseline(self.resid, RATE_MIN_SCALE, median=False)[1]

    def score(self, f: TxFeatures) -> list[Signal]:
        if self.seen < RATE_MIN_MINUTES or len(self.resid) < MIN_ERRORS:
            return []
        m = max(f.commit_us // US_PER_MINUTE, self.minute)
        if m == self.minute:
            hist = self.hist
            count = self.count + self.bad + f.rows
            inserts = self.inserts + self.bad_inserts + f.inserts
        else:
            hist = self.hist + _closed(self.minute, self.count, m)[1]
            count, inserts = f.rows, f.inserts
        x = np.array([hist[-LAGS:] + clock(m * US_PER_MINUTE)])
        pred = float(forward(self.model, x)[0, 0])
        z = (math.log1p(count) - pred) / self.scale
        if z <= 0:
            return []
        kind = Kind.insert_flood if 2 * inserts > count else Kind.volume
        expect = math.expm1(max(pred, 0.0))
        return [
            Signal(
                kind,
                score(z),
                normal=f"forecast ~{expect:,.1f} writes/min",
                seen=f"{plural(count, 'write')} this minute",
                rows=f.rows,
                examples=f.example_keys,
            )
        ]

    def state(self) -> dict[str, Any]:
        return {
            "minute": [self.minute, self.count, self.inserts, self.seen],
            "bad": [self.bad, self.bad_inserts],
            "hist": self.hist,
            "pending": [self.h0, self.pm, self.py],
            "model": None if self.model is None else freeze(self.model),
            "resid": list(self.resid),
            "scale": self.scale,
        }

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> _TableRate:
        t = cls()
        t.model = thaw(s["model"])
        if t.model is None and s["model"] is not None:
            return t  # saved by another scikit-learn: learn this table again
        t.minute, t.count, t.inserts, t.seen = (int(v) for v in s["minute"])
        t.bad, t.bad_inserts = (int(v) for v in s.get("bad", [0, 0]))
        t.hist = [float(v) for v in s["hist"]]
        h0, pm, py = s["pending"]
        t.h0 = [float(v) for v in h0]
        t.pm = [int(v) for v in pm]
        t.py = [float(v) for v in py]
        t.resid = deque((float(r) for r in s["resid"]), maxlen=RECENT)
        t.scale = float(s["scale"])
        return t


class RateForecaster(_PerTable):
    """Writes per minute far above a forecast from the last ten minutes and the time of
    day and week (a sequence model: a runaway job or an insert flood as it happens)."""

    name = "rate_forecast"
    kinds = frozenset({Kind.volume, Kind.insert_flood})
    _table = _TableRate
