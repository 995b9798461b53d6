"""NATS JetStream and Redis Streams end to end, against real servers and the real store."""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import nats
import pytest
import redis
from dbz_events import event, line
from dbz_streams import publish, xadd_all
from helpers import free_port

from rowback.errors import RowbackError
from rowback.sources.debezium.nats import ingest_nats
from rowback.sources.debezium.redis import ingest_redis
from rowback.store.duckdb.store import DuckDBStore
from rowback.when import AtLsn

BAD = b'{"op": "c", "after": {"id": '


def bodies(n: int, bad_at: int) -> list[bytes]:
    """``n`` insert events (ids 1..n, one transaction per 10); a truncated one at ``bad_at``."""
    out = []
    for i in range(1, n + 1):
        ev = event("c", {"id": i, "v": f"v{i}"}, txid=100 + i // 10, lsn=i, ts_ms=1_700_000_000_000)
        out.append(BAD if i == bad_at else line(ev))
    return out


async def consumer_state(url: str, stream: str, durable: str) -> tuple[int, int]:
    nc = await nats.connect(url)
    info = await nc.jetstream().consumer_info(stream, durable)
    await nc.close()
    return info.num_pending or 0, info.num_ack_pending or 0


def check_store(store: DuckDBStore, n: int, bad_at: int, location: str) -> list[Any]:
    assert store.sql("SELECT count(*) FROM h_1") == [(n - 1,)]
    ids = sorted(r[0] for r in store.asof("public.orders", AtLsn(n)).rows)
    assert ids == [i for i in range(1, n + 1) if i != bad_at]
    q = list(store.quarantined().rows)
    assert [(r[2], r[4].split(":")[0]) for r in q] == [(location, "json")]
    return q


def test_nats_end_to_end(nats_server: str, store_path: Path) -> None:
    stream = f"S{secrets.token_hex(4)}"
    asyncio.run(publish(nats_server, stream, bodies(2500, bad_at=1234)))
    with DuckDBStore(store_path) as store:
        report = ingest_nats(store, nats_server, stream, f"{stream}.>", once=True, idle=0.5)
        assert (report.events, report.quarantined) == (2499, 1)
        assert report.errors[0].startswith(f"{stream}:1234: json: not valid JSON")
        (q,) = check_store(store, 2500, 1234, stream)
        assert (q[3], q[5]) == (1234, BAD.decode())
        assert store.position("debezium")["nats"] == {stream: 2500}  # type: ignore[index]
        assert asyncio.run(consumer_state(nats_server, stream, "rowback")) == (0, 0)
        again = ingest_nats(store, nats_server, stream, f"{stream}.>", once=True, idle=0.5)
        assert (again.events, again.quarantined, again.skipped) == (0, 0, 0)


def test_nats_store_behind_the_consumer_catches_up(nats_server: str, tmp_path: Path) -> None:
    """Messages delivered but never written (a crash before the write) come again at once,
    in order, because the durable is recreated at the store's position."""
    stream = f"S{secrets.token_hex(4)}"
    asyncio.run(publish(nats_server, stream, bodies(300, bad_at=-1)))
    with DuckDBStore(tmp_path / "a") as store:
        ingest_nats(store, nats_server, stream, f"{stream}.>", once=True, idle=0.3, batch=100)

    async def steal(n: int) -> None:  # deliver n more without acking, as a dead consumer would
        nc = await nats.connect(nats_server)
        js = nc.jetstream()
        await js.publish(f"{stream}.x", line(event("c", {"id": 301}, txid=9999, lsn=301)))
        sub = await js.pull_subscribe_bind(durable="rowback", stream=stream)
        assert len(await sub.fetch(n, timeout=2)) == n
        await nc.close()

    asyncio.run(steal(1))
    with DuckDBStore(tmp_path / "a") as store:
        report = ingest_nats(store, nats_server, stream, f"{stream}.>", once=True, idle=0.3)
        assert report.events == 1
        assert store.sql("SELECT count(*) FROM h_1") == [(301,)]
    with DuckDBStore(tmp_path / "b") as store:  # a new store re-reads the whole stream
        report = ingest_nats(store, nats_server, stream, f"{stream}.>", once=True, idle=0.3)
        assert report.events == 301


def test_redis_end_to_end(redis_server: str, store_path: Path) -> None:
    key = f"s{secrets.token_hex(4)}"
    xadd_all(redis_server, key, bodies(2500, bad_at=777))
    client = redis.Redis.from_url(redis_server)
    client.xadd(key, {"other": b"x"})
    with DuckDBStore(store_path) as store:
        report = ingest_redis(store, redis_server, key, once=True, idle=0.3)
        assert (report.events, report.quarantined) == (2499, 2)
        assert store.sql("SELECT count(*) FROM h_1") == [(2499,)]
        q = list(store.quarantined().rows)
        assert [r[2] for r in q] == [key, key] and q[0][4].split(": ")[1] == "json"
        assert q[1][4].endswith("value: missing (the entry has other)")
        assert q[0][4].startswith("entry ") and q[0][5] == BAD.decode()
        assert client.xpending(key, "rowback")["pending"] == 0
        again = ingest_redis(store, redis_server, key, once=True, idle=0.3)
        assert (again.events, again.quarantined, again.skipped) == (0, 0, 0)


def test_redis_own_pending_entries(redis_server: str, store_path: Path) -> None:
    """Pending entries already in the store are acknowledged, not written twice; pending
    entries not yet written are written once."""
    key = f"s{secrets.token_hex(4)}"
    xadd_all(redis_server, key, bodies(200, bad_at=-1))
    client = redis.Redis.from_url(redis_server)
    with DuckDBStore(store_path) as store:
        ingest_redis(store, redis_server, key, once=True, idle=0.3, batch=50)
        xadd_all(redis_server, key, [line(event("c", {"id": 201}, txid=999, lsn=201))])
        client.xgroup_setid(key, "rowback", "0")  # as if nothing had been acknowledged...
        got = client.xreadgroup("rowback", "rowback-1", {key: ">"}, count=1000)
        assert len(got[0][1]) == 201  # ...and all were delivered again, the last one unwritten
        report = ingest_redis(store, redis_server, key, once=True, idle=0.3, batch=50)
        assert (report.events, report.skipped) == (1, 200)
        assert store.sql("SELECT count(*) FROM h_1") == [(201,)]
        assert client.xpending(key, "rowback")["pending"] == 0


def test_stop_flag_ends_a_long_running_consumer(redis_server: str, store_path: Path) -> None:
    key = f"s{secrets.token_hex(4)}"
    xadd_all(redis_server, key, bodies(10, bad_at=-1))
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    with DuckDBStore(store_path) as store:
        started = time.monotonic()
        report = ingest_redis(store, redis_server, key, once=False, idle=0.2, stop=stop)
        assert report.events == 10 and 0.9 < time.monotonic() - started < 5


def test_missing_client_libraries_name_the_extra(
    monkeypatch: pytest.MonkeyPatch, store_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)  # makes `import nats` fail
    monkeypatch.setitem(sys.modules, "redis", None)
    with DuckDBStore(store_path) as store:
        with pytest.raises(RowbackError, match=r"pip install 'rowback\[nats\]'"):
            ingest_nats(store, "nats://127.0.0.1:1", "S", "S.>")
        with pytest.raises(RowbackError, match=r"pip install 'rowback\[redis\]'"):
            ingest_redis(store, "redis://127.0.0.1:1/0", "k")


def test_unreachable_servers_are_one_line_errors(store_path: Path) -> None:
    port = free_port()
    with DuckDBStore(store_path) as store:
        with pytest.raises(RowbackError, match="cannot reach Redis"):
            ingest_redis(store, f"redis://127.0.0.1:{port}/0", "k", once=True)
        with pytest.raises(RowbackError, match="cannot connect to NATS"):
            ingest_nats(store, f"nats://127.0.0.1:{port}", "S", "S.>", once=True)


def test_sigint_finishes_the_batch_and_exits_cleanly(redis_server: str, store_path: Path) -> None:
    key = f"s{secrets.token_hex(4)}"
    xadd_all(redis_server, key, bodies(50, bad_at=-1))
    script = (
        "import sys\n"
        "from rowback.store.duckdb.store import DuckDBStore\n"
        "from rowback.sources.debezium.redis import ingest_redis\n"
        "with DuckDBStore(sys.argv[1]) as s:\n"
        "    r = ingest_redis(s, sys.argv[2], sys.argv[3], idle=0.2)\n"
        "print(r.events, flush=True)\n"
    )
    cmd = [sys.executable, "-c", script, str(store_path), redis_server, key]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not redis.Redis.from_url(redis_server).xinfo_groups(key):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and out.split() == [b"50"]
