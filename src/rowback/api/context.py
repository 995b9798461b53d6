"""What the routers need from the service: the store to read and how to describe it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rowback.store.base import Snapshot, Store


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

    def snapshot(self) -> Snapshot:
        return self.store.snapshot(self.query_limit)
