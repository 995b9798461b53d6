"""Debezium file ingest of a realistic stream, beside two yardsticks, in the same run.

The stream is ``bench/mixed_stream.py``'s: three tables interleaved in transaction order,
~1 kB events of many types (without the schema wrapper; ~4.7 kB with it). For each of
the two variants, every run measures three whole commands, each a fresh process timed
by ``/usr/bin/time`` (wall, user + system, peak RSS of that process alone):

- (a) ``rowback ingest mixed.jsonl --store S``, as a user runs it;
- (b) the same events one file per table, ``rowback ingest <table>.jsonl`` into a store
  each: the sum of the three times, and the largest peak RSS;
- (c) DuckDB's own ``read_ndjson`` loading ``mixed.jsonl`` into a table of a database
  file (``CREATE TABLE t AS SELECT * FROM read_ndjson(...)``), in a Python process.

The order of (a), (b), (c) rotates from run to run; the ratios a/c and a/b are taken
run by run (the same minute of a shared machine), then their median.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import BenchResult, Ctx, Figure, child, log
from bench.mixed_stream import TABLES

NAME = "ingest_mixed"
EVENTS, QUICK_EVENTS = 1_000_000, 20_000
DUCKDB_LOAD = (
    "import duckdb, sys; con = duckdb.connect(sys.argv[2]); "
    "con.execute('CREATE TABLE t AS SELECT * FROM read_ndjson(?)', [sys.argv[1]]); "
    "assert con.execute('SELECT count(*) FROM t').fetchone()[0] == int(sys.argv[3])"
)


def generate(out: str, events: int, wrapped: bool) -> dict[str, Any]:
    """(In a child process, so the harness stays small.) Write the stream's files."""
    from bench.mixed_stream import write

    counts = write(Path(out), events, wrapped)
    return {"counts": counts, "bytes": (Path(out) / "mixed.jsonl").stat().st_size}


def timed(cmd: list[str]) -> dict[str, float]:
    """Run ``cmd`` under ``/usr/bin/time``: wall and CPU seconds, and its peak RSS in MB
    (its own: a process started straight from this one would inherit this one's)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        fmt = "%e %U %S %M"
        done = subprocess.run(
            ["/usr/bin/time", "-f", fmt, "-o", out.name, *cmd], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {(done.stdout + done.stderr)[-2000:]}")
        wall, user, sys_, rss_kb = out.read().split()[-4:]
    return {"s": float(wall), "cpu": float(user) + float(sys_), "rss": int(rss_kb) / 1024}


def _rowback(file: Path, store: Path) -> list[str]:
    exe = Path(sys.executable).with_name("rowback")
    return [str(exe), "ingest", str(file), "--store", str(store)]


def one_run(work: Path, events: int, order: list[str]) -> dict[str, dict[str, float]]:
    """(a), (b) and (c) once each, in ``order``."""
    got: dict[str, dict[str, float]] = {}
    for what in order:
        stores = work / "stores"
        shutil.rmtree(stores, ignore_errors=True)
        stores.mkdir()
        if what == "a":
            got["a"] = timed(_rowback(work / "mixed.jsonl", stores / "a"))
        elif what == "b":
            parts = [timed(_rowback(work / f"{t}.jsonl", stores / t)) for t in TABLES]
            got["b"] = {
                "s": sum(p["s"] for p in parts),
                "cpu": sum(p["cpu"] for p in parts),
                "rss": max(p["rss"] for p in parts),
            }
        else:
            db = str(stores / "duck.db")
            mixed = str(work / "mixed.jsonl")
            got["c"] = timed([sys.executable, "-c", DUCKDB_LOAD, mixed, db, str(events)])
    shutil.rmtree(work / "stores", ignore_errors=True)
    return got


LABELS = {
    "a": "(a) rowback ingest, mixed file (whole command)",
    "b": "(b) rowback ingest, one file per table (sum of 3 commands)",
    "c": "(c) DuckDB read_ndjson of the mixed file into a table (whole process)",
}
TARGETS = {"a/c": 0.5, "a/b": 0.9}


def variant(ctx: Ctx, wrapped: bool, events: int) -> tuple[list[Figure], dict[str, Any]]:
    name = "wrapped" if wrapped else "bare"
    work = ctx.work_dir(f"{NAME}-{name}")
    made = child("bench.ingest_mixed:generate", out=str(work), events=events, wrapped=wrapped)
    log(f"{NAME} {name}: {made['bytes'] / events:.0f} B/event, {made['counts']}")
    runs = []
    for r in range(ctx.runs):
        order = ["a", "b", "c"][r % 3 :] + ["a", "b", "c"][: r % 3]
        runs.append(one_run(work, events, order))
        log(
            f"{NAME} {name} run {r + 1}: "
            + ", ".join(f"{k} {v['s']:.1f} s" for k, v in runs[-1].items())
        )
    shutil.rmtree(work, ignore_errors=True)
    figures = []
    for k, label in LABELS.items():
        f = Figure(f"{name}: {label}", "events/s", [events / run[k]["s"] for run in runs])
        f.rss_mb = [run[k]["rss"] for run in runs]
        figures.append(f)
        cpu = [events / run[k]["cpu"] for run in runs]
        figures.append(Figure(f"{name}: {k} per CPU-second", "events/CPU-s", cpu))
    for ratio, target in TARGETS.items():
        x, y = ratio.split("/")
        # rates: a/c = (events / a.s) / (events / c.s) = c.s / a.s
        values = [run[y]["s"] / run[x]["s"] for run in runs]
        figures.append(Figure(f"{name}: {ratio} (events/s ÷ events/s)", "×", values, target=target))
    params = {
        f"{name}_bytes_per_event": round(made["bytes"] / events),
        f"{name}_rows": made["counts"],
    }
    return figures, params


def run(ctx: Ctx) -> BenchResult:
    res = BenchResult(NAME)
    events = QUICK_EVENTS if ctx.quick else EVENTS
    res.params["events"] = events
    res.params["cpus"] = os.cpu_count()
    for wrapped in (False, True):
        figures, params = variant(ctx, wrapped, events)
        res.figures += figures
        res.params.update(params)
    res.notes.append("peak RSS: each process's own, from /usr/bin/time (%M)")
    return res
