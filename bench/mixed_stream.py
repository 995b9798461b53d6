"""A realistic Debezium stream: three tables interleaved in transaction order.

``write(dir, events, wrapped)`` writes ``mixed.jsonl`` (every event, in commit order) and
``<table>.jsonl`` (the same events, one file per table, in the same order). What makes it
realistic, unlike ``bench/ingest_debezium.py``'s single friendly table:

- three tables, ``orders``, ``order_items`` and ``customers``, whose events interleave the
  way a transaction-ordered stream does: a transaction has 1-40 events (mostly few),
  touching one to three of the tables;
- the column types Debezium's PostgreSQL connector emits with
  ``decimal.handling.mode=string``: ZonedTimestamp, Date, Json, Uuid, decimals as strings,
  unicode text, ints, booleans, doubles, and nullable columns (some mostly NULL, one never
  set);
- ~1 kB per event without the schema wrapper; inserts, updates (``customers`` with
  REPLICA IDENTITY DEFAULT: no before image; the others FULL) and deletes;
- Debezium 2.x's envelope (``ts_us``/``ts_ns``, ``sequence``, ``transaction``).

``python -m bench.mixed_stream DIR [--events N] [--wrapped]`` writes the files.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

TABLES = ("orders", "order_items", "customers")
WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
    "Zürich São Paulo Kraków Ærøskøbing Łódź naïve café crème brûlée 東京 서울 Δέλτα"
).split()
STATUSES = ("new", "paid", "packed", "shipped", "delivered", "returned")


def _f(name: str, kind: str, optional: bool = True, semantic: str | None = None) -> dict[str, Any]:
    f: dict[str, Any] = {"type": kind, "optional": optional, "field": name}
    if semantic:
        f |= {"name": semantic, "version": 1}
    return f


ZONED, DATE = "io.debezium.time.ZonedTimestamp", "io.debezium.time.Date"
UUID, JSON = "io.debezium.data.Uuid", "io.debezium.data.Json"
FIELDS: dict[str, list[dict[str, Any]]] = {
    "orders": [
        _f("id", "int64", False),
        _f("customer_id", "int64", False),
        _f("status", "string", False),
        _f("total", "string"),  # numeric(12,2), decimal.handling.mode=string
        _f("currency", "string"),
        _f("discount", "float64"),
        _f("paid", "boolean"),
        _f("note", "string"),
        _f("shipping_address", "string"),
        _f("created_at", "string", False, ZONED),
        _f("updated_at", "string", True, ZONED),
        _f("cancelled_at", "string", True, ZONED),  # mostly NULL
        _f("ship_date", "int32", True, DATE),
        _f("tracking", "string", True, UUID),
        _f("attributes", "string", True, JSON),
    ],
    "order_items": [
        _f("id", "int64", False),
        _f("order_id", "int64", False),
        _f("sku", "string", False),
        _f("title", "string"),
        _f("quantity", "int32"),
        _f("unit_price", "string"),  # numeric(10,2)
        _f("tax_rate", "string"),  # numeric(5,4)
        _f("gift", "boolean"),
        _f("options", "string", True, JSON),
        _f("created_at", "string", False, ZONED),
        _f("reserved_until", "string", True, ZONED),  # mostly NULL
        _f("warehouse", "string", True, UUID),
        _f("legacy_code", "string"),  # never set
    ],
    "customers": [
        _f("id", "int64", False),
        _f("email", "string", False),
        _f("name", "string"),
        _f("country", "string"),
        _f("birthday", "int32", True, DATE),
        _f("balance", "string"),  # numeric(14,2)
        _f("vip", "boolean"),
        _f("score", "float64"),
        _f("preferences", "string", True, JSON),
        _f("external_id", "string", False, UUID),
        _f("signed_up_at", "string", False, ZONED),
        _f("last_login_at", "string", True, ZONED),
        _f("phone", "string"),  # NULL for a third
        _f("bio", "string"),
    ],
}


def _schema(table: str) -> dict[str, Any]:
    row = {
        "type": "struct",
        "fields": FIELDS[table],
        "optional": True,
        "name": f"srv.public.{table}.Value",
    }
    source_fields = [
        _f(n, "string", False) for n in ("version", "connector", "name", "db", "schema", "table")
    ]
    source_fields += [_f("ts_ms", "int64", False), _f("snapshot", "string", True)]
    source_fields += [_f("sequence", "string"), _f("ts_us", "int64"), _f("ts_ns", "int64")]
    source_fields += [_f("txId", "int64"), _f("lsn", "int64"), _f("xmin", "int64")]
    source = {
        "type": "struct",
        "name": "io.debezium.connector.postgresql.Source",
        "optional": False,
        "fields": source_fields,
        "field": "source",
    }
    transaction = {
        "type": "struct",
        "optional": True,
        "name": "event.block",
        "version": 1,
        "fields": [
            _f("id", "string", False),
            _f("total_order", "int64", False),
            _f("data_collection_order", "int64", False),
        ],
        "field": "transaction",
    }
    return {
        "type": "struct",
        "name": f"srv.public.{table}.Envelope",
        "version": 2,
        "optional": False,
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            source,
            transaction,
            _f("op", "string", False),
            _f("ts_ms", "int64"),
            _f("ts_us", "int64"),
            _f("ts_ns", "int64"),
        ],
    }


def _zoned(us: int) -> str:
    frac = f".{us % 10**6:06d}".rstrip("0").rstrip(".")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us // 10**6)) + frac + "Z"


def _words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _money(rng: random.Random, hi: int) -> str:
    cents = rng.randint(0, hi)
    return f"{cents // 100}.{cents % 100:02d}"


class _Rows:
    """Row images per table, each a plausible version of the one before."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def orders(self, key: int, ts: int, old: dict[str, Any] | None) -> dict[str, Any]:
        r = self.rng
        return {
            "id": key,
            "customer_id": old["customer_id"] if old else r.randint(1, 200_000),
            "status": r.choice(STATUSES),
            "total": _money(r, 5_000_000),
            "currency": r.choice(("EUR", "USD", "GBP", "CHF")),
            "discount": r.choice((0.0, 0.05, 0.1, round(r.random() * 0.3, 4))),
            "paid": r.random() < 0.7,
            "note": _words(r, 8, 22) if r.random() < 0.8 else None,
            "shipping_address": f"{r.randint(1, 999)} {r.choice(WORDS).title()} Straße, "
            f"{r.randint(10000, 99999)} {r.choice(WORDS).title()}",
            "created_at": old["created_at"] if old else _zoned(ts),
            "updated_at": _zoned(ts) if old else None,
            "cancelled_at": _zoned(ts) if r.random() < 0.03 else None,
            "ship_date": 19_000 + r.randint(0, 1500) if r.random() < 0.6 else None,
            "tracking": str(uuid.UUID(int=r.getrandbits(128))) if r.random() < 0.7 else None,
            "attributes": json.dumps(
                {"gift": r.random() < 0.1, "tags": r.sample(WORDS, 3), "v": r.randint(1, 9)},
                ensure_ascii=False,
            ),
        }

    def order_items(self, key: int, ts: int, old: dict[str, Any] | None) -> dict[str, Any]:
        r = self.rng
        return {
            "id": key,
            "order_id": old["order_id"] if old else r.randint(1, 500_000),
            "sku": f"SKU-{r.randint(0, 99_999):05d}",
            "title": _words(r, 4, 12),
            "quantity": r.randint(1, 12),
            "unit_price": _money(r, 100_000),
            "tax_rate": r.choice(("0.0000", "0.0700", "0.1900", "0.2000", "0.0550")),
            "gift": r.random() < 0.05,
            "options": json.dumps(
                {"size": r.choice("SMLX"), "colour": r.choice(WORDS), "engrave": None},
                ensure_ascii=False,
            ),
            "created_at": old["created_at"] if old else _zoned(ts),
            "reserved_until": _zoned(ts + 86_400_000_000) if r.random() < 0.1 else None,
            "warehouse": str(uuid.UUID(int=r.getrandbits(128))),
            "legacy_code": None,
        }

    def customers(self, key: int, ts: int, old: dict[str, Any] | None) -> dict[str, Any]:
        r = self.rng
        return {
            "id": key,
            "email": old["email"] if old else f"user{key}@example.com",
            "name": f"{r.choice(WORDS).title()} {r.choice(WORDS).title()}",
            "country": r.choice(("DE", "FR", "PL", "BR", "JP", "KR", "GR", "CH")),
            "birthday": r.randint(-20_000, 12_000) if r.random() < 0.8 else None,
            "balance": _money(r, 10**9),
            "vip": r.random() < 0.1,
            "score": round(r.random() * 100, 3),
            "preferences": json.dumps(
                {"newsletter": r.random() < 0.5, "lang": r.choice(("de", "fr", "ja", "pt"))}
            ),
            "external_id": old["external_id"] if old else str(uuid.UUID(int=r.getrandbits(128))),
            "signed_up_at": old["signed_up_at"] if old else _zoned(ts),
            "last_login_at": _zoned(ts) if old else None,
            "phone": f"+49 30 {r.randint(1_000_000, 9_999_999)}" if r.random() < 0.66 else None,
            "bio": _words(r, 3, 20),
        }


FULL_BEFORE = {"orders": True, "order_items": True, "customers": False}
WEIGHTS = {"orders": 0.35, "order_items": 0.45, "customers": 0.20}


def write(out: Path, events: int, wrapped: bool, seed: int = 11) -> dict[str, int]:
    """Write ``out/mixed.jsonl`` and ``out/<table>.jsonl``; events per file."""
    rng = random.Random(seed)
    rows = _Rows(rng)
    live: dict[str, dict[int, dict[str, Any]]] = {t: {} for t in TABLES}
    keys: dict[str, list[int]] = {t: [] for t in TABLES}
    next_key = dict.fromkeys(TABLES, 1)
    schemas = {t: _schema(t) for t in TABLES}
    files = {t: (out / f"{t}.jsonl").open("wb") for t in TABLES}
    mixed = (out / "mixed.jsonl").open("wb")
    counts = dict.fromkeys(TABLES, 0)
    txid, lsn, ts = 780_000, 0x2000000, 1_764_720_000_000_000
    written = 0
    try:
        while written < events:
            txid += 1
            ts += rng.randint(200, 20_000)
            n = min(1 + int(39 * rng.random() ** 3), events - written)  # 1-40, mostly few
            tables = rng.sample(TABLES, rng.randint(1, 3))
            for i in range(n):
                t = rng.choices(tables, [WEIGHTS[x] for x in tables])[0]
                lsn += rng.randint(80, 600)
                u = rng.random()
                if u < 0.35 or len(keys[t]) < 200:
                    k = next_key[t]
                    next_key[t] += 1
                    op, before, after = "c", None, getattr(rows, t)(k, ts, None)
                    live[t][k] = after
                    keys[t].append(k)
                elif u < 0.40:
                    j = rng.randrange(len(keys[t]))
                    keys[t][j], keys[t][-1] = keys[t][-1], keys[t][j]
                    k = keys[t].pop()
                    op, before, after = "d", live[t].pop(k), None
                else:
                    k = keys[t][rng.randrange(len(keys[t]))]
                    old = live[t][k]
                    op, after = "u", getattr(rows, t)(k, ts, old)
                    before = old if FULL_BEFORE[t] else None
                    live[t][k] = after
                payload = {
                    "before": before,
                    "after": after,
                    "source": {
                        "version": "2.7.3.Final",
                        "connector": "postgresql",
                        "name": "srv",
                        "ts_ms": ts // 1000,
                        "snapshot": "false",
                        "db": "shop",
                        "sequence": f'["{lsn - 700}","{lsn}"]',
                        "ts_us": ts,
                        "ts_ns": ts * 1000,
                        "schema": "public",
                        "table": t,
                        "txId": txid,
                        "lsn": lsn,
                        "xmin": None,
                    },
                    "transaction": {
                        "id": f"{txid}:{lsn}",
                        "total_order": i + 1,
                        "data_collection_order": i + 1,
                    },
                    "op": op,
                    "ts_ms": ts // 1000 + 41,
                    "ts_us": ts + 41_000,
                    "ts_ns": (ts + 41_000) * 1000,
                }
                doc = {"schema": schemas[t], "payload": payload} if wrapped else payload
                line = orjson.dumps(doc) + b"\n"
                mixed.write(line)
                files[t].write(line)
                counts[t] += 1
                written += 1
    finally:
        mixed.close()
        for f in files.values():
            f.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.mixed_stream", description=__doc__)
    ap.add_argument("dir")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--wrapped", action="store_true", help="with the Kafka Connect schema")
    args = ap.parse_args(argv)
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(write(out, args.events, args.wrapped)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
