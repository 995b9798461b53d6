"""The service's status is computed once per store write however often it is polled, and
an answer never misses a write that ended before it was asked for."""

from __future__ import annotations

import threading
from pathlib import Path

from rowback.api.context import ServiceContext
from rowback.store.duckdb.store import DuckDBStore
from rowback.views import with_live


def test_status_is_cached_per_write_and_never_stale(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "store")
    ctx = ServiceContext(store, "token")
    store.write([], "pg", {"lsn": 100})
    first = ctx.stored_status()
    assert [d["position"] for d in first] == ["0/64"]
    assert ctx.stored_status() is first  # no write since: the same answer, not recomputed
    store.write([], "pg", {"lsn": 200})
    again = ctx.stored_status()
    assert again is not first and [d["position"] for d in again] == ["0/C8"]
    docs = with_live(again, {"pg": {"state": "streaming", "lag_s": 0.1}, "other": {}})
    assert [(d["source"], d["state"], d["lag_s"]) for d in docs] == [
        ("other", "stopped", None),
        ("pg", "streaming", 0.1),
    ]
    assert docs[1]["idle_s"] is not None and docs[1]["last_write"].endswith("Z")
    store.close()


def test_pollers_during_writes_always_see_the_writes_ended_before_they_asked(
    tmp_path: Path,
) -> None:
    store = DuckDBStore(tmp_path / "store")
    ctx = ServiceContext(store, "token")
    done = threading.Event()
    stale: list[tuple[int, str]] = []
    written = [0]

    def writer() -> None:
        for lsn in range(1, 200):
            store.write([], "pg", {"lsn": lsn})
            written[0] = lsn
        done.set()

    def poller() -> None:
        while not done.is_set():
            floor = written[0]
            docs = ctx.stored_status()
            got = int(docs[0]["position"].split("/")[1], 16) if docs else 0
            if got < floor:
                stale.append((floor, docs[0]["position"]))

    pollers = [threading.Thread(target=poller) for _ in range(3)]
    threads = [threading.Thread(target=writer), *pollers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not stale, stale[:5]
    store.close()
