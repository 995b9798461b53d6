"""What the routers need from the service: the store to read and how to describe it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rowback.store.base import Snapshot, Store
from rowback.views import stored_status

READ_SLOTS = 2
"""Reads running at once. Capture shares the process (and Python's GIL) with them: on a
small machine, many concurrent reads would starve it, so the rest wait their turn."""


@dataclass
class ServiceContext:
    store: Store
    token: str
    query_limit: float = 60.0
    """Seconds a read may take before it is interrupted."""
    live: Callable[[], dict[str, dict[str, Any]]] = lambda: {}
    """Per source, what only the running capture knows (lag, source WAL, readiness)."""
    ready: Callable[[], bool] = lambda: True
    """Whether capture has started streaming (its snapshot is done)."""
    source_dsn: str | None = None
    """The PostgreSQL source's DSN, when capture reads one: whatif's default target."""
    policy: Any = None
    """The policy detection runs under (``rowback.policy.Policy``; None: not detecting)."""

    slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(READ_SLOTS)
    )
    reverting: threading.Lock = field(default_factory=threading.Lock)
    """Held by the revert in progress: one at a time."""
    _status_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _status: tuple[int, list[dict[str, Any]]] | None = field(default=None, init=False)

    def snapshot(self) -> Snapshot:
        return self.store.snapshot(self.query_limit)

    def stored_status(self) -> list[dict[str, Any]]:
        """The store's part of status, computed once per write however often it is asked.

        Status is what supervisors and dashboards poll, some many times a second; each
        computation costs a snapshot and a count per table (~10 ms here), and 100 a
        second starved capture by seconds. Pollers arriving together share one
        computation. The write count is read first, so a cached answer is never older
        than the writes it is kept for."""
        with self._status_lock:
            gen = self.store.generation
            if self._status is None or self._status[0] != gen:
                snap = self.snapshot()
                try:
                    self._status = (gen, stored_status(snap.reader))
                finally:
                    snap.close()
            return self._status[1]
