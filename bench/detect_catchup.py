"""detect_catchup: what detection costs capture's catch-up (target: at most 10% slower).

The same pgbench backlog (``-c 4``, TPC-B: three captured updates per transaction over
three tables interleaved; ``pgbench_history`` has no primary key, so default capture
skips its inserts) on a server left as ``initdb`` made it is drained by the whole
command, ``rowback capture --once``, with detection on (the default: every write is
judged by every detector inside its transaction, incidents and state committed with it)
and with ``--no-detect``, alternating, one slot and store per drain. The figure is the
catch-up rate each way and the ratio of their medians.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from bench import pg as pgb
from bench.harness import BenchResult, Ctx, Figure, log, run_command
from rowback.pgserver import PgServer

NAME = "detect_catchup"


def drain(dsn: str, store: Path, slot: str, detect: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "rowback.cli", "capture", "--source", dsn, "--once"]
    cmd += ["--slot", slot, "--store", str(store), "--format", "json"]
    cmd += [] if detect else ["--no-detect"]
    got = run_command(cmd)
    import orjson

    row = orjson.loads(got.out.strip().splitlines()[-1])
    return {"seconds": got.seconds, "peak_rss_mb": got.peak_rss_mb, **row}


def run(ctx: Ctx) -> BenchResult:
    scale = 1 if ctx.quick else 10
    want_changes = 20_000 if ctx.quick else 400_000
    clients = 4
    per_client = math.ceil(want_changes / pgb.CAPTURED_PER_TPCB_TX / clients)
    work = ctx.work_dir(NAME)
    res = BenchResult(
        NAME,
        params={
            "scale": scale,
            "pgbench": f"-c {clients} -j 2 -t {per_client}",
            "runs": ctx.runs,
            "server settings": "initdb defaults + wal_level=logical",
        },
    )
    pg = PgServer(settings={}, fast=False).start()
    try:
        pgb.pgbench_init(pg, scale)
        slots = [(f"rb_on_{k}", True) for k in range(ctx.runs)]
        slots += [(f"rb_off_{k}", False) for k in range(ctx.runs)]
        slots.sort(key=lambda s: s[0][-1])  # alternate on/off, pair by pair
        for slot, detect in slots:
            drain(pg.dsn(), work / slot, slot, detect)  # the snapshot, before the backlog
        log(f"{NAME}: making the backlog (pgbench -c {clients} -j 2 -t {per_client})")
        os.environ["PGOPTIONS"] = "-c synchronous_commit=off"
        try:
            bench = pgb.pgbench(pg, "-c", str(clients), "-j", "2", "-t", str(per_client))
        finally:
            del os.environ["PGOPTIONS"]
        on, off = [], []
        for k, (slot, detect) in enumerate(slots):
            log(f"{NAME}: drain {k + 1}/{len(slots)} ({slot})")
            (on if detect else off).append(drain(pg.dsn(), work / slot, slot, detect))
    finally:
        pg.stop()
    expected = bench["transactions"] * pgb.CAPTURED_PER_TPCB_TX
    got = [d["changes"] for d in on + off]
    if any(c != expected for c in got):
        res.notes.append(f"captured changes {got} differ from the expected {expected}")
    res.params["captured_changes"] = expected
    rate_on = [d["changes"] / d["seconds"] for d in on]
    rate_off = [d["changes"] / d["seconds"] for d in off]
    ratio = statistics.median(rate_on) / statistics.median(rate_off)
    res.figures += [
        Figure(
            "catch-up changes/s with detection (default)",
            "changes/s",
            rate_on,
            [d["peak_rss_mb"] for d in on],
            target=0.9 * statistics.median(rate_off),
            peer="the same command with --no-detect",
            peer_ratio=round(ratio, 3),
            note=f"{expected:,} changes; target: at least 90% of --no-detect's rate",
        ),
        Figure(
            "catch-up changes/s, --no-detect",
            "changes/s",
            rate_off,
            [d["peak_rss_mb"] for d in off],
        ),
    ]
    return res
