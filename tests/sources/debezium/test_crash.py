"""Crash safety: kill -9 an ingest at random moments, run it again, and the store must hold
exactly what one clean run stores: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbz_events import event, line
from dbz_streams import publish, xadd_all

from rowback.store.duckdb.store import DuckDBStore

RUNNER = """
import sys
from rowback.store.duckdb.store import DuckDBStore
kind, store, target = sys.argv[1:4]
with DuckDBStore(store) as s:
    if kind == "file":
        from rowback.sources.debezium.ingest import ingest_file
        block = int(sys.argv[4]) if len(sys.argv) > 4 else 16 << 20
        r = ingest_file(s, target, batch=500, block=block)
        print(r.events, r.quarantined, r.bulk)
        sys.exit(0)
    elif kind == "nats":
        from rowback.sources.debezium.nats import ingest_nats
        url, group = sys.argv[4:6]
        r = ingest_nats(s, url, target, target + ".>", durable=group, once=True, batch=500,
                        idle=0.5)
    else:
        from rowback.sources.debezium.redis import ingest_redis
        url, group = sys.argv[4:6]
        r = ingest_redis(s, url, target, group=group, once=True, batch=500, idle=0.3)
print(r.events, r.quarantined)
"""


STARTUP = "import rowback.store.duckdb.store, rowback.sources.debezium.ingest, nats, redis"


def workload(n: int, seed: int) -> list[bytes]:
    """Inserts, updates and deletes over 300 keys in transactions of 1-4 events, with a
    malformed line every 997 events."""
    rng = random.Random(seed)
    live: dict[int, dict[str, Any]] = {}
    out: list[bytes] = []
    txid, lsn = 1000, 0
    while len(out) < n:
        txid += 1
        for _ in range(rng.randint(1, 4)):
            lsn += 1
            src = {"txid": txid, "lsn": lsn, "ts_ms": 1_700_000_000_000 + lsn}
            k = rng.randint(1, 300)
            old = live.get(k)
            if len(out) % 997 == 996:
                out.append(b'{"op": "u", "after": [' + str(lsn).encode())
            elif old is not None and rng.random() < 0.2:
                out.append(line(event("d", None, old, **src)))
                del live[k]
            else:
                new = {"id": k, "n": rng.randint(0, 10**9), "s": "x" * rng.randint(0, 40)}
                out.append(line(event("u" if old else "c", new, old, **src)))
                live[k] = new
    return out[:n]


def run(args: list[str], kill_after: float | None = None) -> tuple[int, int]:
    """Run the ingest in a child, kill -9 it after ``kill_after`` s: its return code, and
    the events it reports having written (-1 when killed)."""
    code, out = run_output(args, kill_after)
    return code, int(out.split()[0]) if out else -1


def run_output(args: list[str], kill_after: float | None = None) -> tuple[int, str]:
    cmd = [sys.executable, "-c", RUNNER, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=kill_after if kill_after is not None else 120)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        return proc.returncode, ""
    return proc.returncode, out


def snapshot(path: Path) -> dict[str, Any]:
    """Everything the ingest wrote, in store order."""
    with DuckDBStore(path, read_only=True) as s:
        return {
            "history": s.sql("SELECT * FROM h_1 ORDER BY _pos"),
            "head": s.sql("SELECT * FROM s_1 ORDER BY _pos"),
            "tx": s.sql("SELECT pos_lo, pos_hi, lsn, txid, ts FROM _rb_tx ORDER BY pos_lo"),
            "quarantine": s.sql(
                "SELECT location, line, error, raw FROM _rb_quarantine ORDER BY id"
            ),
        }


def crash_and_compare(
    tmp: Path, args: Callable[[str, Path], list[str]], kills: int = 4, seed: int | None = None
) -> None:
    """One clean run, then ``kills`` runs killed at random moments and a final run."""
    seed = seed if seed is not None else secrets.randbits(32)
    rng = random.Random(seed)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", STARTUP], check=True)
    startup = time.monotonic() - t0
    t0 = time.monotonic()
    code, total = run(args("clean", tmp / "clean"))
    assert code == 0
    work = time.monotonic() - t0 - startup
    killed = 0
    for _ in range(kills):
        # Each run gets at most a fifth of the work done, so every kill lands mid-stream.
        code, _ = run(args("crashy", tmp / "crashy"), startup + rng.uniform(0.05, 0.2) * work)
        killed += code == -signal.SIGKILL
    code, rest = run(args("crashy", tmp / "crashy"))
    assert code == 0 and killed >= 2, f"seed {seed}: the kills came too late"
    assert rest < total, f"seed {seed}: no killed run got as far as a write"
    clean, crashy = snapshot(tmp / "clean"), snapshot(tmp / "crashy")
    assert len(clean["history"]) > 0
    for part in clean:
        assert crashy[part] == clean[part], f"seed {seed}: {part} differs after crashes"


def test_kill_9_file_ingest(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(workload(40_000, seed=1)) + b"\n")
    crash_and_compare(tmp_path, lambda _group, store: ["file", str(store), str(path)])


def test_kill_9_bulk_file_ingest(tmp_path: Path) -> None:
    """Small blocks: most are decoded in columns and written in bulk transactions left
    open across blocks; those with a malformed line go line by line."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(workload(60_000, seed=4)) + b"\n")
    block = "16384"
    code, out = run_output(["file", str(tmp_path / "probe"), str(path), block])
    events, _, bulk = (int(x) for x in out.split())
    assert code == 0 and bulk > events // 2  # the bulk path did most of the work
    crash_and_compare(tmp_path, lambda _group, store: ["file", str(store), str(path), block])


def test_kill_9_nats_consumer(tmp_path: Path, nats_server: str) -> None:
    stream = f"C{secrets.token_hex(4)}"
    asyncio.run(publish(nats_server, stream, workload(15_000, seed=2)))
    crash_and_compare(
        tmp_path, lambda group, store: ["nats", str(store), stream, nats_server, group], kills=3
    )


def test_kill_9_redis_consumer(tmp_path: Path, redis_server: str) -> None:
    key = f"c{secrets.token_hex(4)}"
    xadd_all(redis_server, key, workload(15_000, seed=3))
    crash_and_compare(
        tmp_path, lambda group, store: ["redis", str(store), key, redis_server, group], kills=3
    )
