"""The bulk (columnar) decoding of files must store exactly what line-by-line decoding
stores: history, head, transactions, quarantine, positions and the report, for any mix
of good, odd and malformed events, in any block size."""

from __future__ import annotations

import math
import random
import struct
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from dbz_events import decimal_b64, event, field, lines, wrapped
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rowback.sources.debezium import columnar, semantic
from rowback.sources.debezium.convert import float_text
from rowback.sources.debezium.ingest import IngestReport, ingest_file
from rowback.store.duckdb.store import DuckDBStore

PLACEHOLDER = "__debezium_unavailable_value"


def everything(path: Path) -> dict[str, Any]:
    """All a store holds that an ingest decides, in store order."""
    with DuckDBStore(path, read_only=True) as s:
        out: dict[str, Any] = {
            "tx": s.sql("SELECT pos_lo, pos_hi, lsn, txid, ts, source FROM _rb_tx ORDER BY 1"),
            "quarantine": s.sql(
                "SELECT source, location, line, error, raw FROM _rb_quarantine ORDER BY id"
            ),
            "positions": [
                (src, _columns_unordered(orjson.loads(pos)))
                for src, pos in s.sql("SELECT source, position FROM _rb_positions ORDER BY 1")
            ],
        }
        columns = s.sql("SELECT * FROM _rb_columns ORDER BY ALL")
        rank = _physical_ranks(columns)
        out["columns"] = sorted((c[0], rank[c[0], c[1]], *c[2:]) for c in columns)
        for (tid,) in s.sql("SELECT id FROM _rb_tables ORDER BY id"):
            ranks = {p: r for (t, p), r in rank.items() if t == tid}
            out[f"h_{tid}"] = [
                (*r[:6], _remap_mask(r[6], ranks), *_permuted(r[7:], ranks))
                for r in s.sql(f"SELECT * FROM h_{tid} ORDER BY _pos")
            ]
            # the head's row hash (_h) follows the physical order: left out
            out[f"s_{tid}"] = sorted(
                (r[0], *_permuted(r[2:], ranks)) for r in s.sql(f"SELECT * FROM s_{tid}")
            )
            # history must also be laid out in position order (zone maps rely on it)
            ordered = s.sql(
                f"SELECT bool_and(_pos > p) FROM (SELECT _pos, lag(_pos) OVER (ORDER BY rowid) p "
                f"FROM h_{tid})"
            )
            assert ordered[0][0] in (True, None)
    return out


def _physical_ranks(columns: list[tuple[Any, ...]]) -> dict[tuple[int, int], int]:
    """Each stored column's place in an order that does not depend on the order in which
    one event listed fields: columns added by one schema change may be laid out in either
    path's field order (same history; the strict xfail below tracks the order itself)."""
    by_table: dict[int, list[tuple[Any, ...]]] = {}
    for c in columns:
        by_table.setdefault(c[0], []).append(c)
    rank = {}
    for tid, cols in by_table.items():
        for i, c in enumerate(sorted(cols, key=lambda c: (c[5], c[2], c[3], c[1]))):
            rank[tid, c[1]] = i
    return rank


def _permuted(values: tuple[Any, ...], ranks: dict[int, int]) -> tuple[Any, ...]:
    out: list[Any] = [None] * len(values)
    for phys, v in enumerate(values):
        out[ranks.get(phys, phys)] = v
    return tuple(out)


def _remap_mask(mask: int | None, ranks: dict[int, int]) -> int | None:
    if mask is None:
        return None
    return sum(1 << ranks.get(p, p) for p in range(64) if mask >> p & 1)


def _columns_unordered(doc: Any) -> Any:
    """The saved decoder state with each table's columns in name order: after fields come
    in another order, the two paths may remember a table's columns in different orders
    (history and the store's columns agree; the strict xfail below tracks the state)."""
    if isinstance(doc, dict):
        return {k: _columns_unordered(v) for k, v in doc.items()}
    if isinstance(doc, list):
        if doc and all(isinstance(c, list) and len(c) == 4 and isinstance(c[0], str) for c in doc):
            return sorted(doc)
        return [_columns_unordered(v) for v in doc]
    return doc


@pytest.mark.xfail(strict=True, reason="known limit: decoder state column order differs")
def test_both_paths_remember_a_reordered_table_in_the_same_column_order() -> None:
    steps = [
        ("c", 1, {"v": None, "s": "", "f": 0.0, "b": False}, "none", False),
        ("c", 1, {"v": 0, "s": None, "b": None, "f": None}, "none", False),
        ("c", 1, {"v": 0, "s": "", "f": 0.0, "b": False}, "none", False),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(stream(steps))
        saved = []
        for bulk in (True, False):
            with DuckDBStore(Path(tmp) / str(bulk)) as s:
                ingest_file(s, str(path), bulk=bulk, block=312)
                saved.append(s.sql("SELECT position FROM _rb_positions"))
    assert saved[0] == saved[1]


def summary(r: IngestReport) -> tuple[Any, ...]:
    return (r.events, r.quarantined, r.skipped, r.gaps, r.errors, r.incomplete_tail)


def both_ways(data: bytes, block: int) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Ingest ``data`` in bulk (``block`` bytes at a time) and line by line; both stores'
    contents, and how many blocks the bulk path took."""
    taken = 0
    original = columnar.BlockDecoder.decode

    def counting(self: columnar.BlockDecoder, b: bytes) -> Any:
        nonlocal taken
        got = original(self, b)
        taken += got is not None
        return got

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(data)
        stores, reports = [], []
        for bulk in (True, False):
            store = Path(tmp) / ("bulk" if bulk else "lines")
            columnar.BlockDecoder.decode = counting  # type: ignore[method-assign]
            try:
                with DuckDBStore(store) as s:
                    reports.append(summary(ingest_file(s, str(path), bulk=bulk, block=block)))
            finally:
                columnar.BlockDecoder.decode = original  # type: ignore[method-assign]
            stores.append(everything(store))
    assert reports[0] == reports[1]
    return stores[0], stores[1], taken


# -- streams of bare envelopes ----------------------------------------------------------

VALUES = {
    "v": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    "s": st.one_of(st.none(), st.text(max_size=5), st.just(PLACEHOLDER)),
    "f": st.one_of(
        st.none(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(-(2**63), 2**63 - 1),
    ),
    "b": st.one_of(st.none(), st.booleans()),
}
ODDITY = st.sampled_from(
    ["none"] * 30
    + [
        "missing",  # a column left out of the after image: dropped, to the line decoder
        "extra",  # a new column
        "reordered",
        "wrong_type",
        "lie",  # a before image that differs from history
        "blank",
        "null_line",
        "broken",
        "array",
        "other_table",
        "no_txid",
        "ts_us",
        "key_record",
        "big_int",
        "truncate",
    ]
)
EVENT = st.tuples(
    st.sampled_from(["c", "u", "u", "u", "d", "r"]),
    st.integers(1, 6),
    st.fixed_dictionaries(VALUES),
    ODDITY,
    st.booleans(),  # next event in the same transaction
)


RAW = {
    "blank": b"   ",
    "null_line": b"null",
    "broken": b'{"op":"c","after":{"id":',
    "array": b"[1]",
}


def stream(steps: list[tuple[Any, ...]]) -> bytes:
    live: dict[int, dict[str, Any]] = {}
    out: list[Any] = []
    txid, lsn = 500, 0
    for op, k, vals, odd, same_tx in steps:
        txid += 0 if same_tx else 1
        lsn += 1
        src: dict[str, Any] = {"txid": txid, "lsn": lsn, "ts_ms": 1_700_000_000_000 + lsn}
        old = live.get(k)
        row: dict[str, Any] = {"id": k, **vals}
        if odd in RAW:
            out.append(RAW[odd] + str(k).encode() * (odd == "broken"))
            continue
        if odd == "truncate":
            out.append(event("t", None, None, **src))
            live.clear()
            continue
        if op == "d":
            if old is None:
                continue
            ev = event("d", None, old, **src)
            del live[k]
        else:
            if odd == "missing":
                row.pop("s")
            elif odd == "extra":
                row["x"] = 1
            elif odd == "reordered":
                row = dict(reversed(list(row.items())))
            elif odd == "wrong_type":
                row["v"] = "seven"
            elif odd == "big_int":
                row["v"] = 2**63
            before = old
            if odd == "lie" and old is not None:
                before = {**old, "s": "lie"}
            ev = event(op if old is None or op != "c" else "u", row, before, **src)
            if old is None and op == "u":
                ev["op"] = "c"
            live[k] = {n: row.get(n) for n in ("id", "v", "s", "f", "b")}
        if odd == "other_table":
            ev["source"]["table"] = "items"
        elif odd == "no_txid":
            ev["source"]["txId"] = None
        elif odd == "ts_us":
            ev["source"]["ts_us"] = ev["source"].pop("ts_ms") * 1000 + 7
        elif odd == "key_record":
            ev = {"key": {"id": k}, "value": ev}
        out.append(ev)
    return lines(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EVENT, min_size=1, max_size=80), st.integers(40, 4000))
def test_bulk_stores_what_lines_store(steps: list[tuple[Any, ...]], block: int) -> None:
    bulk, by_line, _ = both_ways(stream(steps), block)
    assert bulk == by_line


def test_a_clean_stream_is_decoded_in_bulk() -> None:
    """Not a vacuous equality: most blocks of a plain stream take the bulk path."""
    rng = random.Random(5)
    steps = []
    for _ in range(3000):
        vals = {
            "v": rng.randint(-(2**63), 2**63 - 1),
            "s": rng.choice(["a", "", "ü", None]),
            "f": rng.choice([0.1, 0.0, 1e15, 5e-5, 123.25, float(rng.randint(0, 10**16))]),
            "b": rng.choice([True, False, None]),
        }
        op = rng.choice(["c", "u", "u", "d"])
        steps.append((op, rng.randint(1, 200), vals, "none", rng.random() < 0.5))
    bulk, by_line, taken = both_ways(stream(steps), 8192)
    assert bulk == by_line
    assert taken >= 20


# -- events with a Kafka Connect schema -------------------------------------------------

FIELDS = [
    field("id", "int64"),
    field("small", "int16"),
    field("n", "int32"),
    field("amount", "bytes", "org.apache.kafka.connect.data.Decimal", scale=2),
    field("ratio", "float64"),
    field("real", "float32"),
    field("ok", "boolean"),
    field("name", "string"),
    field("at", "int64", "io.debezium.time.MicroTimestamp"),
    field("day", "int32", "io.debezium.time.Date"),
    field("u", "string", "io.debezium.data.Uuid"),
    field("doc", "string", "io.debezium.data.Json"),
]


def typed_row(rng: random.Random, k: int, bad: bool) -> dict[str, Any]:
    row = {
        "id": k,
        "small": rng.choice([0, -(2**15), 2**15 - 1]),
        "n": rng.randint(-(2**31), 2**31 - 1),
        "amount": decimal_b64(rng.randint(-(10**12), 10**12)),
        "ratio": rng.choice([0.5, 1e300, -2.5e-7, 3.0]),
        "real": rng.choice([1.5, 3.4e38, 1e7]),
        "ok": rng.random() < 0.5,
        "name": rng.choice(["x", "", None]),
        "at": rng.randint(-(10**15), 10**16),
        "day": rng.randint(-1000, 30000),
        "u": "12345678-1234-5678-1234-567812345678",
        "doc": '{"a": [1, 2]}',
    }
    if bad:
        row[rng.choice(["small", "n", "u", "real"])] = rng.choice([2**40, "zz", 1e39])
    return row


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_wrapped_events_store_the_same(seed: int) -> None:
    rng = random.Random(seed)
    live: dict[int, dict[str, Any]] = {}
    docs: list[Any] = []
    for i in range(1500):
        k = rng.randint(1, 100)
        old = live.get(k)
        src = {"txid": 900 + i // 3, "lsn": i + 1, "ts_ms": 1_700_000_000_000 + i}
        if old is not None and rng.random() < 0.15:
            payload = event("d", None, old, **src)
            del live[k]
        else:
            row = typed_row(rng, k, rng.random() < 0.002)
            payload = event("u" if old else "c", row, old, **src)
            live[k] = row
        docs.append(wrapped(payload, FIELDS))
    bulk, by_line, taken = both_ways(lines(docs), 64 * 1024)
    assert bulk == by_line
    assert taken >= 5


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_in_bulk(v: float) -> None:
    import pyarrow as pa

    if v == 0 and math.copysign(1, v) < 0:  # JSON -0 is 0 to orjson, -0.0 to Arrow
        with pytest.raises(columnar.Declined):
            columnar._floats(pa.array([v, None]))
        return
    assert columnar._floats(pa.array([v, None]))[0].as_py() == float_text(v)


def test_floats_around_the_switches() -> None:
    import pyarrow as pa

    edges = [1e-4, 9.999e-5, 1e15, 1e15 - 1, 999999999999999.9, 1e16, 123456789012.5, 0.0]
    rng = random.Random(3)
    bits = [struct.unpack("d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(5000)]
    values = [v for v in edges + bits if v == v and abs(v) != float("inf") and str(v) != "-0.0"]
    got = columnar._floats(pa.array(values)).to_pylist()
    assert got == [float_text(v) for v in values]


def test_the_bench_shaped_stream_is_decoded_in_bulk() -> None:
    """The benchmark's own events (its generator, loaded from bench/)."""
    import importlib.util

    where = Path(__file__).parents[3] / "bench" / "ingest_debezium.py"
    spec = importlib.util.spec_from_file_location("bench_ingest_debezium", where)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    generate = bench.generate
    for wrapped_ in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "e.jsonl"
            generate(path, 3000, wrapped_)
            bulk, by_line, taken = both_ways(path.read_bytes(), 256 * 1024)
            assert bulk == by_line
            assert taken >= 3
            assert bulk["positions"][0][1]["files"]


@given(
    st.lists(st.one_of(st.none(), st.integers(-(2**62), 2**62), st.integers(-800_000, 3_000_000)))
)
def test_semantic_types_in_bulk(values: list[int | None]) -> None:
    """Dates and microsecond timestamps in bulk print what the line decoder's converters
    print; a column with a value they would refuse is refused (``Declined``) too."""
    import pyarrow as pa

    from rowback.sources.debezium import times

    arr = pa.array(values, pa.int64())
    for bulk, conv in (
        (semantic.dates, times.date),
        (semantic.micro_timestamps, times.timestamp(10**6)),
        (semantic.milli_timestamps, times.timestamp(1000)),
        (semantic.micro_times, times.time_of_day(10**6)),
    ):
        try:
            want = [None if v is None else conv(v) for v in values]
        except ValueError:
            with pytest.raises(columnar.Declined):
                bulk(arr, conv)
            continue
        assert bulk(arr, conv).to_pylist() == want


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.uuids().map(str),
            st.text(alphabet="0123456789abcdefABCDEF-xyz", max_size=40),
        )
    )
)
def test_uuids_in_bulk(values: list[str | None]) -> None:
    import pyarrow as pa

    from rowback.sources.debezium import convert

    arr = pa.array([v.upper() if v and len(v) % 2 else v for v in values], pa.string())
    try:
        want = [None if v is None else convert.uuid(v) for v in arr.to_pylist()]
    except ValueError:
        with pytest.raises(columnar.Declined):
            semantic.uuids(arr, convert.uuid)
        return
    assert semantic.uuids(arr, convert.uuid).to_pylist() == want


# -- what Arrow's reader accepts and JSON does not (found in review) ---------------------


def _event(i: int, **after: object) -> dict[str, Any]:
    row = {"id": i, "v": i * 10, "s": f"s{i}", "f": i + 0.5, **after}
    src = {"schema": "public", "table": "t", "txId": 1000 + i, "lsn": i, "ts_ms": TS + i}
    return {"before": None, "after": row, "op": "c", "source": src}


TS = 1_700_000_000_000


def _good(n: int, start: int = 1) -> bytes:
    return lines([_event(i) for i in range(start, start + n)])


def _one(**after: object) -> bytes:
    return lines([_event(100, **after)])


def _split() -> bytes:
    a = _one()
    i = a.index(b'"after":') + 8
    return a[:i] + b"\n" + a[i:] + orjson.dumps(_event(101)) + b" " + lines([_event(102)])


def _ts_ms_min() -> bytes:
    e = _event(100)
    e["source"]["ts_ms"] = -(2**63)
    return lines([e])


ODD_LINES = {
    "NaN literal": _one()[:-2] + b',"x":NaN}\n',
    "Infinity in a float": _one().replace(b'"f":100.5', b'"f":-Infinity'),
    "beyond double": _one().replace(b'"f":100.5', b'"f":1.7976931348623159e308'),
    "integer -0 in a float": _one().replace(b'"f":100.5', b'"f":-0'),
    "invalid UTF-8 unused": _one()[:-2] + b',"db":"sh\xffop"}\n',
    "invalid UTF-8 in text": _one().replace(b'"s100"', b'"s\xff"'),
    "an encoded surrogate": _one().replace(b'"s100"', b'"s\xed\xa0\x80"'),
    "an overlong encoding": _one().replace(b'"s100"', b'"s\xc0\xaf"'),
    "NaN with a NULL": _one(s=None).replace(b'"f":100.5', b'"f":NaN'),
    "ts_ms that wraps": _ts_ms_min(),
    "an event over two lines, two on one": _split(),
}


@pytest.mark.parametrize("odd", list(ODD_LINES), ids=list(ODD_LINES))
def test_what_arrow_accepts_and_json_does_not(odd: str) -> None:
    bulk, by_line, taken = both_ways(_good(20) + ODD_LINES[odd] + _good(40, 200), 2000)
    assert bulk == by_line
    assert taken >= 1  # the clean blocks around it still went in bulk


def test_a_table_wider_than_the_masks() -> None:
    """More than 64 physical columns: the store writes the batch row by row."""
    docs = [
        {
            "before": None,
            "after": {"id": i, **{f"c{j}": j * i for j in range(70)}},
            "op": "c",
            "source": {"schema": "p", "table": "w", "txId": i, "lsn": i, "ts_ms": TS},
        }
        for i in range(1, 200)
    ]
    bulk, by_line, taken = both_ways(lines(docs), 20_000)
    assert bulk == by_line
    assert taken >= 1


@pytest.mark.parametrize(
    ("ctype", "semantic", "value"),
    [
        ("boolean", "io.debezium.time.Date", True),
        ("float64", "io.debezium.time.Date", 1.0),
        ("int64", "io.debezium.data.Uuid", 5),
        ("string", "io.debezium.time.Date", "x"),
        ("float64", "io.debezium.time.MicroTimestamp", 1.0),
    ],
)
def test_semantic_name_on_an_unexpected_type(ctype: str, semantic: str, value: object) -> None:
    fields = [field("id", "int64"), field("x", ctype, semantic)]
    docs = [
        wrapped(event("c", {"id": i, "x": value if i > 20 else None}, None, txid=i, lsn=i), fields)
        for i in range(1, 60)
    ]
    bulk, by_line, _ = both_ways(lines(docs), 3000)
    assert bulk == by_line


# -- Decimal, ZonedTimestamp and Json in bulk: what the line converters give -------------


def _bulk_equals_each(bulk: Any, conv: Any, values: list[Any], kind: Any) -> None:
    """``bulk`` gives what ``conv`` gives value by value, or refuses when ``conv`` would
    refuse any value."""
    import pyarrow as pa

    arr = pa.array(values, kind)
    try:
        want = [None if v is None else conv(v) for v in values]
    except ValueError:
        with pytest.raises(semantic.Declined):
            bulk(arr, conv)
        return
    assert bulk(arr, conv).to_pylist() == want


def _b64(n: int, width: int) -> str:
    import base64

    return base64.b64encode(n.to_bytes(width, "big", signed=True)).decode()


UNSCALED = st.one_of(
    st.integers(-(2**15), 2**15),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-(2**80), 2**80),
)
DECIMAL_TEXT = st.one_of(
    st.none(),
    UNSCALED.map(lambda n: _b64(n, (n.bit_length() + 8) // 8)),
    st.integers(-(2**40), 2**40).map(lambda n: _b64(n, 9)),  # padded with sign bytes
    st.sampled_from(["", "AB==", "QR==", "AAA=", "A===", "=AAA", "AA=A", "A A=", "AAAAA", "€€€€"]),
    st.text(alphabet="ABCab01+/=", max_size=14),
)


@settings(max_examples=300)
@given(
    values=st.lists(DECIMAL_TEXT, max_size=30),
    scale=st.integers(-3, 8),
    precision=st.one_of(st.none(), st.integers(1, 40)),
)
def test_decimals_in_bulk(values: list[str | None], scale: int, precision: int | None) -> None:
    import pyarrow as pa

    from rowback.sources.debezium import convert

    conv = convert.decimal(scale, precision)
    _bulk_equals_each(semantic.decimals, conv, values, pa.string())
    # a slice of a longer array (Arrow offsets that do not start at 0)
    arr = pa.array(["AQ==", *values, "AQ=="], pa.string()).slice(1, len(values))
    try:
        want = [None if v is None else conv(v) for v in values]
    except ValueError:
        return
    assert semantic.decimals(arr, conv).to_pylist() == want


ZONED = st.one_of(
    st.none(),
    st.sampled_from(["infinity", "-infinity", "Infinity", "", "2024-02-29T12:00:00Z"]),
    st.tuples(
        st.integers(0, 10000),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 61),
        st.one_of(st.just(""), st.text(alphabet="0123456789", min_size=1, max_size=9)),
        st.sampled_from(["Z", "Z", "Z", "+02:00", "-0530", "z", ""]),
    ).map(
        lambda t: (
            f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}T{t[3]:02d}:{t[4]:02d}:{t[5]:02d}"
            + (f".{t[6]}" if t[6] else "")
            + t[7]
        )
    ),
    st.text(max_size=25),
)


@settings(max_examples=300)
@given(values=st.lists(ZONED, max_size=30))
def test_zoned_timestamps_in_bulk(values: list[str | None]) -> None:
    import pyarrow as pa

    from rowback.sources.debezium import times

    _bulk_equals_each(semantic.zoned_timestamps, times.zoned_timestamp, values, pa.string())


@given(
    values=st.lists(
        st.one_of(
            st.none(),
            st.sampled_from(['{"a": 1}', "[1, 2]", "1", '"x"', "null", "{", "", "NaN", "[1,]"]),
            st.text(max_size=12),
        ),
        max_size=20,
    )
)
def test_json_in_bulk(values: list[str | None]) -> None:
    import pyarrow as pa

    from rowback.sources.debezium import convert

    _bulk_equals_each(semantic.json_texts, convert.json_text, values, pa.string())


def test_usual_semantic_values_never_go_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Debezium's usual values take the bulk forms (the tests above also pass when every
    column falls back to the converter)."""
    import pyarrow as pa

    from rowback.sources.debezium import convert, times

    def refuse(c: Any) -> Any:
        raise AssertionError(f"{c} went one value at a time")

    monkeypatch.setattr(semantic, "each", refuse)
    cents = [0, 1, -1, 127, 128, -129, 10**12, -(10**15), 2**63 - 1, None]
    arr = pa.array([None if n is None else _b64(n, (n.bit_length() + 8) // 8) for n in cents])
    got = semantic.decimals(arr, convert.decimal(2, 20)).to_pylist()
    assert got == [None if n is None else convert.numeric_text(n, 2) for n in cents]
    zoned = ["2023-11-14T22:13:20.002752Z", "2024-02-29T00:00:00Z", "infinity", None]
    got = semantic.zoned_timestamps(pa.array(zoned), times.zoned_timestamp).to_pylist()
    assert got == ["2023-11-14 22:13:20.002752+00", "2024-02-29 00:00:00+00", "infinity", None]
    docs = ['{"gift": true}', "[]", None]
    assert semantic.json_texts(pa.array(docs), convert.json_text).to_pylist() == docs
    ms = pa.array([1704110400120, -1, None], pa.int64())
    got = semantic.milli_timestamps(ms, times.timestamp(1000)).to_pylist()
    assert got == ["2024-01-01 12:00:00.12", "1969-12-31 23:59:59.999", None]
    clock = pa.array([45296500000, 0, None], pa.int64())
    got = semantic.micro_times(clock, times.time_of_day(10**6)).to_pylist()
    assert got == ["12:34:56.5", "00:00:00", None]
