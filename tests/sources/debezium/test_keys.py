"""Where a table's key comes from (message key, --key, an ``id`` field), and the one-line
stop before anything of a table with no known key is stored, for files, NATS and Redis."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from dbz_events import event, line, lines
from dbz_streams import publish, xadd_all

from rowback.sources.debezium.decode import NoKey
from rowback.sources.debezium.ingest import ingest_file
from rowback.sources.debezium.nats import ingest_nats
from rowback.sources.debezium.redis import ingest_redis
from rowback.store.duckdb.store import DuckDBStore
from rowback.when import AtLsn

ROWBACK = [sys.executable, "-m", "rowback.cli"]
STOP = "rowback: error: public.items: no key known (fields: sku, name, price); " + (
    "pass --key public.items=sku"
)


def order(i: int) -> dict[str, Any]:
    return event("c", {"id": i, "v": i}, txid=1000 + i, lsn=10 * i)


def item(i: int) -> dict[str, Any]:
    after = {"sku": f"s{i}", "name": "n", "price": i}
    return event("c", after, table="items", txid=1000 + i, lsn=10 * i + 5)


def mixed(n: int, items_from: int) -> list[dict[str, Any]]:
    """Orders 1..n; from ``items_from`` on, each order is followed by an item."""
    out = []
    for i in range(1, n + 1):
        out.append(order(i))
        if i >= items_from:
            out.append(item(i))
    return out


def rowback(*args: str, store: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROWBACK_STORE": str(store)}
    env.pop("ROWBACK_DEBUG", None)
    return subprocess.run([*ROWBACK, *args], capture_output=True, text=True, env=env, timeout=120)


def table_names(store: DuckDBStore) -> list[str]:
    return sorted(t.qualified for t in store.tables())


def history(path: Path) -> dict[str, Any]:
    with DuckDBStore(path, read_only=True) as s:
        return {
            t: s.sql(f"SELECT * EXCLUDE (_pos) FROM {s.table(t).hist} ORDER BY _pos")
            for t in table_names(s)
        }


def test_keyless_table_stops_in_one_line_and_a_rerun_with_the_key_stores_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(lines(mixed(5, items_from=3)))
    store = tmp_path / "store"
    got = rowback("ingest", str(path), store=store)
    errors = [ln for ln in got.stderr.splitlines() if ln.startswith("rowback: error:")]
    assert got.returncode == 1 and errors == [STOP], got.stderr
    assert "rowback: public.orders: key inferred as (id) from its field named id" in got.stderr
    with DuckDBStore(store) as s:
        assert table_names(s) == ["public.orders"]  # nothing of public.items
        assert sorted(r[0] for r in s.asof("public.orders", AtLsn(10**6)).rows) == [1, 2, 3]
        assert s.quarantined().rows == []
        assert s.position("debezium")["files"][str(path)]["line"] == 3  # type: ignore[index]
    again = rowback("ingest", str(path), "--key", "public.items=sku", store=store)
    assert again.returncode == 0, again.stderr
    assert again.stderr.startswith("ingested 5 events, 0 quarantined, resumed at byte")
    with DuckDBStore(store) as s:
        assert sorted(r[0] for r in s.asof("public.items", AtLsn(10**6)).rows) == ["s3", "s4", "s5"]
        assert [c.key for c in s.tables() if c.name == "items"] == [("sku",)]
    clean = tmp_path / "clean"
    assert rowback("ingest", str(path), "--key", "public.items=sku", store=clean).returncode == 0
    assert history(store) == history(clean)


@pytest.mark.parametrize("block", [16384, 1 << 24])
def test_stop_after_bulk_blocks_keeps_the_position_just_before_the_table(
    tmp_path: Path, block: int
) -> None:
    """Thousands of orders go in columns in an open bulk transaction; the first item
    stops the run, which commits them and the position of the item's line."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(lines(mixed(3000, items_from=2500)))
    keys = {"public.items": ["sku"]}
    with DuckDBStore(tmp_path / "a") as s:
        with pytest.raises(NoKey, match="public.items: no key known"):
            ingest_file(s, str(path), block=block)
        assert table_names(s) == ["public.orders"]
        assert s.sql("SELECT count(*) FROM h_1") == [(2500,)]
        rest = ingest_file(s, str(path), keys=keys, block=block)
        assert rest.resumed_at == len(lines(mixed(2500, items_from=2501)))
    with DuckDBStore(tmp_path / "b") as s:
        ingest_file(s, str(path), keys=keys, block=block)
    assert history(tmp_path / "a") == history(tmp_path / "b")


def test_wrong_key_setting_stops_too(tmp_path: Path, store_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(lines(mixed(2, items_from=1)))
    with DuckDBStore(store_path) as s:
        with pytest.raises(NoKey, match="--key column 'code' is not a field"):
            ingest_file(s, str(path), keys={"public.items": ["code"]})
        assert table_names(s) == ["public.orders"] and s.quarantined().rows == []


def test_kafka_records_and_kcat_envelopes_carry_the_key(tmp_path: Path, store_path: Path) -> None:
    kafka = [{"key": {"sku": f"s{i}"}, "value": item(i)} for i in (1, 2)]
    kafka.append({"key": {"schema": {"type": "struct"}, "payload": {"sku": "s3"}},
                  "value": item(3)})  # fmt: skip
    kcat = [
        {"topic": "srv.public.items", "partition": 0, "offset": i, "tstype": "create",
         "ts": 1, "key": orjson.dumps({"sku": f"s{i}"}).decode(),
         "payload": orjson.dumps(item(i)).decode()}
        for i in (4, 5)
    ]  # fmt: skip
    tombstone = {**kcat[0], "payload": None}
    path = tmp_path / "records.jsonl"
    path.write_bytes(lines([*kafka, *kcat, tombstone]))
    told: list[str] = []
    with DuckDBStore(store_path) as s:
        report = ingest_file(s, str(path), notify=told.append)
        assert (report.events, report.quarantined, report.skipped) == (5, 0, 1)
        skus = sorted(r[0] for r in s.asof("public.items", AtLsn(10**6)).rows)
        assert skus == ["s1", "s2", "s3", "s4", "s5"]
        assert [t.key for t in s.tables()] == [("sku",)]
    assert told == []  # given, not inferred


def test_redis_entries_with_a_key_field(redis_server: str, store_path: Path) -> None:
    key = f"k{secrets.token_hex(4)}"
    client = redis.Redis.from_url(redis_server)
    for i in (1, 2):
        client.xadd(key, {"key": line({"sku": f"s{i}"}), "value": line(item(i))})
    client.xadd(key, {"key": line({"sku": "s3"}), "value": b'{"op": "c", "after": '})
    with DuckDBStore(store_path) as s:
        report = ingest_redis(s, redis_server, key, once=True, idle=0.3)
        assert (report.events, report.quarantined) == (2, 1)
        assert sorted(r[0] for r in s.asof("public.items", AtLsn(10**6)).rows) == ["s1", "s2"]
        (q,) = s.quarantined().rows  # kept with its key, so a replay has it too
        assert q[5] == '{"key":{"sku":"s3"},"value":{"op": "c", "after": }'


def test_redis_stops_before_a_keyless_table_and_resumes_with_the_key(
    redis_server: str, store_path: Path
) -> None:
    key = f"k{secrets.token_hex(4)}"
    xadd_all(redis_server, key, [line(e) for e in mixed(4, items_from=3)])
    with DuckDBStore(store_path) as s:
        with pytest.raises(NoKey, match="public.items"):
            ingest_redis(s, redis_server, key, once=True, idle=0.3)
        assert table_names(s) == ["public.orders"]
        assert s.sql("SELECT count(*) FROM h_1") == [(3,)]
        rest = ingest_redis(
            s, redis_server, key, once=True, idle=0.3, keys={"public.items": ["sku"]}
        )
        assert (rest.events, rest.skipped) == (3, 3)  # those written, acknowledged now
        assert s.sql("SELECT count(*) FROM h_2") == [(2,)]
    assert redis.Redis.from_url(redis_server).xpending(key, "rowback")["pending"] == 0


def test_nats_stops_before_a_keyless_table_and_resumes_with_the_key(
    nats_server: str, store_path: Path
) -> None:
    stream = f"K{secrets.token_hex(4)}"
    asyncio.run(publish(nats_server, stream, [line(e) for e in mixed(4, items_from=3)]))
    with DuckDBStore(store_path) as s:
        with pytest.raises(NoKey, match="public.items"):
            ingest_nats(s, nats_server, stream, f"{stream}.>", once=True, idle=0.3)
        assert table_names(s) == ["public.orders"]
        assert s.position("debezium")["nats"] == {stream: 3}  # type: ignore[index]
        keys = {"public.items": ["sku"]}
        rest = ingest_nats(s, nats_server, stream, f"{stream}.>", once=True, idle=0.3, keys=keys)
        assert rest.events == 3
        assert s.sql("SELECT count(*) FROM h_1") == [(4,)]
        assert s.sql("SELECT count(*) FROM h_2") == [(2,)]
