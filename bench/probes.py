"""A store wrapper that times every ``write``: how often capture writes, how big, how long."""

from __future__ import annotations

import time
from typing import Any

from bench.harness import percentile


class TimedStore:
    """Delegates to a store; records (seconds, changes, end time, oldest-change lag) of
    every ``write``. The oldest-change lag is ``now - commit time of the first change``
    written: how stale the store was for the change that waited longest."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.writes: list[tuple[float, int, float, float]] = []

    def write(self, changes: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return self._store.write(changes, *args, **kwargs)
        finally:
            now = time.time()
            oldest = now - changes[0].commit_us / 1e6 if changes else float("nan")
            self.writes.append((time.perf_counter() - t, len(changes), now, oldest))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def summary(self, skip: int = 0) -> dict[str, float]:
        """Write count, changes per write, write time p50/p99/max and total (after ``skip``)."""
        w = self.writes[skip:]
        secs = [x[0] for x in w]
        sizes = [float(x[1]) for x in w]
        return {
            "writes": len(w),
            "empty_writes": sum(1 for x in w if x[1] == 0),
            "changes_per_write_p50": percentile(sizes, 50),
            "write_ms_p50": percentile(secs, 50) * 1000,
            "write_ms_p99": percentile(secs, 99) * 1000,
            "write_ms_max": max(secs, default=0.0) * 1000,
            "write_s_total": sum(secs),
        }


class CoalescingStore:
    """EXPERIMENT ONLY: hold changes until ``every`` seconds have passed since the last
    real write, then write them all with the latest position.

    It answers "what if capture wrote at most every N seconds?" without touching src/.
    It breaks capture's contract (a position is confirmed upstream before it is durable),
    so it is never for real use. Lag is measured here, at the real writes.
    """

    def __init__(self, store: Any, every: float) -> None:
        self._store = store
        self.every = every
        self._held: list[Any] = []
        self._position: Any = None
        self._source: Any = None
        self._last = time.monotonic()
        self.lags: list[tuple[float, float]] = []  # (time, now - last commit) per real write

    def write(self, changes: Any, source: Any, position: Any, *args: Any, **kwargs: Any) -> Any:
        from rowback.model import WriteStats

        if args or kwargs:  # snapshot writes and the like: straight through
            self.flush()
            return self._store.write(changes, source, position, *args, **kwargs)
        self._held.extend(changes)
        self._source, self._position = source, dict(position)
        if time.monotonic() - self._last < self.every:
            return WriteStats()
        return self.flush()

    def flush(self) -> Any:
        from rowback.model import WriteStats

        if self._position is None:
            return WriteStats()
        held, self._held = self._held, []
        stats = self._store.write(held, self._source, self._position)
        self._last = time.monotonic()
        if held:
            now = time.time()
            self.lags.append((now, now - held[-1].commit_us / 1e6))
        return stats

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
