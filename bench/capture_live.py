"""capture_live: what continuous capture costs the source, and how far behind it runs.

Each run does, in alternating order, ``pgbench -c 4 -j 2 -T SECONDS`` alone and the same
with a capture (a separate process, ``Capture(once=False)``) streaming beside it. The
replication slot exists in both cases (an idle slot only retains WAL); before a
"with capture" run the capture first catches up what the previous run left.

Lag, two ways:

- **flush lag** (the issue's definition): at every store write, ``now - commit time of
  the last change written``, from the capture's progress callback, during the load;
- **slot lag**: every 0.1 s the harness reads ``pg_current_wal_lsn()`` and the slot's
  ``confirmed_flush_lsn``; the lag is how long ago the WAL reached the confirmed
  position (an upper bound, 0.1 s resolution), and the byte distance.

The cluster runs with fsync on, as a source would; the capture shares this machine's two
cores with PostgreSQL and pgbench, so the TPS ratio includes CPU contention.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from bench import pg as pgb
from bench.harness import BenchResult, Child, Ctx, Figure, child, log, percentile

NAME = "capture_live"
SLOT = "rb_live"


# -- child side ------------------------------------------------------------------------


def live_capture(
    dsn: str, store: str, progress_file: str, coalesce_s: float = 0.0
) -> dict[str, Any]:
    """Capture continuously until SIGTERM; every store write's (time, lag, total changes).

    After each write the position the store holds goes to ``progress_file``, so the
    harness can tell when the capture has caught up without waiting for the slot.
    ``coalesce_s`` > 0 is an experiment (``python -m bench.diagnose live``): store writes
    are held back to at most one per ``coalesce_s`` (see :class:`bench.probes.CoalescingStore`).
    """
    from bench import worker
    from bench.probes import CoalescingStore, TimedStore
    from rowback.sources.postgres.capture import Capture, CaptureConfig, CaptureStatus
    from rowback.store.duckdb import DuckDBStore

    samples: list[tuple[float, float, int]] = []
    last = [0]
    tmp = progress_file + ".tmp"

    def progress(s: CaptureStatus) -> None:
        if s.changes > last[0]:  # a write that carried changes (not just a position)
            last[0] = s.changes
            samples.append((time.time(), s.lag_s, s.changes))
        with open(tmp, "w") as f:
            f.write(str(s.lsn))
        os.replace(tmp, progress_file)

    st = DuckDBStore(store)
    timed = TimedStore(st)
    target: Any = CoalescingStore(timed, coalesce_s) if coalesce_s > 0 else timed
    cap = Capture(CaptureConfig(dsn, slot=SLOT, publication="rowback"), target, progress)
    worker.on_stop(cap.stop)
    status = cap.run()
    if coalesce_s > 0:
        target.flush()
        samples = [(t, lag, 0) for t, lag in target.lags]
    st.close()
    return {
        "samples": samples,
        "writes": timed.writes,
        "changes": status.changes,
        "gaps": status.gaps,
    }


def snapshot(dsn: str, store: str) -> dict[str, Any]:
    from rowback.sources.postgres.capture import Capture, CaptureConfig
    from rowback.store.duckdb import DuckDBStore

    st = DuckDBStore(store)
    status = Capture(CaptureConfig(dsn, slot=SLOT, publication="rowback", once=True), st).run()
    st.close()
    return {"snapshot_rows": status.snapshot_rows}


# -- parent side -----------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


class SlotSampler(threading.Thread):
    """Samples (time, current WAL LSN, confirmed_flush_lsn) every ``every`` seconds."""

    def __init__(self, pg: Any, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pg = pg
        self.every = every
        self.samples: list[tuple[float, int, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        conn = pgb.connect(self.pg)
        try:
            while not self._halt.is_set():
                st = pgb.slot_state(conn, SLOT)
                if st is not None:
                    self.samples.append((time.time(), st[0], st[1]))
                self._halt.wait(self.every)
        finally:
            conn.close()

    def halt(self) -> None:
        self._halt.set()
        self.join()

    def lags(self) -> tuple[list[float], list[int]]:
        """Per sample: seconds since the WAL reached the confirmed LSN, and bytes behind."""
        secs, nbytes = [], []
        for i, (t, cur, conf) in enumerate(self.samples):
            nbytes.append(max(0, cur - conf))
            if conf >= cur:
                secs.append(0.0)
                continue
            # the last earlier sample whose WAL end was still short of ``conf``:
            # the confirmed data was written after it, so t - t_j bounds the lag
            j = i
            while j > 0 and self.samples[j][1] >= conf:
                j -= 1
            secs.append(t - self.samples[j][0])
        return secs, nbytes


def _stored_lsn(progress_file: Path) -> int:
    try:
        return int(progress_file.read_text() or 0)
    except (OSError, ValueError):
        return 0


def _wait_stored(conn: Any, progress_file: Path, timeout: float = 600.0) -> float:
    """Commit a marker change to a captured table; wait until the store holds it. Seconds."""
    t0 = time.perf_counter()
    before = int(pgb.one(conn, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
    with conn.cursor() as cur:
        cur.execute("UPDATE pgbench_branches SET filler = 'marker' WHERE bid = 1")
    while _stored_lsn(progress_file) <= before:
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"capture did not catch up within {timeout} s")
        time.sleep(0.01)
    return time.perf_counter() - t0


def _with_capture(
    pg: Any,
    store: str,
    seconds: int,
    conn: Any,
    profile: Path | None = None,
    coalesce_s: float = 0.0,
) -> dict[str, Any]:
    progress_file = Path(store + ".progress")
    progress_file.unlink(missing_ok=True)
    cap = Child(
        f"{__name__}:live_capture",
        {
            "dsn": pg.dsn(),
            "store": store,
            "progress_file": str(progress_file),
            "coalesce_s": coalesce_s,
        },
        profile,
    )
    try:
        pgb.wait_active(conn, SLOT)
        catchup = _wait_stored(conn, progress_file)
        sampler = SlotSampler(pg)
        sampler.start()
        walsender = pgb.one(
            conn, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [SLOT]
        )
        cpu0 = (_cpu_seconds(cap.pid), _cpu_seconds(walsender))
        t0 = time.time()
        bench = pgb.pgbench(pg, "-c", "4", "-j", "2", "-T", str(seconds))
        t1 = time.time()
        cpu1 = (_cpu_seconds(cap.pid), _cpu_seconds(walsender))
        drain_after = _wait_stored(conn, progress_file)
        sampler.halt()
    finally:
        cap.stop()
    got = cap.result(timeout=120)
    window = [s for s in got["samples"] if t0 <= s[0] <= t1]
    # store writes during the load (the progress callback runs right after each write)
    in_load = [(s, n, oldest) for s, n, end, oldest in got["writes"] if t0 <= end <= t1]
    write_ms = [s * 1000 for s, _, _ in in_load]
    oldest = [o for _, n, o in in_load if n > 0]
    flush_lags = [s[1] for s in window]
    slot_secs, slot_bytes = sampler.lags()
    inside = [i for i, s in enumerate(sampler.samples) if t0 <= s[0] <= t1]
    return {
        "tps": bench["tps"],
        "initial_catchup_s": catchup,
        "drain_after_load_s": drain_after,
        "flush_p50": percentile(flush_lags, 50),
        "flush_p99": percentile(flush_lags, 99),
        "flush_max": max(flush_lags, default=float("nan")),
        "flushes": len(flush_lags),
        "changes_in_window": (window[-1][2] - window[0][2]) if len(window) > 1 else 0,
        "slot_p50": percentile([slot_secs[i] for i in inside], 50),
        "slot_p99": percentile([slot_secs[i] for i in inside], 99),
        "slot_bytes_p99": percentile([float(slot_bytes[i]) for i in inside], 99),
        "writes_per_s": len(in_load) / (t1 - t0),
        "empty_writes": sum(1 for _, n, _ in in_load if n == 0),
        "changes_per_write_p50": percentile([float(n) for _, n, _ in in_load], 50),
        "oldest_p50": percentile(oldest, 50),
        "oldest_p99": percentile(oldest, 99),
        "write_ms_p50": percentile(write_ms, 50),
        "write_ms_p99": percentile(write_ms, 99),
        "write_ms_max": max(write_ms, default=float("nan")),
        "write_busy": sum(write_ms) / 1000 / (t1 - t0),
        "capture_cpu": (cpu1[0] - cpu0[0]) / (t1 - t0),
        "walsender_cpu": (cpu1[1] - cpu0[1]) / (t1 - t0),
        "peak_rss_mb": got["peak_rss_mb"],
        "gaps": got["gaps"],
    }


def run(ctx: Ctx) -> BenchResult:
    scale = 1 if ctx.quick else 10
    seconds = 4 if ctx.quick else 30
    work = ctx.work_dir(NAME)
    store = str(work / "store")
    res = BenchResult(
        NAME,
        params={"scale": scale, "pgbench": f"-c 4 -j 2 -T {seconds}", "fsync": "on"},
    )
    pg = pgb.server(fast=False)
    conn = pgb.connect(pg)
    base: list[float] = []
    live: list[dict[str, Any]] = []
    try:
        pgb.pgbench_init(pg, scale)
        snap = child(f"{__name__}:snapshot", dsn=pg.dsn(), store=store)
        res.params["snapshot_rows"] = snap["snapshot_rows"]
        for k in range(ctx.runs):
            for what in ("alone", "with") if k % 2 == 0 else ("with", "alone"):
                log(f"{NAME}: run {k + 1}/{ctx.runs}, pgbench {what} capture")
                if what == "alone":
                    base.append(pgb.pgbench(pg, "-c", "4", "-j", "2", "-T", str(seconds))["tps"])
                else:
                    live.append(_with_capture(pg, store, seconds, conn))
        if ctx.profile:
            log(f"{NAME}: an extra run with capture under cProfile")
            got = _with_capture(pg, store, seconds, conn, ctx.out / f"{NAME}.prof")
            res.notes.append(
                f"an extra run with a profiled capture ({got['tps']:.0f} TPS, not in the "
                f"figures): bench/out/{NAME}.txt"
            )
    finally:
        conn.close()
        pg.stop()
    rss = [r["peak_rss_mb"] for r in live]
    res.params["runs_detail"] = [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in live
    ]
    res.params["tps_alone"] = [round(t) for t in base]
    ratios = [r["tps"] / b for r, b in zip(live, base, strict=True)]
    res.figures += [
        Figure("pgbench TPS alone", "tps", base),
        Figure("pgbench TPS with capture", "tps", [r["tps"] for r in live], rss),
        Figure(
            "TPS with/without capture",
            "ratio",
            ratios,
            rss,
            note="per run: TPS with capture / TPS alone; for reference (research): "
            "REPLICA IDENTITY FULL ~0.75, trigger-based versioning 0.78",
        ),
        Figure("flush lag p50", "s", [r["flush_p50"] for r in live], rss, better="lower"),
        Figure(
            "flush lag p99", "s", [r["flush_p99"] for r in live], rss, target=1.0, better="lower"
        ),
        Figure("flush lag max", "s", [r["flush_max"] for r in live], rss, better="lower"),
        Figure(
            "oldest-change lag p99",
            "s",
            [r["oldest_p99"] for r in live],
            rss,
            better="lower",
            note="per store write: now - commit time of the FIRST change written (the one "
            "that waited longest); flush lag uses the last one",
        ),
        Figure(
            "slot confirm lag p99",
            "s",
            [r["slot_p99"] for r in live],
            rss,
            better="lower",
            note="server view (confirmed_flush_lsn); psycopg2 sends the flush LSN only "
            "every status_interval=10 s, so this shows the feedback interval, not freshness",
        ),
        Figure(
            "slot confirm bytes behind p99",
            "bytes",
            [r["slot_bytes_p99"] for r in live],
            rss,
            better="lower",
        ),
        Figure(
            "drain after load stops",
            "s",
            [r["drain_after_load_s"] for r in live],
            rss,
            better="lower",
        ),
        Figure("store writes per second", "writes/s", [r["writes_per_s"] for r in live], rss),
        Figure("store write p99", "ms", [r["write_ms_p99"] for r in live], rss, better="lower"),
        Figure("store write max", "ms", [r["write_ms_max"] for r in live], rss, better="lower"),
        Figure(
            "capture CPU during load",
            "cores",
            [r["capture_cpu"] for r in live],
            rss,
            better="lower",
        ),
        Figure(
            "walsender CPU during load", "cores", [r["walsender_cpu"] for r in live], better="lower"
        ),
    ]
    return res
