"""service_live: `rowback run` under `pgbench -c 4`, with and without 8 HTTP readers.

What a user sees, end to end: the real `rowback run` process captures a PostgreSQL with
its default server settings (as `initdb` leaves them) while pgbench writes. Each run does,
in alternating order, pgbench alone-with-the-service and pgbench with 8 concurrent HTTP
clients reading (history of random accounts, as-of of a small table and of an account
range, transactions), each waiting READER_THINK_S between its requests, as operators at
consoles do. (Until 2026-12-03 they read back to back: with 2 read slots that measured
the queue in front of the slots, 8 deep, rather than how long a read takes.)

Lag is measured as a user would notice it: every 0.25 s a probe commits an update to a
captured table and asks the service's `/api/v1/status` every 50 ms until the store's
durable position passes that commit; the lag is the time in between (to within 50 ms: a
probe asking 100 times a second would itself be a load no real poller puts on it). Read
latencies are the clients' own request times (p50 per kind). Peak RSS is the service
process's VmHWM.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import pg as pgb
from bench.harness import BenchResult, Ctx, Figure, log, percentile
from rowback.pgserver import PgServer

NAME = "service_live"
READERS = 8
READER_THINK_S = 0.5


def _lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


class Service:
    def __init__(self, dsn: str, store: Path, detect: bool = True) -> None:
        self.log = store.parent / "run.log"
        (store / "service.json").unlink(missing_ok=True)
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rowback.cli",
                    "run",
                    "--source",
                    dsn,
                    "--store",
                    str(store),
                    *([] if detect else ["--no-detect"]),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 900
        while not (store / "service.json").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rowback run did not start: {self.log.read_text()[-500:]}")
            time.sleep(0.1)
        doc = orjson.loads((store / "service.json").read_bytes())
        self.url = str(doc["url"])
        self.headers = {"Authorization": f"Bearer {doc['token']}"}
        with httpx.Client(base_url=self.url, headers=self.headers) as c:
            while c.get("/readyz").status_code != 200:
                time.sleep(0.1)

    def position(self, c: httpx.Client) -> int:
        pos = c.get("/api/v1/status").json()["sources"][0]["position"]
        return _lsn(pos) if pos else 0

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


class Probe(threading.Thread):
    """Commit → durable in the service, every 0.25 s."""

    def __init__(self, pg: PgServer, svc: Service) -> None:
        super().__init__(daemon=True)
        self.pg, self.svc = pg, svc
        self.lags: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        conn = pgb.connect(self.pg)
        with httpx.Client(base_url=self.svc.url, headers=self.svc.headers, timeout=30) as c:
            while not self.halt.is_set():
                with conn.cursor() as cur:
                    cur.execute("UPDATE rb_probe SET v = v + 1 WHERE id = 1")
                    cur.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
                    row = cur.fetchone()
                    assert row is not None
                    lsn = int(row[0])
                t0 = time.perf_counter()
                while self.svc.position(c) < lsn and not self.halt.is_set():
                    time.sleep(0.05)
                self.lags.append(time.perf_counter() - t0)
                self.halt.wait(0.25)
        conn.close()


class Reader(threading.Thread):
    def __init__(self, svc: Service, i: int, accounts: int, txids: list[int]) -> None:
        super().__init__(daemon=True)
        self.svc, self.i, self.accounts, self.txids = svc, i, accounts, txids
        self.times: dict[str, list[float]] = {"history": [], "asof": [], "tx": []}
        self.errors = 0
        self.halt = threading.Event()
        self.rng = random.Random(i)

    def run(self) -> None:
        with httpx.Client(base_url=self.svc.url, headers=self.svc.headers, timeout=60) as c:
            while not self.halt.is_set():
                kind = ("history", "history", "asof", "tx")[self.i % 4]
                t0 = time.perf_counter()
                if kind == "history":
                    aid = self.rng.randint(1, self.accounts)
                    r = c.get("/api/v1/tables/pgbench_accounts/history", params={"key": aid})
                elif kind == "asof":
                    if self.rng.random() < 0.5:
                        r = c.get("/api/v1/tables/pgbench_tellers/asof", params={"at": "-1s"})
                    else:
                        lo = self.rng.randint(1, self.accounts - 100)
                        r = c.get(
                            "/api/v1/tables/pgbench_accounts/asof",
                            params={
                                "at": "-2s",
                                "filter": [f"aid:ge:{lo}", f"aid:lt:{lo + 100}"],
                            },
                        )
                else:
                    txid = self.rng.choice(self.txids)
                    r = c.get(f"/api/v1/tx/{txid}")
                if r.status_code != 200:
                    self.errors += 1
                self.times[kind].append(time.perf_counter() - t0)
                self.halt.wait(READER_THINK_S)


def _txids(svc: Service) -> list[int]:
    with httpx.Client(base_url=svc.url, headers=svc.headers, timeout=60) as c:
        rows = c.get(
            "/api/v1/changes", params={"table": "pgbench_branches", "format": "ndjson"}
        ).text.splitlines()
    ids = sorted({int(orjson.loads(r)["txid"]) for r in rows[-2000:]})
    return ids or [0]


def _one(pg: PgServer, svc: Service, seconds: int, readers: bool, accounts: int) -> dict[str, Any]:
    probe = Probe(pg, svc)
    clients = [Reader(svc, i, accounts, _txids(svc)) for i in range(READERS)] if readers else []
    probe.start()
    for c in clients:
        c.start()
    bench = pgb.pgbench(pg, "-c", "4", "-j", "2", "-T", str(seconds))
    probe.halt.set()
    for c in clients:
        c.halt.set()
    probe.join(60)
    for c in clients:
        c.join(120)
    times: dict[str, list[float]] = {"history": [], "asof": [], "tx": []}
    for c in clients:
        for k, v in c.times.items():
            times[k] += v
    return {
        "tps": bench["tps"],
        "lag_p50": percentile(probe.lags, 50),
        "lag_p99": percentile(probe.lags, 99),
        "lag_max": max(probe.lags, default=float("nan")),
        "probes": len(probe.lags),
        "reads": sum(len(v) for v in times.values()),
        "read_errors": sum(c.errors for c in clients),
        **{f"{k}_p50_ms": percentile(v, 50) * 1000 for k, v in times.items() if v},
        **{f"{k}_p99_ms": percentile(v, 99) * 1000 for k, v in times.items() if v},
    }


def run(ctx: Ctx) -> BenchResult:
    scale = 1 if ctx.quick else 10
    seconds = 5 if ctx.quick else 20
    work = ctx.work_dir(NAME)
    store = work / "store"
    store.mkdir()
    res = BenchResult(
        NAME,
        params={
            "scale": scale,
            "pgbench": f"-c 4 -j 2 -T {seconds}",
            "server settings": "initdb defaults (fsync on, max_wal_size 1GB)",
            "readers": READERS,
            "reader think time": f"{READER_THINK_S} s",
        },
    )
    pg = PgServer(settings={}, fast=False).start()
    svc: Service | None = None
    alone: list[dict[str, Any]] = []
    busy: list[dict[str, Any]] = []
    try:
        pgb.pgbench_init(pg, scale)
        conn = pgb.connect(pg)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE rb_probe (id int PRIMARY KEY, v int)")
            cur.execute("INSERT INTO rb_probe VALUES (1, 0)")
        conn.close()
        log(f"{NAME}: starting rowback run (initial snapshot)")
        svc = Service(pg.dsn(), store)
        pgb.pgbench(pg, "-c", "4", "-j", "2", "-T", "3")  # some history for tx/history reads
        for k in range(ctx.runs):
            for readers in (False, True) if k % 2 == 0 else (True, False):
                log(f"{NAME}: run {k + 1}/{ctx.runs}, readers={readers}")
                got = _one(pg, svc, seconds, readers, 100_000 * scale)
                (busy if readers else alone).append(got)
        rss = svc.peak_rss_mb()
    finally:
        if svc is not None:
            svc.stop()
        pg.stop()
    res.params["runs_detail"] = {"alone": alone, "with_readers": busy}
    r = [rss] * ctx.runs

    def fig(name: str, key: str, runs: list[dict[str, Any]], **kw: Any) -> Figure:
        return Figure(name, kw.pop("unit", "s"), [x[key] for x in runs], r, better="lower", **kw)

    res.figures += [
        fig("commit→durable lag p99, no readers", "lag_p99", alone, target=1.0),
        fig("commit→durable lag p99, 8 HTTP readers", "lag_p99", busy, target=1.0),
        fig("commit→durable lag p50, 8 HTTP readers", "lag_p50", busy),
        fig("history p50 over HTTP while capturing", "history_p50_ms", busy, unit="ms", target=20),
        fig("tx p50 over HTTP while capturing", "tx_p50_ms", busy, unit="ms", target=20),
        fig("as-of p50 over HTTP while capturing", "asof_p50_ms", busy, unit="ms"),
        Figure("pgbench TPS, no readers", "tps", [x["tps"] for x in alone], r),
        Figure("pgbench TPS, 8 HTTP readers", "tps", [x["tps"] for x in busy], r),
        Figure(
            "HTTP reads per second",
            "reads/s",
            [x["reads"] / seconds for x in busy],
            r,
            note=f"errors: {sum(x['read_errors'] for x in busy)}",
        ),
    ]
    res.notes.append(
        "peak RSS is the service's (capture + API) over the whole benchmark; lag medians "
        f"over runs: {statistics.median([x['lag_p99'] for x in busy]):.3f} s with readers"
    )
    return res
