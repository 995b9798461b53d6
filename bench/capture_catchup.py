"""capture_catchup: initial snapshot, then draining a backlog of ≥ 1M row changes.

1. ``pgbench -i -s SCALE`` (scale 10 = 1M pgbench_accounts rows).
2. For each run k, a capture with its own slot ``rb_k`` and its own store takes the
   initial snapshot (a figure: rows/s). All slots exist before any change is made.
3. With no capture running, ``pgbench -c 4 -j 2 -t N`` makes the backlog once. Its
   tpcb-like script changes 4 rows per transaction, but pgbench_history has no primary
   key so default capture skips it: 3 *captured* changes per transaction.
4. Each run drains its own slot with ``Capture(once=True)`` in a child process: the same
   backlog, decoded independently, N times. The figure is captured changes / wall time
   of ``Capture.run()`` (connect, start replication, decode, diff, write, confirm).

The cluster runs with fsync off: that only speeds up making the backlog; the drain reads
WAL that is already written.
"""

from __future__ import annotations

import math
import time
from typing import Any

from bench import pg as pgb
from bench.harness import BenchResult, Ctx, Figure, child, log

NAME = "capture_catchup"


# -- child side ------------------------------------------------------------------------


def run_capture(dsn: str, store: str, slot: str, batch_size: int = 20_000) -> dict[str, Any]:
    """One ``Capture(once=True).run()`` into ``store``: a snapshot on a new store, else a drain."""
    from bench.probes import TimedStore
    from rowback.sources.postgres.capture import Capture, CaptureConfig
    from rowback.store.duckdb import DuckDBStore

    st = DuckDBStore(store)
    timed = TimedStore(st)
    cfg = CaptureConfig(dsn, slot=slot, publication="rowback", once=True, batch_size=batch_size)
    t = time.perf_counter()
    status = Capture(cfg, timed).run()  # type: ignore[arg-type]
    seconds = time.perf_counter() - t
    st.close()
    return {
        "writes": timed.summary(),
        "seconds": seconds,
        "snapshot_rows": status.snapshot_rows,
        "changes": status.changes,
        "transactions": status.transactions,
        "gaps": status.gaps,
        "tables": status.tables,
    }


# -- parent side -----------------------------------------------------------------------


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in d.items()}


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
            "accounts": scale * 100_000,
            "pgbench": f"-c {clients} -j 2 -t {per_client}",
            "runs": ctx.runs,
            "fsync": "off",
        },
    )
    pg = pgb.server(fast=True)
    try:
        res.params["pgbench_init_s"] = round(pgb.pgbench_init(pg, scale), 1)
        snaps = []
        slots = ctx.runs + (1 if ctx.profile else 0)  # the profiled drain is an extra one
        for k in range(slots):
            log(f"{NAME}: snapshot {k + 1}/{slots}")
            snaps.append(
                child(
                    f"{__name__}:run_capture",
                    dsn=pg.dsn(),
                    store=str(work / f"s{k}"),
                    slot=f"rb_{k}",
                )
            )
        log(f"{NAME}: making the backlog (pgbench -c {clients} -j 2 -t {per_client})")
        bench = pgb.pgbench(pg, "-c", str(clients), "-j", "2", "-t", str(per_client))
        res.params["backlog_pgbench_tps"] = round(bench["tps"])
        res.params["backlog_transactions"] = bench["transactions"]
        drains = []
        for k in range(slots):
            log(f"{NAME}: drain {k + 1}/{slots}")
            prof = ctx.out / f"{NAME}.prof" if k == ctx.runs else None
            got = child(
                f"{__name__}:run_capture",
                profile=prof,
                dsn=pg.dsn(),
                store=str(work / f"s{k}"),
                slot=f"rb_{k}",
            )
            if prof is None:
                drains.append(got)
            else:
                res.notes.append(
                    f"an extra drain ran under cProfile ({got['seconds']:.1f} s, not in the "
                    f"figures): bench/out/{NAME}.txt"
                )
        snaps = snaps[: ctx.runs]
    finally:
        pg.stop()
    res.params["snapshot_rows"] = snaps[0]["snapshot_rows"]
    res.params["captured_changes"] = drains[0]["changes"]
    res.params["captured_transactions"] = drains[0]["transactions"]
    res.params["gaps"] = [d["gaps"] for d in drains]
    res.params["tables"] = drains[0]["tables"]
    res.params["store_writes"] = {
        "snapshot": snaps[0]["writes"],
        "drain": [_rounded(d["writes"]) for d in drains],
    }
    expected = bench["transactions"] * pgb.CAPTURED_PER_TPCB_TX
    if any(d["changes"] != expected for d in drains):
        res.notes.append(
            f"captured changes {[d['changes'] for d in drains]} differ from the "
            f"expected {expected} (3 per pgbench transaction)"
        )
    res.figures += [
        Figure(
            "snapshot rows/s",
            "rows/s",
            [s["snapshot_rows"] / s["seconds"] for s in snaps],
            [s["peak_rss_mb"] for s in snaps],
            note=f"{snaps[0]['snapshot_rows']:,} rows (accounts+tellers+branches)",
        ),
        Figure(
            "snapshot time",
            "s",
            [s["seconds"] for s in snaps],
            [s["peak_rss_mb"] for s in snaps],
            better="lower",
        ),
        Figure(
            "catch-up changes/s",
            "changes/s",
            [d["changes"] / d["seconds"] for d in drains],
            [d["peak_rss_mb"] for d in drains],
            target=50_000,
            note=f"{drains[0]['changes']:,} captured changes; pgbench_history not captured",
        ),
        Figure(
            "catch-up time",
            "s",
            [d["seconds"] for d in drains],
            [d["peak_rss_mb"] for d in drains],
            better="lower",
        ),
    ]
    return res
