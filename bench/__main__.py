"""``python -m bench [--quick] [--only NAME] [--runs N] [--profile]``: run the benchmark suite.

Prints a table and writes ``bench/out/results.json`` (plus ``bench/out/NAME.json`` per
benchmark). See ``docs/benchmarks.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback

from bench.harness import OUT, BenchResult, Ctx, log, machine, table

BENCHMARKS = (
    "capture_catchup",
    "capture_catchup_cli",
    "detect_catchup",
    "capture_live",
    "service_live",
    "revert_load",
    "whatif_big",
    "store_size",
    "timetravel",
    "ingest_debezium",
    "ingest_mixed",
)
"""Each is a module ``bench.NAME`` with ``run(ctx) -> BenchResult``, except
``ingest_debezium``, which ``bench.hooks`` runs as a subprocess when its file exists."""


def _module(name: str) -> str:
    return "bench.hooks" if name == "ingest_debezium" else f"bench.{name}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test (~2 min)")
    ap.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these (repeat or comma-separate): {', '.join(BENCHMARKS)}",
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per figure; the median is shown")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also run one repetition under cProfile (bench/out/NAME.txt)",
    )
    args = ap.parse_args(argv)
    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for o in args.only for n in o.split(",") if n.strip()]
        bad = [n for n in names if n not in BENCHMARKS]
        if bad:
            ap.error(f"unknown benchmark {bad[0]!r}; choose from {', '.join(BENCHMARKS)}")
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    OUT.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(quick=args.quick, runs=args.runs, out=OUT, profile=args.profile)
    info = machine()
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    results: list[BenchResult] = []
    for name in names:
        log(f"{name}: start")
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        try:
            res: BenchResult = importlib.import_module(_module(name)).run(ctx)
        except Exception as e:  # one broken benchmark must not hide the others
            traceback.print_exc()
            res = BenchResult(name, error=f"{type(e).__name__}: {e}")
        res.seconds = time.perf_counter() - t0
        # this machine may be shared: a 1-minute load above ~2 (its core count) at the
        # start or end means something else competed for the CPU during the benchmark
        res.params["loadavg_1m"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
        log(f"{name}: done in {res.seconds:.0f} s")
        results.append(res)
        (OUT / f"{name}.json").write_text(json.dumps(res.to_json(), indent=2))
    summary = {
        "command": command.strip(),
        "quick": args.quick,
        "runs": args.runs,
        "machine": info,
        "benchmarks": {r.name: r.to_json() for r in results},
    }
    (OUT / "results.json").write_text(json.dumps(summary, indent=2))
    print()
    print(table(results))
    for r in results:
        if r.error:
            print(f"  {r.name}: ERROR {r.error}")
        for n in r.notes:
            print(f"  {r.name}: {n}")
    print(f"\nwritten: {OUT / 'results.json'}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
