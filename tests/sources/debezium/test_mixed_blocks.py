"""Blocks that interleave tables are decoded in bulk one table at a time, and must store
exactly what line-by-line decoding stores: every change at the position the line path
gives it, the same transactions, versions, quarantine and decoder state."""

from __future__ import annotations

import importlib.util
import random
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from dbz_events import event, field, lines, wrapped
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_columnar import PLACEHOLDER, both_ways

from rowback.sources.debezium import ingest

# three tables with different columns; ``table`` is a column of ``items`` (the bytes
# that name an event's table appear in its row too), ``gone`` is never set
COLUMNS = {
    "orders": {"v": "int", "s": "text", "late": "text"},
    "items": {"table": "text", "q": "int", "f": "float"},
    "users": {"name": "text", "ok": "bool", "gone": "text"},
}
VALUE = {
    "int": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    "text": st.one_of(st.none(), st.text(max_size=4), st.just("x")),
    "float": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    "bool": st.one_of(st.none(), st.booleans()),
}
ODDITY = st.sampled_from(
    ["none"] * 90
    + [
        "missing",  # a column left out: dropped, to the line decoder
        "extra",  # a new column
        "wrong_type",
        "lie",  # a before image that differs from history
        "broken",
        "placeholder",
        "other_schema",  # the same table name in another schema
        "unseen_table",
        "truncate",
        "late_value",  # the first value of a column seen only as null so far
    ]
)
TABLES = sorted(COLUMNS)
EVENT = st.tuples(
    st.integers(0, 2),  # the table, counted from the previous event's: a constant interleaves
    st.sampled_from(["c", "u", "u", "d", "r"]),
    st.integers(1, 5),
    st.data(),
    ODDITY,
    st.booleans(),  # next event in the same transaction
)


def mixed(steps: list[tuple[Any, ...]]) -> bytes:
    """Events of ``(table, op, key, draw, oddity, same_tx)`` steps; ``draw(kind)`` gives
    a value of a column of that kind."""
    live: dict[tuple[str, int], dict[str, Any]] = {}
    out: list[Any] = []
    txid, lsn = 500, 0
    for table, op, k, draw, odd, same_tx in steps:
        txid += 0 if same_tx else 1
        lsn += 1
        src: dict[str, Any] = {"table": table, "txid": txid, "lsn": lsn}
        src["ts_ms"] = 1_700_000_000_000 + lsn
        if odd == "broken":
            out.append(b'{"op":"c","after":{"id":' + str(k).encode())
            continue
        if odd == "truncate":
            out.append(event("t", None, None, **src))
            live = {key: row for key, row in live.items() if key[0] != table}
            continue
        cols = COLUMNS[table]
        row: dict[str, Any] = {"id": k}
        for name, kind in cols.items():
            row[name] = None if name in ("late", "gone") else draw(kind)
        old = live.get((table, k))
        if op == "d":
            if old is None:
                continue
            ev = event("d", None, old, **src)
            del live[(table, k)]
        else:
            if odd == "missing":
                row.pop(next(iter(cols)))
            elif odd == "extra":
                row["x"] = 1
            elif odd == "wrong_type":
                row[next(iter(cols))] = [1]
            elif odd == "placeholder":
                row[next(iter(cols))] = PLACEHOLDER
            elif odd == "late_value" and "late" in row:
                row["late"] = "now"
            before = old
            if odd == "lie" and old is not None:
                before = {**old, "id": k, next(iter(cols)): None}
            ev = event(op if old is None or op != "c" else "u", row, before, **src)
            if old is None and op == "u":
                ev["op"] = "c"
            live[(table, k)] = {n: row.get(n) for n in ("id", *cols)}
        if odd == "other_schema":
            ev["source"]["schema"] = "archive"
        elif odd == "unseen_table":
            ev["source"]["table"] = table + "_new"
        out.append(ev)
    return lines(out)


def _drawer(data: Any) -> Any:
    return lambda kind: data.draw(VALUE[kind])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(EVENT, min_size=1, max_size=80), st.integers(200, 4000))
def test_mixed_blocks_store_what_lines_store(steps: list[tuple[Any, ...]], block: int) -> None:
    # one plain insert per table first, so the decoder learns them early in the stream
    plain = {"int": 1, "text": "a", "float": 0.5, "bool": True}
    drawn: list[tuple[Any, ...]] = [(t, "c", 9, plain.get, "none", False) for t in TABLES]
    t = 0
    for shift, op, k, data, odd, same in steps:
        t = (t + shift) % len(TABLES)
        drawn.append((TABLES[t], op, k, _drawer(data), odd, same))
    # a lesson of one line, not 50: these streams are short
    with mock.patch.object(ingest, "LEARN_LINES", 1):
        bulk, by_line, _ = both_ways(mixed(drawn), block)
    assert bulk == by_line


def _clean_steps(rng: random.Random, n: int) -> list[tuple[Any, ...]]:
    def draw(kind: str) -> Any:
        if kind == "int":
            return rng.randint(-5, 10**12)
        if kind == "text":
            return rng.choice(["a", "ü", "", None])
        return rng.choice([0.5, 1.0, None] if kind == "float" else [True, False, None])

    steps = []
    for _ in range(n):
        table, op = rng.choice(TABLES), rng.choice(["c", "u", "u", "d"])
        steps.append((table, op, rng.randint(1, 300), draw, "none", rng.random() < 0.7))
    return steps


def test_a_clean_mixed_stream_is_decoded_in_bulk() -> None:
    """Not a vacuous equality: interleaved tables take the bulk path, block after block."""
    bulk, by_line, taken = both_ways(mixed(_clean_steps(random.Random(3), 3000)), 16384)
    assert bulk == by_line
    assert len([k for k in bulk if k.startswith("h_")]) == 3
    assert taken >= 15


FIELDS = {
    "orders": [field("id", "int64"), field("v", "int64"), field("s", "string")],
    "items": [field("id", "int64"), field("table", "string"), field("f", "float64")],
}


def test_wrapped_mixed_blocks_store_the_same() -> None:
    rng = random.Random(8)
    live: dict[tuple[str, int], dict[str, Any]] = {}
    docs: list[Any] = []
    for i in range(2000):
        table = rng.choice(sorted(FIELDS))
        k = rng.randint(1, 60)
        old = live.get((table, k))
        src = {"table": table, "txid": 900 + i // 4, "lsn": i + 1, "ts_ms": 1_700_000_000_000 + i}
        if old is not None and rng.random() < 0.15:
            payload = event("d", None, old, **src)
            del live[(table, k)]
        else:
            if table == "orders":
                row = {"id": k, "v": rng.randint(0, 9), "s": rng.choice(["a", None])}
            else:
                row = {"id": k, "table": rng.choice(["t", None]), "f": rng.random()}
            if rng.random() < 0.002:
                row["id"] = "not a number"
            payload = event("u" if old else "c", row, old, **src)
            live[(table, k)] = row
        docs.append(wrapped(payload, FIELDS[table]))
    bulk, by_line, taken = both_ways(lines(docs), 64 * 1024)
    assert bulk == by_line
    assert taken >= 5


def test_the_realistic_bench_stream_is_decoded_in_bulk() -> None:
    """``bench/mixed_stream.py``'s three interleaved tables, bare and wrapped."""
    where = Path(__file__).parents[3] / "bench" / "mixed_stream.py"
    spec = importlib.util.spec_from_file_location("bench_mixed_stream", where)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for wrapped_ in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            bench.write(Path(tmp), 3000, wrapped_)
            data = (Path(tmp) / "mixed.jsonl").read_bytes()
            bulk, by_line, taken = both_ways(data, 512 * 1024)
            assert bulk == by_line
            assert taken >= 3
