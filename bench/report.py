"""Render ``bench/out/results.json`` as the Markdown table used in docs/benchmarks.md.

``python -m bench.report [results.json]`` prints the machine block and one table row per
figure: median, unit, runs, peak RSS, target, median ÷ target, verdict, peer ratio.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.harness import OUT, fmt


def _row(bench: str, f: dict[str, Any]) -> str:
    target = ""
    if f["target"] is not None:
        target = ("≥ " if f["better"] == "higher" else "≤ ") + fmt(f["target"])
    verdict = {True: "met", False: "**missed**", None: ""}[f["meets_target"]]
    peer = ""
    if f.get("peer_ratio") is not None:
        peer = f"{f['peer']} = {fmt(f['peer_ratio'])}"
    cells = [
        bench,
        f["name"],
        fmt(f["median"]),
        f["unit"],
        str(f["runs"]),
        fmt(f["rss_mb_median"]),
        target,
        fmt(f["ratio_to_target"]),
        verdict,
        peer,
    ]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"- command: `{results['command']}`",
        f"- date: {m['date']}; commit: {m['commit']}"
        + (" (with uncommitted changes in src/)" if m.get("src_uncommitted_changes") else ""),
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, kernel {m['kernel']}; "
        f"Python {m['python']}, DuckDB {m['duckdb']}, {m['postgres']}",
        "",
        "| benchmark | figure | median | unit | runs | peak RSS MB | target | median ÷ target "
        "| verdict | peer |",
        "|---|---|---:|---|---:|---:|---|---:|---|---|",
    ]
    for name, b in results["benchmarks"].items():
        if b.get("error"):
            lines.append(f"| {name} | ERROR: {b['error'].splitlines()[0]} | | | | | | | | |")
        for f in b["figures"]:
            lines.append(_row(name, f))
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT / "results.json"
    print(render(json.loads(path.read_text())))
