"""Two detectors to compare ours against: the obvious rule and an off-the-shelf model.

``SameHourCount`` is what a monitoring dashboard would do: rows changed per minute on a
table, against the same hour of the day. ``HalfSpaceTreesDetector`` is River's streaming
isolation forest over a small feature vector per transaction. Neither is meant for
production; both follow the ``Detector`` contract so the same engine and evaluation run
them.
"""

from __future__ import annotations

import base64
import math
import pickle
import zlib
from collections import deque
from statistics import median
from typing import Any

from rowback.detect.base import Kind, Signal
from rowback.detect.calibrate import robust_z, score
from rowback.detect.features import TxFeatures
from rowback.errors import RowbackError

IQR_TO_SD = 1.349
"""The interquartile range of a normal distribution, in standard deviations."""
MIN_SD = 0.01
"""Keeps a run of identical raw scores from making any difference an alarm."""
MINUTE_US = 60 * 1_000_000
HOUR_US = 60 * MINUTE_US


class SameHourCount:
    """Rows changed per minute on a table, against that table's minutes in the same hour
    of the day (median and MAD): a transaction scores the minute's count so far.

    The minute's running count is what the stream showed, anomalous transactions
    included (``score_one`` adds each transaction once): a burst of small anomalous
    transactions must add up. Only ``learn_one`` changes the history.
    """

    name = "same_hour_count"
    kinds = frozenset({Kind.volume})

    def __init__(self, keep: int = 500, min_history: int = 20, min_scale: float = 2.0) -> None:
        self.keep = keep
        self.min_history = min_history
        self.min_scale = min_scale
        self.history: dict[str, dict[int, deque[int]]] = {}
        """Per table, per hour of the day: rows of its past (written-to) minutes."""
        self.minute: dict[str, list[int]] = {}
        """Per table: [minute, rows seen in it, rows learned in it, last txid counted]."""

    def _current(self, f: TxFeatures) -> list[int]:
        m = f.commit_us // MINUTE_US
        cur = self.minute.get(f.table)
        if cur is None or cur[0] != m:
            if cur is not None and cur[2] > 0:
                hour = (cur[0] * MINUTE_US // HOUR_US) % 24
                hist = self.history.setdefault(f.table, {})
                hist.setdefault(hour, deque(maxlen=self.keep)).append(cur[2])
            cur = self.minute[f.table] = [m, 0, 0, -1]
        return cur

    def see_one(self, f: TxFeatures) -> None:
        """No short-term counts beyond what it learns (a baseline kept simple)."""

    def score_one(self, f: TxFeatures) -> list[Signal]:
        cur = self._current(f)
        if cur[3] != f.txid:
            cur[1] += f.rows
            cur[3] = f.txid
        hour = (f.commit_us // HOUR_US) % 24
        hist = self.history.get(f.table, {}).get(hour)
        if hist is None or len(hist) < self.min_history:
            return []
        s = score(robust_z(cur[1], list(hist), self.min_scale))
        if s <= 0:
            return []
        med = median(hist)
        return [
            Signal(
                Kind.volume,
                s,
                (),
                f"median {med:g} rows a minute at {hour:02d}:00",
                f"{cur[1]:,} rows this minute",
                f.rows,
            )
        ]

    def learn_one(self, f: TxFeatures) -> None:
        self._current(f)[2] += f.rows

    def state(self) -> dict[str, Any]:
        return {
            "history": {
                t: {str(h): list(d) for h, d in hours.items()} for t, hours in self.history.items()
            },
            "minute": self.minute,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.history = {
            t: {int(h): deque(v, maxlen=self.keep) for h, v in hours.items()}
            for t, hours in state.get("history", {}).items()
        }
        self.minute = {t: [int(x) for x in v] for t, v in state.get("minute", {}).items()}


FEATURES = (
    "rows",
    "inserts",
    "updates",
    "deletes",
    "top_share",
    "null_share",
    "distinct_ratio",
    "hour_sin",
    "hour_cos",
)


def vector(f: TxFeatures) -> dict[str, float]:
    """The transaction as numbers in [0, 1], as Half-Space Trees expects by default."""
    rows = max(f.rows, 1)
    written = [c for c in f.columns if c.written]
    total = sum(c.written for c in written) or 1
    top = max((c.top[1] / c.written for c in written), default=0.0)
    empty = sum(c.nulls + c.empties for c in written) / total
    distinct = sum(c.distinct / c.written for c in written) / len(written) if written else 0.0
    angle = 2 * math.pi * ((f.commit_us // MINUTE_US) % 1440) / 1440
    return {
        "rows": min(math.log1p(f.rows) / math.log1p(100_000), 1.0),
        "inserts": f.inserts / rows,
        "updates": f.updates / rows,
        "deletes": f.deletes / rows,
        "top_share": top if f.rows > 1 else 0.0,
        "null_share": empty,
        "distinct_ratio": distinct,
        "hour_sin": (math.sin(angle) + 1) / 2,
        "hour_cos": (math.cos(angle) + 1) / 2,
    }


class HalfSpaceTreesDetector:
    """River's ``anomaly.HalfSpaceTrees``, one model per table, over ``vector(f)``.

    Its raw score is mapped to the shared scale through quantiles of its own recent
    scores (of transactions it learned): the distance above their median in robust
    standard deviations (interquartile range / 1.349) is the z ``calibrate.score``
    squashes, as our own detectors do with median and MAD. ``state``
    pickles each River model to base64 (River models are not JSON); load it only from
    the store that saved it, as with any pickle.
    """

    name = "half_space_trees"
    kinds = frozenset(Kind)

    def __init__(
        self, n_trees: int = 25, height: int = 6, window: int = 250, recent: int = 1_000
    ) -> None:
        _river()
        self.n_trees, self.height, self.window = n_trees, height, window
        self.recent = recent
        self.models: dict[str, Any] = {}
        self.scores: dict[str, deque[float]] = {}
        self.learned: dict[str, int] = {}

    def _model(self, table: str) -> Any:
        m = self.models.get(table)
        if m is None:
            anomaly = _river()
            m = self.models[table] = anomaly.HalfSpaceTrees(
                n_trees=self.n_trees,
                height=self.height,
                window_size=self.window,
                seed=zlib.crc32(table.encode()),
            )
        return m

    def see_one(self, f: TxFeatures) -> None:
        """No short-term counts beyond what it learns (a baseline kept simple)."""

    def score_one(self, f: TxFeatures) -> list[Signal]:
        recent = self.scores.get(f.table)
        if self.learned.get(f.table, 0) < 2 * self.window or recent is None or len(recent) < 50:
            return []
        raw = float(self._model(f.table).score_one(vector(f)))
        ordered = sorted(recent)
        q25, med, q75, q99 = (_quantile(ordered, q) for q in (0.25, 0.5, 0.75, 0.99))
        s = score((raw - med) / max((q75 - q25) / IQR_TO_SD, MIN_SD))
        if s <= 0:
            return []
        return [
            Signal(
                Kind.volume,
                s,
                (),
                f"isolation score at most {q99:.3f} for 99% of recent transactions",
                f"isolation score {raw:.3f}",
                f.rows,
            )
        ]

    def learn_one(self, f: TxFeatures) -> None:
        m = self._model(f.table)
        x = vector(f)
        if self.learned.get(f.table, 0) >= self.window:
            recent = self.scores.setdefault(f.table, deque(maxlen=self.recent))
            recent.append(float(m.score_one(x)))
        m.learn_one(x)
        self.learned[f.table] = self.learned.get(f.table, 0) + 1

    def state(self) -> dict[str, Any]:
        return {
            "models": {
                t: base64.b64encode(pickle.dumps(m)).decode() for t, m in self.models.items()
            },
            "scores": {t: list(s) for t, s in self.scores.items()},
            "learned": self.learned,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.models = {
            t: pickle.loads(base64.b64decode(b))  # noqa: S301 - our own state, see the class
            for t, b in state.get("models", {}).items()
        }
        self.scores = {
            t: deque((float(x) for x in s), maxlen=self.recent)
            for t, s in state.get("scores", {}).items()
        }
        self.learned = {t: int(n) for t, n in state.get("learned", {}).items()}


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _river() -> Any:
    try:
        from river import anomaly
    except ImportError:
        raise RowbackError(
            "the off-the-shelf comparison needs River: pip install 'rowback[eval]'"
        ) from None
    return anomaly
