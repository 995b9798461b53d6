"""Learned detectors (the ``rowback[ml]`` extra): small scikit-learn networks per table.

``AutoencoderDetector`` learns to reconstruct a standardised summary of each transaction
(size, operation mix, value concentration, emptiness, time of day and week) through a
3-unit bottleneck; a transaction it reconstructs badly is unlike anything learned.
``RateForecaster`` forecasts the next minute's writes from the last ten minutes and the
time of day and week, and flags a minute whose writes run far above the forecast.

Both train in mini-batches with ``partial_fit`` and judge evidence against their own
recent errors: the error of a new point is a robust z against the errors the model made
on points it had not yet trained on, then ``calibrate.score`` maps it to [0, 1] like
every other detector. Inference is a plain numpy forward pass over the fitted weights
(``predict`` validates its input on every call, which costs ten times the maths).

State is JSON-able: the networks are pickled and base64-encoded. Pickle runs code when
loaded, so detector state must only ever come from the user's own store, which holds it
beside the changes it learned from; it is never read from anywhere else.
"""

from __future__ import annotations

import base64
import math
import pickle
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sklearn.neural_network import MLPRegressor

from rowback.detect.base import Kind, Signal
from rowback.detect.calibrate import score
from rowback.detect.features import TxFeatures
from rowback.detect.stats import US_PER_MINUTE, plural

SEED = 0
BATCH = 32
"""Transactions the autoencoder buffers before training: amortises ``partial_fit``'s
fixed cost (~1 ms a call)."""
RATE_BATCH = 120
"""Closed minutes the forecaster buffers before training (idle minutes count too)."""
STEPS = 8
"""Adam steps per training round."""
RECENT = 512
"""Recent out-of-sample errors kept per table: the baseline a new error is judged by."""
MIN_ERRORS = 32
US_PER_DAY = 24 * 60 * US_PER_MINUTE
_MONDAY_SHIFT = 3
"""1970-01-01 was a Thursday: shifting by 3 days puts Monday at 0."""
_Q95_Z = 1.6449


def _net(hidden: tuple[int, ...], batch: int) -> Any:
    """One seeded network taking ``STEPS`` steps per ``partial_fit`` of ``batch`` points;
    no shuffling, so training depends only on the points and their order."""
    return MLPRegressor(
        hidden_layer_sizes=hidden,
        random_state=SEED,
        batch_size=batch // STEPS,
        learning_rate_init=0.003,  # 0.01 oscillates: a cluster it forgets, it never relearns
        shuffle=False,
    )


def _forward(model: Any, x: np.ndarray) -> np.ndarray:
    """What ``model.predict`` computes (ReLU hidden layers, identity output), in 2-D."""
    h = x
    last = len(model.coefs_) - 1
    for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        h = h @ w + b
        if i < last:
            h = np.maximum(h, 0.0)
    return h


def _fit(model: Any, x: np.ndarray, y: np.ndarray) -> None:
    model.partial_fit(x, y)
    model.loss_curve_ = model.loss_curve_[-1:]  # it grows by one per call: keep state bounded


def _plain(v: Any) -> Any:
    """Numpy scalars as Python ones (pickle memoises numpy scalars, Python floats not)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _parts(obj: Any) -> dict[str, bytes]:
    # One pickle per attribute: pickle records objects shared between attributes as
    # back-references, and which small objects happen to be shared differs between a
    # model and its reloaded copy, so one pickle of the whole would not be reproducible.
    # No attribute of a fitted MLPRegressor aliases another (the optimizer is handed
    # the weights on each update), so nothing is lost.
    return {k: pickle.dumps(_plain(v), protocol=5) for k, v in vars(obj).items()}


def _unparts(cls: Any, parts: dict[str, bytes]) -> Any:
    obj = cls.__new__(cls)
    obj.__dict__.update({k: pickle.loads(b) for k, b in parts.items()})  # trusted state
    return obj


def freeze(model: Any) -> str:
    """A fitted network as a base64 pickle, byte-identical for equal models.

    Trusted data only: see the module docstring.
    """
    opt = model.__dict__.get("_optimizer")
    parts = _parts(model)
    parts.pop("_optimizer", None)
    opt_parts = None if opt is None else (type(opt), _parts(opt))
    return base64.b64encode(pickle.dumps((parts, opt_parts), protocol=5)).decode("ascii")


def thaw(blob: str) -> Any:
    """The network ``freeze`` encoded (from the user's own store only)."""
    parts, opt_parts = pickle.loads(base64.b64decode(blob))  # trusted state
    model = _unparts(MLPRegressor, parts)
    if opt_parts is not None:
        model._optimizer = _unparts(*opt_parts)
    return model


def baseline(values: Iterable[float], min_scale: float, median: bool) -> tuple[float, float]:
    """(centre, scale) of past errors: the centre is their median, or 0 when ``median``
    is false (residuals of a forecast are measured from the forecast itself); the scale
    is how far the 95th percentile lies above the centre, in sds of a normal.

    Only excess is ever anomalous, so only the upper tail sets the scale: a history that
    is mostly idle minutes (residuals piled just below 0) cannot make busy ones extreme.

    >>> baseline([0.0, 1.0, 2.0, 3.0, 4.0], 0.1, median=True)
    (2.0, 1.094...)
    """
    a = np.fromiter(values, dtype=np.float64)
    centre = float(np.median(a)) if median else 0.0
    return centre, max((float(np.quantile(a, 0.95)) - centre) / _Q95_Z, min_scale)


def clock(us: int) -> list[float]:
    """Hour of day and day of week as points on two circles (23:59 is next to 00:00).

    >>> [round(x, 3) for x in clock(0)]  # Thursday 00:00
    [0.0, 1.0, 0.434, -0.901]
    """
    day = us / US_PER_DAY
    hod = 2 * math.pi * (day % 1.0)
    dow = 2 * math.pi * (((day + _MONDAY_SHIFT) % 7.0) / 7.0)
    return [math.sin(hod), math.cos(hod), math.sin(dow), math.cos(dow)]


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
        z[:, CONTENT:] = x[:, CONTENT:]  # already on the unit circle; standardising would
        return z  # stretch a weekday not seen yet far outside what was learned

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
            self.model = _net((8, 3, 8), BATCH)
        else:  # errors on points not yet trained on: an honest baseline
            err = np.sqrt(((_forward(self.model, z) - z[:, :CONTENT]) ** 2).mean(axis=1))
            self.errors.extend(float(e) for e in err)
            self.center, self.scale = baseline(self.errors, AE_MIN_SCALE, median=True)
        _fit(self.model, z, z[:, :CONTENT])

    def score(self, f: TxFeatures) -> list[Signal]:
        if self.n < AE_MIN_LEARNED or len(self.errors) < MIN_ERRORS:
            return []
        z = self._standard(np.array([vector(f)]))
        sq = ((_forward(self.model, z) - z[:, :CONTENT]) ** 2)[0]
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
        t.n, t.k = int(s["n"]), int(s["k"])
        t.buf = [[float(v) for v in row] for row in s["buf"]]
        t.mean = np.array(s["mean"], dtype=np.float64)
        t.m2 = np.array(s["m2"], dtype=np.float64)
        t.model = None if s["model"] is None else thaw(s["model"])
        t.errors = deque((float(e) for e in s["errors"]), maxlen=RECENT)
        t.center, t.scale = (float(v) for v in s["baseline"])
        return t


class AutoencoderDetector:
    """Transactions unlike any learned: a per-table bottleneck network reconstructs them
    badly (size, operation mix, constant values, empties, an unusual hour)."""

    name = "autoencoder"
    kinds = frozenset({Kind.volume, Kind.oversized, Kind.constant, Kind.nulls})

    def __init__(self) -> None:
        self._tables: dict[str, _TableCoder] = {}

    def learn_one(self, f: TxFeatures) -> None:
        t = self._tables.get(f.table)
        if t is None:
            t = self._tables[f.table] = _TableCoder()
        t.learn(f)

    def score_one(self, f: TxFeatures) -> list[Signal]:
        t = self._tables.get(f.table)
        return t.score(f) if t is not None else []

    def state(self) -> dict[str, Any]:
        return {"tables": [[k, t.state()] for k, t in self._tables.items()]}

    def load(self, state: dict[str, Any]) -> None:
        self._tables = {str(k): _TableCoder.from_state(v) for k, v in state["tables"]}


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
        *("minute", "count", "inserts", "hist", "seen"),
        *("h0", "pm", "py", "model", "resid", "scale"),
    )

    def __init__(self) -> None:
        self.minute = -1
        self.count = 0
        self.inserts = 0
        self.hist = [0.0] * LAGS
        self.seen = 0
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
        m = f.commit_us // US_PER_MINUTE
        if self.minute < 0:
            self.minute = m
        if m > self.minute:
            ms, ys = _closed(self.minute, self.count, m)
            if self.model is not None:  # residuals of a forecast made before training on them
                pred = _forward(self.model, _inputs(self.hist, ms, ys))[:, 0]
                self.resid.extend(float(r) for r in np.array(ys) - pred)
            if not self.py:
                self.h0 = self.hist
            self.hist = (self.hist + ys)[-LAGS:]
            self.seen += len(ys)
            self.pm += ms
            self.py += ys
            self.minute, self.count, self.inserts = m, 0, 0
            if len(self.py) >= RATE_BATCH:
                self._train()
        self.count += f.rows
        self.inserts += f.inserts

    def _train(self) -> None:
        if self.model is None:
            self.model = _net((16, 8), RATE_BATCH)
        _fit(self.model, _inputs(self.h0, self.pm, self.py), np.array(self.py))
        self.pm, self.py = [], []
        if self.resid:
            self.scale = baseline(self.resid, RATE_MIN_SCALE, median=False)[1]

    def score(self, f: TxFeatures) -> list[Signal]:
        if self.seen < RATE_MIN_MINUTES or len(self.resid) < MIN_ERRORS:
            return []
        m = max(f.commit_us // US_PER_MINUTE, self.minute)
        if m == self.minute:
            hist, count, inserts = self.hist, self.count + f.rows, self.inserts + f.inserts
        else:
            hist = self.hist + _closed(self.minute, self.count, m)[1]
            count, inserts = f.rows, f.inserts
        x = np.array([hist[-LAGS:] + clock(m * US_PER_MINUTE)])
        pred = float(_forward(self.model, x)[0, 0])
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
            "hist": self.hist,
            "pending": [self.h0, self.pm, self.py],
            "model": None if self.model is None else freeze(self.model),
            "resid": list(self.resid),
            "scale": self.scale,
        }

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> _TableRate:
        t = cls()
        t.minute, t.count, t.inserts, t.seen = (int(v) for v in s["minute"])
        t.hist = [float(v) for v in s["hist"]]
        h0, pm, py = s["pending"]
        t.h0 = [float(v) for v in h0]
        t.pm = [int(v) for v in pm]
        t.py = [float(v) for v in py]
        t.model = None if s["model"] is None else thaw(s["model"])
        t.resid = deque((float(r) for r in s["resid"]), maxlen=RECENT)
        t.scale = float(s["scale"])
        return t


class RateForecaster:
    """Writes per minute far above a forecast from the last ten minutes and the time of
    day and week (a sequence model: a runaway job or an insert flood as it happens)."""

    name = "rate_forecast"
    kinds = frozenset({Kind.volume, Kind.insert_flood})

    def __init__(self) -> None:
        self._tables: dict[str, _TableRate] = {}

    def learn_one(self, f: TxFeatures) -> None:
        t = self._tables.get(f.table)
        if t is None:
            t = self._tables[f.table] = _TableRate()
        t.learn(f)

    def score_one(self, f: TxFeatures) -> list[Signal]:
        t = self._tables.get(f.table)
        return t.score(f) if t is not None else []

    def state(self) -> dict[str, Any]:
        return {"tables": [[k, t.state()] for k, t in self._tables.items()]}

    def load(self, state: dict[str, Any]) -> None:
        self._tables = {str(k): _TableRate.from_state(v) for k, v in state["tables"]}
