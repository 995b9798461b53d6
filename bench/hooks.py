"""Benchmarks owned elsewhere, run as subprocesses: today ``ingest_debezium``.

``bench/ingest_debezium.py`` (another engineer's) runs as
``python -m bench.ingest_debezium --runs N [--events 20000 with --quick]`` from the
repository root and prints one JSON object. Two shapes are understood:

- ``{"figures": [{"name", "unit", "values" | "median", "rss_mb"?, "target"?, "better"?}]}``;
- its current one: ``{"events", "runs", VARIANT: {"X_events_per_s", "X_peak_rss_mb",
  "store_bytes_per_event", "file_bytes_per_event", ...}}``, whose numbers are already
  medians of ``runs`` child processes (each reporting its own VmHWM).

Anything else is reported with the tail of its output. A missing file is reported as
"not present", not as a failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.harness import ROOT, BenchResult, Ctx, Figure, _child_env

NAME = "ingest_debezium"
SCRIPT = ROOT / "bench" / "ingest_debezium.py"


def _figures_from_variants(got: dict[str, Any]) -> list[Figure]:
    runs = int(got.get("runs", 1))
    figures = []
    for variant, vals in got.items():
        if not isinstance(vals, dict):
            continue
        for key, v in vals.items():
            if not isinstance(v, int | float) or key.endswith("_peak_rss_mb"):
                continue
            if key.endswith("_events_per_cpu_s"):
                what = key.removesuffix("_events_per_cpu_s")
                fig = Figure(f"{variant}: {what} per CPU-second", "events/CPU-s", [float(v)])
            elif key.endswith("_events_per_s"):
                what = key.removesuffix("_events_per_s")
                rss = vals.get(f"{what}_peak_rss_mb")
                fig = Figure(f"{variant}: {what}", "events/s", [float(v)])
                fig.rss_mb = [float(rss)] if rss is not None else []
            elif key.endswith("bytes_per_event"):
                fig = Figure(
                    f"{variant}: {key.removesuffix('_per_event')}",
                    "B/event",
                    [float(v)],
                    better="lower",
                )
            else:
                fig = Figure(f"{variant}: {key}", "", [float(v)])
            fig.note = f"median of {runs} runs, as reported by bench/ingest_debezium.py"
            fig.shown_runs = runs
            figures.append(fig)
    return figures


def _figures_from_list(items: list[dict[str, Any]]) -> list[Figure]:
    out = []
    for f in items:
        rss = f.get("rss_mb")
        out.append(
            Figure(
                f["name"],
                f.get("unit", ""),
                [float(v) for v in (f.get("values") or [f["median"]])],
                [float(x) for x in rss]
                if isinstance(rss, list)
                else ([float(rss)] if rss is not None else []),
                target=f.get("target"),
                better=f.get("better", "higher"),
                note=f.get("note", ""),
            )
        )
    return out


def run(ctx: Ctx) -> BenchResult:
    res = BenchResult(NAME)
    if not SCRIPT.exists():
        res.notes.append(f"{SCRIPT.relative_to(ROOT)} not present: nothing to run (hook only)")
        return res
    cmd = [sys.executable, "-m", "bench.ingest_debezium", "--runs", str(ctx.runs)]
    if ctx.quick:
        cmd += ["--events", "20000"]
    res.params["command"] = "python " + " ".join(cmd[1:])
    proc = subprocess.run(cmd, cwd=ROOT, env=_child_env(), capture_output=True, text=True)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
    if proc.returncode != 0:
        res.error = f"exit {proc.returncode}: {tail}"
        return res
    text = proc.stdout
    try:
        got = json.loads(text[text.index("{") :])
    except ValueError:
        res.error = "its output is not one JSON object; it ends with:\n" + tail
        return res
    if isinstance(got.get("figures"), list):
        res.figures = _figures_from_list(got["figures"])
        res.params.update(got.get("params", {}))
        res.notes += list(got.get("notes", []))
    else:
        res.figures = _figures_from_variants(got)
        res.params.update({k: v for k, v in got.items() if not isinstance(v, dict)})
    if not res.figures:
        res.notes.append("no figures found in its output: " + tail[-500:])
    return res
