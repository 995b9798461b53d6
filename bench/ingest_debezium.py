"""Debezium file ingest throughput: ``python -m bench.ingest_debezium [--events N] [--runs R]``.

Generates N realistic Debezium change events (an ``orders`` table of 15 mixed-type columns,
REPLICA IDENTITY FULL so updates and deletes carry full before images; 80% updates, 15%
inserts, 5% deletes, 1-5 events per transaction), once without and once with the Kafka
Connect schema wrapper. Each file is ingested ``--runs`` times into a fresh store, and
decoded ``--runs`` times without a store. Every run is a child process, which reports its
own peak RSS (``VmHWM``) and CPU time. Prints one JSON object: medians of events per
second (wall clock, and per CPU second, which shared machines disturb less), peak RSS, and
store bytes per event.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

STATUSES = ("new", "paid", "packed", "shipped", "delivered", "returned")
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()
FIELDS: list[dict[str, Any]] = [
    {"type": "int64", "optional": False, "field": "id"},
    {"type": "int64", "optional": False, "field": "customer_id"},
    {"type": "string", "optional": False, "field": "status"},
    {
        "type": "bytes",
        "optional": True,
        "name": "org.apache.kafka.connect.data.Decimal",
        "version": 1,
        "parameters": {"scale": "2", "connect.decimal.precision": "12"},
        "field": "amount",
    },
    {"type": "string", "optional": True, "field": "currency"},
    {"type": "int32", "optional": True, "field": "quantity"},
    {"type": "float64", "optional": True, "field": "discount"},
    {"type": "boolean", "optional": True, "field": "paid"},
    {"type": "string", "optional": True, "field": "note"},
    {"type": "string", "optional": True, "field": "shipping_address"},
    {
        "type": "int64",
        "optional": True,
        "name": "io.debezium.time.MicroTimestamp",
        "version": 1,
        "field": "created_at",
    },
    {
        "type": "string",
        "optional": True,
        "name": "io.debezium.time.ZonedTimestamp",
        "version": 1,
        "field": "updated_at",
    },
    {"type": "int32", "optional": True, "name": "io.debezium.time.Date", "field": "ship_date"},
    {"type": "string", "optional": True, "name": "io.debezium.data.Uuid", "field": "tracking"},
    {"type": "string", "optional": True, "name": "io.debezium.data.Json", "field": "attributes"},
]


def _schema() -> dict[str, Any]:
    row = {"type": "struct", "fields": FIELDS, "optional": True, "name": "srv.public.orders.Value"}
    source = {
        "type": "struct",
        "name": "io.debezium.connector.postgresql.Source",
        "optional": False,
        "fields": [
            {"type": "string", "optional": False, "field": f}
            for f in ("version", "connector", "name", "db", "schema", "table")
        ]
        + [
            {"type": "int64", "optional": False, "field": "ts_ms"},
            {"type": "int64", "optional": True, "field": "txId"},
            {"type": "int64", "optional": True, "field": "lsn"},
        ],
        "field": "source",
    }
    return {
        "type": "struct",
        "name": "srv.public.orders.Envelope",
        "optional": False,
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            source,
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
        ],
    }


def _decimal(cents: int) -> str:
    n = (cents.bit_length() + 8) // 8
    return base64.b64encode(cents.to_bytes(n, "big", signed=True)).decode()


def _row(rng: random.Random, key: int, ts_us: int) -> dict[str, Any]:
    note = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 20)))
    return {
        "id": key,
        "customer_id": rng.randint(1, 100_000),
        "status": rng.choice(STATUSES),
        "amount": _decimal(rng.randint(-10_000, 10_000_000)),
        "currency": rng.choice(("EUR", "USD", "GBP")),
        "quantity": rng.randint(1, 50),
        "discount": round(rng.random() * 0.3, 4),
        "paid": rng.random() < 0.7,
        "note": note,
        "shipping_address": f"{rng.randint(1, 999)} {rng.choice(WORDS).title()} Street, "
        f"{rng.randint(10000, 99999)} {rng.choice(WORDS).title()}ville",
        "created_at": ts_us - rng.randint(0, 10**12),
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_us // 10**6))
        + f".{ts_us % 10**6:06d}Z",
        "ship_date": 19000 + rng.randint(0, 1000),
        "tracking": str(uuid.UUID(int=rng.getrandbits(128))),
        "attributes": json.dumps({"gift": rng.random() < 0.1, "tags": rng.sample(WORDS, 3)}),
    }


def generate(path: Path, events: int, wrapped: bool, seed: int = 7) -> int:
    """Write ``events`` events to ``path``; returns the file's size in bytes."""
    rng = random.Random(seed)
    live: dict[int, dict[str, Any]] = {}
    keys: list[int] = []
    next_key, txid, lsn, ts_us = 1, 10_000, 0x1000000, 1_700_000_000_000_000
    schema = _schema()
    with path.open("wb") as f:
        written = 0
        while written < events:
            txid += 1
            ts_us += rng.randint(100, 5000)
            for _ in range(min(rng.randint(1, 5), events - written)):
                lsn += rng.randint(100, 400)
                r = rng.random()
                if r < 0.15 or len(keys) < 1000:
                    op, before, after = "c", None, _row(rng, next_key, ts_us)
                    live[next_key] = after
                    keys.append(next_key)
                    next_key += 1
                elif r < 0.20:
                    i = rng.randrange(len(keys))
                    keys[i], keys[-1] = keys[-1], keys[i]
                    k = keys.pop()
                    op, before, after = "d", live.pop(k), None
                else:
                    k = keys[rng.randrange(len(keys))]
                    before = live[k]
                    after = {**_row(rng, k, ts_us), "created_at": before["created_at"]}
                    op = "u"
                    live[k] = after
                payload = {
                    "before": before,
                    "after": after,
                    "source": {
                        "version": "2.5.0.Final",
                        "connector": "postgresql",
                        "name": "srv",
                        "ts_ms": ts_us // 1000,
                        "snapshot": "false",
                        "db": "shop",
                        "sequence": f'["{lsn - 500}","{lsn}"]',
                        "schema": "public",
                        "table": "orders",
                        "txId": txid,
                        "lsn": lsn,
                        "xmin": None,
                    },
                    "op": op,
                    "ts_ms": ts_us // 1000 + 3,
                    "transaction": None,
                }
                doc = {"schema": schema, "payload": payload} if wrapped else payload
                f.write(orjson.dumps(doc) + b"\n")
                written += 1
    return path.stat().st_size


# -- child processes -------------------------------------------------------------------


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _child(mode: str, file: str, store: str) -> None:
    from rowback.sources.debezium.decode import Decoder
    from rowback.sources.debezium.ingest import ingest_file, read_lines
    from rowback.store.duckdb.store import DuckDBStore

    t0 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    if mode == "decode":
        decoder, n = Decoder(), 0
        with open(file, "rb") as f:
            for _, line in read_lines(f):
                decoder.decode(line)
                n += 1
        out: dict[str, Any] = {"events": n, "quarantined": 0}
    else:
        with DuckDBStore(store) as s:
            r = ingest_file(s, file)
        out = {"events": r.events, "quarantined": r.quarantined}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out |= {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu0,
        "rss_mb": _peak_rss_mb(),
    }
    print(json.dumps(out))


def _run_child(mode: str, file: Path, store: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(file), str(store)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench(events: int, runs: int, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"events": events, "runs": runs}
    for wrapped in (False, True):
        name = "with_schema" if wrapped else "without_schema"
        file = work / f"{name}.jsonl"
        size = generate(file, events, wrapped)
        figures: dict[str, Any] = {"file_bytes_per_event": round(size / events)}
        for mode in ("decode", "ingest"):
            results = []
            for _ in range(runs):
                store = work / "store"
                shutil.rmtree(store, ignore_errors=True)
                r = _run_child(mode, file, store)
                if mode == "ingest":
                    r["store_bytes"] = _dir_bytes(store)
                results.append(r)
            rate = statistics.median(r["events"] / r["seconds"] for r in results)
            figures[f"{mode}_events_per_s"] = round(rate)
            # Per CPU second too: on a shared machine wall-clock rates swing with load.
            cpu_rate = statistics.median(r["events"] / r["cpu_seconds"] for r in results)
            figures[f"{mode}_events_per_cpu_s"] = round(cpu_rate)
            figures[f"{mode}_peak_rss_mb"] = round(statistics.median(r["rss_mb"] for r in results))
            if mode == "ingest":
                stored = statistics.median(r["store_bytes"] for r in results)
                figures["store_bytes_per_event"] = round(stored / events, 1)
                figures["quarantined"] = results[0]["quarantined"]
        out[name] = figures
        file.unlink()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ingest_debezium", description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000, help="events per file")
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (median shown)")
    ap.add_argument("--dir", help="scratch directory (default: a temporary one)")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "FILE", "STORE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    work = Path(args.dir or tempfile.mkdtemp(prefix="rowback-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(json.dumps(bench(args.events, args.runs, work), indent=2))
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
