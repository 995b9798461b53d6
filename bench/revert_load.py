"""revert_load: undo a 100,000-row bad UPDATE while pgbench writes other rows.

What a user sees, end to end: `rowback run` captures a cluster with `initdb`'s default
settings (pgbench scale 10, 1M accounts). Each run damages accounts 1..100,000 in one
transaction (`UPDATE … SET abalance = -1`), waits until the shadow holds it, then, while
`pgbench -c 4 -j 2` updates accounts above 100,000 (and tellers, branches, history, as
TPC-B does), times the whole `rowback revert --txid X` command (through the service:
plan, guards, apply and record). In the same run and under the same load, the floor:
the same rows damaged again and restored by PostgreSQL alone with one `UPDATE … FROM` a
table of the saved values. Order alternates between runs.

Checked, not assumed: after each revert every damaged account holds its saved value,
and at the end no concurrent write was lost (each account's and teller's balance equals
the sum of pgbench's history deltas for it).

Then, with pgbench stopped and the service too, planning 1M rows: all accounts damaged
in one transaction, and `rowback revert --dry-run --format json` of it offline, timed,
with its peak RSS (VmHWM sampled every 20 ms).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench import pg as pgb
from bench.harness import BenchResult, Ctx, Figure, log, run_command
from bench.service_live import Service, _lsn
from rowback.pgserver import PgServer

NAME = "revert_load"
DAMAGED = 100_000
DETECT = os.environ.get("BENCH_REVERT_DETECT", "1") != "0"
"""Detection in the service (the default, as users run it); BENCH_REVERT_DETECT=0 turns
it off: at 2 cores, detection's cost makes the service fall behind this load."""


def _script(path: Path, scale: int) -> Path:
    path.write_text(
        f"\\set aid random({DAMAGED + 1}, {100_000 * scale})\n"
        f"\\set bid random(1, {scale})\n"
        f"\\set tid random(1, {10 * scale})\n"
        "\\set delta random(-5000, 5000)\n"
        "BEGIN;\n"
        "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n"
        "UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;\n"
        "UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;\n"
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
        "VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);\n"
        "END;\n"
    )
    return path


def _damage(conn: Any, where: str = f"aid <= {DAMAGED}") -> tuple[int, int]:
    """One damaging transaction: its txid and the WAL position after it."""
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute(f"UPDATE pgbench_accounts SET abalance = -1 WHERE {where}")
        cur.execute("SELECT pg_current_xact_id()::xid::text")
        txid = int(cur.fetchone()[0])
        cur.execute("COMMIT")
        cur.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        return txid, int(cur.fetchone()[0])


def _wait_shadow(svc: Service, lsn: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=svc.url, headers=svc.headers, timeout=60) as c:
        while svc.position(c) < lsn:
            if time.monotonic() > deadline:
                raise RuntimeError("the shadow did not catch up with the damage")
            time.sleep(0.1)


def _rowback(*args: str) -> tuple[float, float, str, str]:
    """A whole rowback command: wall seconds, peak RSS (MiB), stdout, stderr."""
    got = run_command([sys.executable, "-m", "rowback.cli", *args])
    return got.seconds, got.peak_rss_mb, got.out, got.err


def _exec(conn: Any, sql: str) -> None:
    with conn.cursor() as cur:
        cur.execute(sql)


def _wrong(conn: Any) -> int:
    return int(
        pgb.one(
            conn,
            "SELECT count(*) FROM pgbench_accounts a JOIN rb_saved s USING (aid) "
            "WHERE a.abalance IS DISTINCT FROM s.abalance",
        )
    )


def _lost(conn: Any) -> int:
    """Accounts and tellers whose balance is not the sum of their history deltas."""
    return int(
        pgb.one(
            conn,
            f"""SELECT
              (SELECT count(*) FROM pgbench_accounts a
                 LEFT JOIN (SELECT aid, sum(delta) d FROM pgbench_history GROUP BY aid) h
                 USING (aid)
               WHERE a.aid > {DAMAGED} AND a.abalance <> coalesce(h.d, 0))
            + (SELECT count(*) FROM pgbench_tellers t
                 LEFT JOIN (SELECT tid, sum(delta) d FROM pgbench_history GROUP BY tid) h
                 USING (tid)
               WHERE t.tbalance <> coalesce(h.d, 0))""",
        )
    )


def run(ctx: Ctx) -> BenchResult:
    scale = 2 if ctx.quick else 10
    seconds = 30 if ctx.quick else 60
    work = ctx.work_dir(NAME)
    store = work / "store"
    store.mkdir()
    script = _script(work / "others.sql", scale)
    res = BenchResult(
        NAME,
        params={
            "scale": scale,
            "damaged rows": DAMAGED,
            "pgbench": f"-c 4 -j 2 -T {seconds} -n, TPC-B on accounts > {DAMAGED}",
            "server settings": "initdb defaults",
            "detection in the service": "on" if DETECT else "off (--no-detect)",
        },
    )
    pg = PgServer(settings={}, fast=False).start()
    svc: Service | None = None
    reverts: list[float] = []
    applies: list[float] = []
    floors: list[float] = []
    rss: list[float] = []
    lost = wrong = 0
    tps = float("nan")
    plan_s = plan_rss = float("nan")
    try:
        pgb.pgbench_init(pg, scale)
        conn = pgb.connect(pg)
        _exec(
            conn,
            "CREATE TABLE rb_saved AS SELECT aid, abalance FROM pgbench_accounts "
            f"WHERE aid <= {DAMAGED}",
        )
        _exec(conn, "ALTER TABLE rb_saved ADD PRIMARY KEY (aid)")
        log(f"{NAME}: starting rowback run (initial snapshot)")
        svc = Service(pg.dsn(), store, DETECT)
        bench = subprocess.Popen(
            [
                str(pg.bindir / "pgbench"),
                "-n",
                "-c",
                "4",
                "-j",
                "2",
                "-T",
                str(seconds * ctx.runs + 30),
                "-f",
                str(script),
                *pgb.conn_args(pg),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(3)
        # pgbench is stopped before its -T ends and prints no summary: count its history
        done0, began = int(pgb.one(conn, "SELECT count(*) FROM pgbench_history")), time.time()
        for k in range(ctx.runs):
            order = ("revert", "floor") if k % 2 == 0 else ("floor", "revert")
            for what in order:
                txid, lsn = _damage(conn)
                if what == "floor":
                    t0 = time.perf_counter()
                    _exec(
                        conn,
                        "UPDATE pgbench_accounts a SET abalance = s.abalance FROM rb_saved s "
                        "WHERE a.aid = s.aid",
                    )
                    floors.append(time.perf_counter() - t0)
                else:
                    _wait_shadow(svc, lsn)
                    wall, _, _, err = _rowback(
                        "revert",
                        "--txid",
                        str(txid),
                        "--store",
                        str(store),
                        "--target",
                        pg.dsn(),
                        "--reason",
                        "bench",
                        "--format",
                        "json",
                    )
                    reverts.append(wall)
                    m = re.search(r"applied in ([\d.]+) s", err)
                    applies.append(float(m.group(1)) if m else float("nan"))
                    rss.append(svc.peak_rss_mb())
                wrong += _wrong(conn)
                log(
                    f"{NAME}: run {k + 1}/{ctx.runs} {what}: "
                    f"{(reverts if what == 'revert' else floors)[-1]:.2f} s"
                )
        done1, ended = int(pgb.one(conn, "SELECT count(*) FROM pgbench_history")), time.time()
        tps = (done1 - done0) / (ended - began)
        bench.terminate()
        bench.communicate(120)
        lost = _lost(conn)
        svc.stop()
        svc = None
        log(f"{NAME}: planning 1M rows offline")
        txid, _ = _damage(conn, "true")
        svc = Service(pg.dsn(), store, DETECT)  # capture the 1M-row damage
        _wait_shadow(svc, int(pgb.one(conn, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")))
        svc.stop()
        svc = None
        plan_s, plan_rss, got, _ = _rowback(
            "revert",
            "--txid",
            str(txid),
            "--store",
            str(store),
            "--dry-run",
            "--max-rows",
            "2000000",
            "--format",
            "json",
        )
        planned = got.count('"action"')
        res.params["planned cells"] = planned
        conn.close()
    finally:
        if svc is not None:
            svc.stop()
        pg.stop()
    floor = statistics.median(floors) if floors else float("nan")
    res.figures += [
        Figure(
            f"apply of a {DAMAGED:,}-row revert under pgbench (first write → commit)",
            "s",
            applies,
            rss,
            target=2.0,
            better="lower",
            peer="UPDATE … FROM saved values, same load",
            peer_ratio=statistics.median(applies) / floor if floors else None,
            note=f"rows left wrong after reverts: {wrong}",
        ),
        Figure(
            "the whole `rowback revert` command (catch-up check, plan, apply, record)",
            "s",
            reverts,
            rss,
            better="lower",
            peer="UPDATE … FROM saved values",
            peer_ratio=statistics.median(reverts) / floor if floors else None,
        ),
        Figure("floor: UPDATE … FROM saved values", "s", floors, [], better="lower"),
        Figure("concurrent writes lost (target 0)", "rows", [float(lost)], []),
        Figure("pgbench TPS during the runs", "tps", [tps], []),
        Figure(
            "plan of 1M rows (dry run, offline, whole command)",
            "s",
            [plan_s],
            [plan_rss],
            better="lower",
        ),
    ]
    res.notes.append(
        "peak RSS beside the revert is the service's (the revert runs inside `rowback run`)"
    )
    return res


__all__ = ["run", "_lsn"]
