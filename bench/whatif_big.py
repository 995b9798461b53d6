"""whatif_big: `rowback whatif` of a 100,000-row UPDATE, against the statement alone.

A cluster with `initdb`'s defaults, pgbench scale 10 (1M accounts). Each run times the whole
`rowback whatif --target DSN --sql "UPDATE pgbench_accounts SET abalance = abalance + 1
WHERE aid <= 100000" --format json` (its output read to the end and counted) and, in the
same run, the floor: the same statement in a transaction rolled back by psql. Order
alternates. Peak RSS is the command's (VmHWM sampled every 20 ms). Checked: the output
has 100,000 rows and a summary, and the table is unchanged afterwards.
"""

from __future__ import annotations

import statistics
import subprocess
import time

import orjson

from bench import pg as pgb
from bench.harness import BenchResult, Ctx, Figure, log
from bench.revert_load import _rowback
from rowback.pgserver import PgServer

NAME = "whatif_big"
ROWS = 100_000
STATEMENT = f"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= {ROWS}"


def run(ctx: Ctx) -> BenchResult:
    scale = 2 if ctx.quick else 10
    res = BenchResult(
        NAME, params={"scale": scale, "statement": STATEMENT, "server settings": "initdb defaults"}
    )
    pg = PgServer(settings={}, fast=False).start()
    ours: list[float] = []
    rss: list[float] = []
    floors: list[float] = []
    try:
        pgb.pgbench_init(pg, scale)
        conn = pgb.connect(pg)
        total = int(pgb.one(conn, "SELECT sum(abalance) FROM pgbench_accounts"))
        psql = str(pg.bindir / "psql")
        for k in range(ctx.runs):
            for what in ("whatif", "floor") if k % 2 == 0 else ("floor", "whatif"):
                if what == "whatif":
                    wall, peak, out, _ = _rowback(
                        "whatif",
                        "--target",
                        pg.dsn(),
                        "--sql",
                        STATEMENT,
                        "--max-rows",
                        str(ROWS),
                        "--format",
                        "json",
                    )
                    lines = out.splitlines()
                    summary = orjson.loads(lines[-1])
                    assert summary["summary"] and summary["rows"] == ROWS, summary
                    assert len(lines) == ROWS + 1
                    ours.append(wall)
                    rss.append(peak)
                else:
                    t0 = time.perf_counter()
                    subprocess.run(
                        [
                            psql,
                            "-q",
                            "-v",
                            "ON_ERROR_STOP=1",
                            "-c",
                            "BEGIN",
                            "-c",
                            STATEMENT,
                            "-c",
                            "ROLLBACK",
                            pg.dsn(),
                        ],
                        check=True,
                        capture_output=True,
                    )
                    floors.append(time.perf_counter() - t0)
                log(f"{NAME}: run {k + 1}/{ctx.runs} {what}")
        after = int(pgb.one(conn, "SELECT sum(abalance) FROM pgbench_accounts"))
        assert after == total, "whatif changed the table"
        conn.close()
    finally:
        pg.stop()
    floor = statistics.median(floors)
    res.figures += [
        Figure(
            f"whatif of a {ROWS:,}-row UPDATE (whole command, json out)",
            "s",
            ours,
            rss,
            better="lower",
            peer="the statement alone, rolled back by psql",
            peer_ratio=statistics.median(ours) / floor,
        ),
        Figure("floor: the statement in a rolled-back transaction (psql)", "s", floors, []),
    ]
    return res
