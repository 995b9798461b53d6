"""How well a set of detectors catches labelled bad writes: precision, recall, latency.

``evaluate`` replays a stream through an ``Engine`` in batches at transaction boundaries,
as the store feeds it, and matches the incidents it opened to the injected ``Label``s: an
incident detects every label it shares a transaction with, and one sharing none is a
false alarm. Per kind, precision counts the incidents that found a label of that kind
against those plus the false alarms the engine named with that kind.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from statistics import median
from typing import Any

import orjson

from rowback.detect.base import Detector
from rowback.detect.engine import Engine
from rowback.detect.scenario import DAY_US, Label, Scenario
from rowback.errors import RowbackError
from rowback.model import Change
from rowback.store.base import Incident

BATCH = 1_000
"""Changes per ``observe`` call (the store's typical write)."""
COLUMNS = [
    "kind",
    "labels",
    "detected",
    "precision",
    "recall",
    "f1",
    "latency_p50_s",
    "latency_max_s",
]


class EvalRules:
    """The engine's rules for an evaluation: one threshold, no maintenance, alert only."""

    def __init__(self, threshold: float = 0.8) -> None:
        self._threshold = threshold

    def threshold(self, table: str) -> float:
        return self._threshold

    def critical(self, table: str) -> bool:
        return False

    def in_maintenance(self, table: str, at_us: int) -> bool:
        return False

    def decide(self, table: str, score: float, severity: str) -> tuple[str, str, str]:
        return "alert_only", "open", f"score {score:.2f} over {self._threshold}"


@dataclass(frozen=True, slots=True)
class KindRow:
    """The figures for one kind (or ``all``)."""

    kind: str
    labels: int
    detected: int
    precision: float | None
    """None when no incident was named with this kind."""
    recall: float | None
    f1: float | None
    latency_p50_s: float | None
    latency_max_s: float | None

    def cells(self) -> list[Any]:
        return [getattr(self, c) for c in COLUMNS]


@dataclass(slots=True)
class Report:
    """Per-kind figures, the overall row and the false alarms of one detector set."""

    name: str
    days: float
    kinds: list[KindRow]
    overall: KindRow
    incidents: int
    false_alarms: int
    false_alarms_per_day: float
    false_alarms_per_week: float
    seconds: float
    """Wall time of the replay."""
    false_alarm_examples: list[str] = field(default_factory=list)
    false_alarm_patterns: dict[str, int] = field(default_factory=dict)
    """False alarms by table, kind and hour of the day, most frequent first: a recurring
    job shows up as one pattern a day."""

    def rows(self) -> list[list[Any]]:
        """One row per kind then ``all``, in ``COLUMNS`` order."""
        return [r.cells() for r in [*self.kinds, self.overall]]

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()


def batches(changes: Sequence[Change], size: int = BATCH) -> list[Sequence[Change]]:
    """``changes`` cut into runs of at least ``size`` that end at a transaction's end."""
    out: list[Sequence[Change]] = []
    start = 0
    for i in range(1, len(changes) + 1):
        if i == len(changes) or (i - start >= size and changes[i].txid != changes[i - 1].txid):
            out.append(changes[start:i])
            start = i
    return out


def replay(
    changes: Sequence[Change],
    engine: Engine,
    source: str = "eval",
    size: int = BATCH,
    dismiss: Callable[[Incident], bool] | None = None,
) -> list[Incident]:
    """Feed ``changes`` to ``engine`` as the store would; every incident it opened.

    ``dismiss`` plays the person reviewing incidents: after each batch, the new or grown
    incidents it returns True for are dismissed (which teaches the engine their pattern).
    """
    seen: dict[int, Incident] = {}
    for batch in batches(changes, size):
        for inc in engine.observe(batch, source, {}):
            seen[inc.id] = inc
            if dismiss is not None and dismiss(inc):
                inc.status, inc.reason = "dismissed", "a legitimate job"
                engine.changed(inc)
    return sorted(seen.values(), key=lambda i: i.id)


def evaluate(
    changes: Sequence[Change],
    labels: Sequence[Label],
    make_engine: Callable[[], Engine],
    *,
    name: str = "",
    days: float | None = None,
    since_us: int | None = None,
    review: bool = False,
) -> Report:
    """Replay ``changes`` through a new engine and score its incidents against ``labels``.

    ``days`` (default: the span of the commit times) turns false alarms into rates;
    incidents that began before ``since_us`` (a warm-up) are not false alarms. With
    ``review``, a person dismisses the false alarms of the warm-up as they appear, as
    one would when setting Rowback up (the recurring jobs are then learned).
    """
    t0 = time.perf_counter()
    every: frozenset[int] = frozenset().union(*(lab.txids for lab in labels))
    warmup = since_us if since_us is not None else -1

    def dismiss(inc: Incident) -> bool:
        return inc.first_us < warmup and not every.intersection(inc.txids)

    incidents = replay(changes, make_engine(), dismiss=dismiss if review else None)
    seconds = time.perf_counter() - t0
    if days is None:
        span = changes[-1].commit_us - changes[0].commit_us if changes else 0
        days = max(span / DAY_US, 1e-9)
    hits: list[list[Incident]] = [[] for _ in labels]
    false: list[Incident] = []
    for inc in incidents:
        ids = set(inc.txids)
        found = [n for n, lab in enumerate(labels) if ids & lab.txids]
        for n in found:
            hits[n].append(inc)
        if not found and (since_us is None or inc.first_us >= since_us):
            false.append(inc)
    kinds = sorted({lab.kind.value for lab in labels})
    rows = [_row(k, labels, hits, false) for k in kinds]
    overall = _row("all", labels, hits, false)
    return Report(
        name=name,
        days=round(days, 3),
        kinds=rows,
        overall=overall,
        incidents=len(incidents),
        false_alarms=len(false),
        false_alarms_per_day=round(len(false) / days, 3),
        false_alarms_per_week=round(7 * len(false) / days, 3),
        seconds=round(seconds, 2),
        false_alarm_examples=[i.explanation for i in false[:5]],
        false_alarm_patterns=dict(Counter(_pattern(i) for i in false).most_common()),
    )


def _pattern(inc: Incident) -> str:
    hour = (inc.first_us // 3_600_000_000) % 24
    return f"{','.join(inc.tables)} {inc.kind} at {hour:02d}h"


def _row(
    kind: str,
    labels: Sequence[Label],
    hits: list[list[Incident]],
    false: list[Incident],
) -> KindRow:
    """The figures for the labels of ``kind`` (``all``: every label)."""
    chosen = [n for n, lab in enumerate(labels) if kind in ("all", lab.kind.value)]
    detected = [n for n in chosen if hits[n]]
    true_ids = {inc.id for n in chosen for inc in hits[n]}
    false_n = sum(1 for inc in false if kind in ("all", inc.kind))
    named = len(true_ids) + false_n
    precision = len(true_ids) / named if named else None
    recall = len(detected) / len(chosen) if chosen else None
    f1 = None
    if precision is not None and recall is not None and precision + recall > 0:
        f1 = 2 * precision * recall / (precision + recall)
    lat = [max(0, min(i.detected_us for i in hits[n]) - labels[n].first_us) / 1e6 for n in detected]
    return KindRow(
        kind=kind,
        labels=len(chosen),
        detected=len(detected),
        precision=_r(precision),
        recall=_r(recall),
        f1=_r(f1),
        latency_p50_s=_r(median(lat)) if lat else None,
        latency_max_s=_r(max(lat)) if lat else None,
    )


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


SETS = ("rowback", "baseline", "hst")
"""The detector sets ``rowback eval`` compares."""


def detector_set(name: str) -> Callable[[], Sequence[Detector]]:
    """The factory of one named detector set (imported only when asked for)."""
    if name == "rowback":
        try:
            from rowback.detect.registry import default_detectors
        except ImportError:
            raise RowbackError("this build has no rowback.detect.registry") from None
        return default_detectors
    if name == "baseline":
        from rowback.detect.baselines import SameHourCount

        return lambda: [SameHourCount()]
    if name == "hst":
        from rowback.detect.baselines import HalfSpaceTreesDetector

        HalfSpaceTreesDetector()  # fails now, with the install hint, when River is missing
        return lambda: [HalfSpaceTreesDetector()]
    raise RowbackError(f"unknown detector set {name!r}: expected one of {', '.join(SETS)}")


def available(name: str) -> str | None:
    """Why detector set ``name`` cannot run here, or None when it can."""
    try:
        detector_set(name)
    except RowbackError as e:
        return str(e)
    return None


def compare(
    scenario: Scenario, names: Sequence[str], threshold: float = 0.8, review: bool = False
) -> list[Report]:
    """One report per detector set over the same scenario; warm-up alarms not counted
    (``review``: dismissed as they appear, see ``evaluate``)."""
    reports = []
    for name in names:
        factory = detector_set(name)
        reports.append(
            evaluate(
                scenario.changes,
                scenario.labels,
                partial(Engine, factory, EvalRules(threshold)),
                name=name,
                days=scenario.days,
                since_us=scenario.warmup_us,
                review=review,
            )
        )
    return reports
