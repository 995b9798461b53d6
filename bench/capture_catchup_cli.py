"""capture_catchup_cli: catch-up as a user runs it, on a server left as ``initdb`` made it.

Unlike ``capture_catchup`` (fsync off, ``max_wal_size = 8GB``, ``Capture.run()`` timed in
a child), the cluster keeps PostgreSQL's defaults (fsync on, ``max_wal_size = 1GB``,
``checkpoint_timeout = 5min``, ``shared_buffers = 128MB``) except the settings logical
replication needs (``wal_level = logical``, slots and senders). So the backlog is WAL as
a default server writes it: more checkpoints, so more full-page images to decode.

1. ``pgbench -i -s SCALE``; one slot per run (2 × runs), each with its own store, takes
   the initial snapshot, before any change is made.
2. ``pgbench -c 4 -j 2 -t N`` makes one backlog. Only its sessions commit without
   waiting for the WAL flush (``PGOPTIONS=-c synchronous_commit=off``), so the backlog
   is made in minutes on a shared disk; the server's settings are untouched.
3. ``runs`` slots are drained by the whole command, ``rowback capture --once`` in a
   subprocess: wall time from spawn to exit (interpreter start, imports, connect,
   stream, write, confirm), peak RSS from the process's ``VmHWM``. The other ``runs``
   slots are drained in-process (``Capture.run()`` timed in a child, as in
   ``capture_catchup``), for the figure beside it.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from bench import pg as pgb
from bench.harness import BenchResult, Ctx, Figure, child, log, run_command
from rowback.pgserver import PgServer

NAME = "capture_catchup_cli"


def cli_capture(dsn: str, store: Path, slot: str) -> dict[str, Any]:
    """``rowback capture --once`` as a subprocess: wall seconds, peak RSS, its output row."""
    cmd = [sys.executable, "-m", "rowback.cli", "capture", "--source", dsn, "--once"]
    cmd += ["--slot", slot, "--store", str(store), "--format", "json"]
    got = run_command(cmd)
    import orjson

    row = orjson.loads(got.out.strip().splitlines()[-1])
    return {"seconds": got.seconds, "peak_rss_mb": got.peak_rss_mb, **row}


def run(ctx: Ctx) -> BenchResult:
    scale = 1 if ctx.quick else 10
    want_changes = 30_000 if ctx.quick else 1_000_000
    clients = 4
    per_client = math.ceil(want_changes / pgb.CAPTURED_PER_TPCB_TX / clients)
    work = ctx.work_dir(NAME)
    res = BenchResult(
        NAME,
        params={
            "scale": scale,
            "pgbench": f"-c {clients} -j 2 -t {per_client}",
            "runs": ctx.runs,
            "server settings": "initdb defaults + wal_level=logical, 20 slots/senders",
            "backlog sessions": "synchronous_commit=off (PGOPTIONS)",
        },
    )
    pg = PgServer(settings={}, fast=False).start()
    try:
        res.params["pgbench_init_s"] = round(pgb.pgbench_init(pg, scale), 1)
        slots = [f"rb_cli_{k}" for k in range(ctx.runs)] + [f"rb_in_{k}" for k in range(ctx.runs)]
        snaps: dict[str, dict[str, Any]] = {}
        for k, slot in enumerate(slots):
            log(f"{NAME}: snapshot {k + 1}/{len(slots)}")
            if slot.startswith("rb_cli"):
                snaps[slot] = cli_capture(pg.dsn(), work / slot, slot)
            else:
                snaps[slot] = child(
                    "bench.capture_catchup:run_capture",
                    dsn=pg.dsn(),
                    store=str(work / slot),
                    slot=slot,
                )
        log(f"{NAME}: making the backlog (pgbench -c {clients} -j 2 -t {per_client})")
        os.environ["PGOPTIONS"] = "-c synchronous_commit=off"
        try:
            bench = pgb.pgbench(pg, "-c", str(clients), "-j", "2", "-t", str(per_client))
        finally:
            del os.environ["PGOPTIONS"]
        res.params["backlog_pgbench_tps"] = round(bench["tps"])
        res.params["backlog_transactions"] = bench["transactions"]
        conn = pgb.connect(pg)
        res.params["backlog_wal_mb"] = round(
            float(
                pgb.one(
                    conn,
                    "SELECT (pg_current_wal_lsn() - min(confirmed_flush_lsn)) / 1048576.0 "
                    "FROM pg_replication_slots",
                )
            ),
            1,
        )
        res.params["checkpoints"] = pgb.one(
            conn, "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
        )
        conn.close()
        cli, inproc = [], []
        for k, slot in enumerate(slots):
            log(f"{NAME}: drain {k + 1}/{len(slots)} ({slot})")
            if slot.startswith("rb_cli"):
                cli.append(cli_capture(pg.dsn(), work / slot, slot))
            else:
                inproc.append(
                    child(
                        "bench.capture_catchup:run_capture",
                        dsn=pg.dsn(),
                        store=str(work / slot),
                        slot=slot,
                    )
                )
    finally:
        pg.stop()
    expected = bench["transactions"] * pgb.CAPTURED_PER_TPCB_TX
    got = [d["changes"] for d in cli + inproc]
    if any(c != expected for c in got):
        res.notes.append(f"captured changes {got} differ from the expected {expected}")
    res.params["captured_changes"] = expected
    res.params["gaps"] = [d["gaps"] for d in cli + inproc]
    cli_snaps = [snaps[s] for s in slots if s.startswith("rb_cli")]
    res.figures += [
        Figure(
            "catch-up changes/s, whole `rowback capture --once`",
            "changes/s",
            [d["changes"] / d["seconds"] for d in cli],
            [d["peak_rss_mb"] for d in cli],
            target=50_000,
            note=f"{expected:,} captured changes, default server settings",
        ),
        Figure(
            "catch-up time, whole command",
            "s",
            [d["seconds"] for d in cli],
            [d["peak_rss_mb"] for d in cli],
            better="lower",
        ),
        Figure(
            "catch-up changes/s, in-process Capture.run()",
            "changes/s",
            [d["changes"] / d["seconds"] for d in inproc],
            [d["peak_rss_mb"] for d in inproc],
            target=50_000,
            note="same backlog and server",
        ),
        Figure(
            "snapshot time, whole command",
            "s",
            [s["seconds"] for s in cli_snaps],
            [s["peak_rss_mb"] for s in cli_snaps],
            better="lower",
            note=f"{cli_snaps[0]['snapshot_rows']:,} rows",
        ),
    ]
    return res
