"""Deletes spread over time where the table rarely loses rows: a cleanup gone wrong that
removes a few rows every few minutes for hours (slow drip corruption by deletion).

Per table it learns how many rows normal traffic deletes per hour of commit time, and
judges the deletes of the last hour against that rate: ``poisson_z`` of the hour's
count.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from rowback.detect.base import Kind, Signal
from rowback.detect.calibrate import poisson_z, score
from rowback.detect.features import TxFeatures
from rowback.detect.stats import MIN_HISTORY, plural

HOUR_US = 3_600 * 1_000_000
MIN_HOURS = 6.0
"""Hours of history before a table's delete rate means anything."""
FLOOR_PER_HOUR = 0.05
"""The least delete rate assumed: a table never seen deleting still may, now and then."""
MAX_RECENT = 2_000


class _Table:
    __slots__ = ("n", "deleted", "first", "last", "recent")

    def __init__(self) -> None:
        self.n = 0
        self.deleted = 0.0
        self.first = 0
        self.last = 0
        self.recent: deque[tuple[int, int]] = deque(maxlen=MAX_RECENT)

    def hours(self) -> float:
        return (self.last - self.first) / HOUR_US

    def rate(self) -> float:
        return max(self.deleted / max(self.hours(), 1e-9), FLOOR_PER_HOUR)

    def note(self, f: TxFeatures) -> None:
        if f.deletes:
            self.recent.append((f.commit_us, f.deletes))
        while self.recent and self.recent[0][0] <= f.commit_us - HOUR_US:
            self.recent.popleft()

    def hour(self, at: int) -> tuple[int, int]:
        """(rows deleted, transactions) in the hour before ``at``."""
        got = [(t, k) for t, k in self.recent if at - HOUR_US < t <= at]
        return sum(k for _, k in got), len(got)


class DeletesDetector:
    """A drip of deletes far above the table's hourly delete rate."""

    name = "deletes"
    kinds = frozenset({Kind.drip, Kind.volume})

    def __init__(self) -> None:
        self._tables: dict[str, _Table] = {}

    def learn_one(self, f: TxFeatures) -> None:
        t = self._tables.get(f.table)
        if t is None:
            t = self._tables[f.table] = _Table()
            t.first = f.commit_us
        t.n += 1
        t.deleted += f.deletes
        t.last = max(t.last, f.commit_us)
        if t.hours() > 24 * 28:  # four weeks: halve, so the rate follows the table
            t.deleted /= 2
            t.first = t.last - (t.last - t.first) // 2
        t.note(f)

    def see_one(self, f: TxFeatures) -> None:
        """Deletes judged anomalous stay out of the hour's count: a drip's own deletes
        were learned while each looked small, and one big delete (an incident of its own)
        must not make every ordinary delete after it look like a drip."""

    def score_one(self, f: TxFeatures) -> list[Signal]:
        t = self._tables.get(f.table)
        if t is None or not f.deletes or t.n < MIN_HISTORY or t.hours() < MIN_HOURS:
            return []
        k, txs = t.hour(f.commit_us)
        k, txs = k + f.deletes, txs + 1
        lam = t.rate()
        z = poisson_z(k, lam)
        if z <= 0:
            return []
        return [
            Signal(
                Kind.drip if txs > 1 else Kind.volume,
                score(z),
                normal=f"{lam:.2f} rows deleted an hour",
                seen=f"{plural(k, 'row')} deleted in the last hour, "
                f"by {plural(txs, 'transaction')}",
                rows=f.rows,
                examples=f.example_keys,
            )
        ]

    def state(self) -> dict[str, Any]:
        return {
            "tables": [
                [k, [t.n, t.deleted, t.first, t.last, [list(r) for r in t.recent]]]
                for k, t in self._tables.items()
            ]
        }

    def load(self, state: dict[str, Any]) -> None:
        self._tables = {}
        for k, (n, deleted, first, last, recent) in state["tables"]:
            t = _Table()
            t.n, t.deleted, t.first, t.last = int(n), float(deleted), int(first), int(last)
            t.recent.extend((int(a), int(b)) for a, b in recent)
            self._tables[str(k)] = t
