"""Replaying the quarantine with today's settings: what now decodes is stored and leaves
the quarantine in one transaction; what still fails, or is older than history stored
since, stays listed."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dbz_events import event, line, lines

from rowback.model import Quarantined
from rowback.sources.debezium.ingest import ingest_file
from rowback.sources.debezium.replay import replay_quarantine
from rowback.store.duckdb.store import DuckDBStore
from rowback.when import AtLsn

ROWBACK = [sys.executable, "-m", "rowback.cli"]
OLD_ERROR = "key: no primary key known for public.items: pass --key public.items=COLUMN"
ALL = AtLsn(10**9)


def item(i: int, lsn: int | None = None) -> dict[str, Any]:
    after = {"sku": f"s{i}", "name": "n", "price": i}
    return event("c", after, table="items", txid=1000 + i, lsn=lsn or 10 * i)


def order(i: int) -> dict[str, Any]:
    return event("c", {"id": i, "v": i}, txid=2000 + i, lsn=10 * i + 5)


def quarantined_by_an_old_run(store: Path, path: Path, docs: list[Any]) -> None:
    """What ingest did before keys were asked for: every event of a table with no known
    key quarantined, one error each, and the file's position moved past them."""
    raw = lines(docs)
    path.write_bytes(raw)
    items = [Quarantined("debezium", str(path), n, OLD_ERROR, line(d)) for n, d in enumerate(docs)]
    head = [min(len(raw), 4096), hashlib.sha256(raw[:4096]).hexdigest()]
    files = {str(path): {"offset": len(raw), "line": len(docs), "head": head}}
    position = {"files": files, "decoder": {"tx": [-1, 0], "tables": []}}
    with DuckDBStore(store) as s:
        s.write([], "debezium", position, quarantine=items)


def rowback(*args: str, store: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROWBACK_STORE": str(store)}
    env.pop("ROWBACK_DEBUG", None)
    return subprocess.run([*ROWBACK, *args], capture_output=True, text=True, env=env, timeout=120)


def skus(s: DuckDBStore) -> list[str]:
    return sorted(r[0] for r in s.asof("public.items", ALL).rows)


def test_replay_with_the_key_stores_a_table_quarantined_for_want_of_one(tmp_path: Path) -> None:
    store, path = tmp_path / "store", tmp_path / "items.jsonl"
    quarantined_by_an_old_run(store, path, [item(i) for i in range(1, 4)])
    got = rowback("quarantine", "--replay", "--key", "public.items=sku", store=store)
    assert got.returncode == 0, got.stderr
    assert got.stderr.splitlines() == ["replayed 3 quarantined inputs, 0 left in the quarantine"]
    with DuckDBStore(store) as s:
        assert skus(s) == ["s1", "s2", "s3"] and s.quarantined().rows == []
    with path.open("ab") as f:  # the stream goes on: the key is known from now on
        f.write(lines([item(4)]))
    more = rowback("ingest", str(path), store=store)
    assert more.returncode == 0 and more.stderr.startswith("ingested 1 events"), more.stderr
    with DuckDBStore(store) as s:
        assert skus(s) == ["s1", "s2", "s3", "s4"]


def test_replay_refuses_events_older_than_history_stored_since(tmp_path: Path) -> None:
    store, path = tmp_path / "store", tmp_path / "mixed.jsonl"
    quarantined_by_an_old_run(store, path, [item(1), item(2)])  # lsn 10, 20
    with DuckDBStore(store) as s:  # then orders at lsn 15..35 were stored after them
        orders = tmp_path / "orders.jsonl"
        orders.write_bytes(lines([order(i) for i in (1, 2, 3)]))
        ingest_file(s, str(orders))
        s.write([], "debezium", s.position("debezium") or {}, quarantine=[
            Quarantined("debezium", str(path), 9, OLD_ERROR, line(item(9)))  # lsn 90
        ])  # fmt: skip
    got = rowback("quarantine", "--replay", "--key", "public.items=sku", store=store)
    assert got.returncode == 3
    err = got.stderr.splitlines()
    assert err[0] == (
        "replayed 1 quarantined inputs, 2 left in the quarantine, "
        "2 of them older than history stored since"
    )
    assert err[1] == (
        "rowback: quarantine 1: public.items at lsn 10 is older than history stored since "
        "(up to lsn 35); appending it would reorder history"
    )
    with DuckDBStore(store) as s:
        assert skus(s) == ["s9"]
        assert [r[0] for r in s.quarantined().rows] == [1, 2]
        assert sorted(r[0] for r in s.asof("public.orders", AtLsn(25)).rows) == [1, 2]


def test_replay_leaves_what_still_fails_listed_with_one_line_per_table(
    tmp_path: Path, store_path: Path
) -> None:
    quarantined_by_an_old_run(store_path, tmp_path / "f.jsonl", [item(i) for i in range(1, 5)])
    with DuckDBStore(store_path) as s:
        s.quarantine([Quarantined("debezium", "f", 9, "json: not valid JSON", b'{"op": ')])
        report = replay_quarantine(s)  # still no key
        assert (report.replayed, report.failed) == (0, 5)
        assert report.errors == [
            "public.items: no key known (fields: sku, name, price); pass --key public.items=sku",
            "quarantine 5: json: not valid JSON: unexpected end of data: line 1 column 8 (char 7)",
        ]
        assert len(s.quarantined().rows) == 5
        assert replay_quarantine(s, ids=[2, 3], keys={"public.items": ["sku"]}).replayed == 2
        assert skus(s) == ["s2", "s3"]
        assert [r[0] for r in s.quarantined().rows] == [1, 4, 5]  # 1 is now older than 3


REPLAY = """
import sys
from rowback.store.duckdb.store import DuckDBStore
from rowback.sources.debezium.replay import replay_quarantine
with DuckDBStore(sys.argv[1]) as s:
    r = replay_quarantine(s, keys={"public.items": ["sku"]}, batch=500)
print(r.replayed)
"""


def test_kill_9_during_replay_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    n = 3_000
    docs = [item(i) for i in range(1, n + 1)]
    for name in ("clean", "crashy"):
        quarantined_by_an_old_run(tmp_path / name, tmp_path / f"{name}.jsonl", docs)
    cmd = [sys.executable, "-c", REPLAY]
    t0 = time.monotonic()
    subprocess.run([*cmd, str(tmp_path / "clean")], check=True, timeout=120)
    took = time.monotonic() - t0
    rng, killed = random.Random(5), 0
    for _ in range(4):
        proc = subprocess.Popen([*cmd, str(tmp_path / "crashy")], stdout=subprocess.PIPE)
        try:
            proc.communicate(timeout=rng.uniform(0.3, 0.9) * took)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
            killed += 1
        with DuckDBStore(tmp_path / "crashy", read_only=True) as s:
            stored = s.sql("SELECT count(*) FROM h_1")[0][0] if s.tables() else 0
            left = s.sql("SELECT count(*) FROM _rb_quarantine")[0][0]
            assert stored + left == n  # each event is in exactly one of the two
    assert killed >= 1
    subprocess.run([*cmd, str(tmp_path / "crashy")], check=True, timeout=120)
    with (
        DuckDBStore(tmp_path / "clean", read_only=True) as a,
        DuckDBStore(tmp_path / "crashy", read_only=True) as b,
    ):
        q = "SELECT * EXCLUDE (_pos) FROM h_1 ORDER BY _pos"
        assert a.sql(q) == b.sql(q) and len(a.sql(q)) == n
        assert b.quarantined().rows == []
