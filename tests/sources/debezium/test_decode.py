"""Decoding single Debezium events: shapes, operations, keys, types, placeholders, hostile input."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from dbz_events import TS_MS, decimal_b64, event, field, line, source, wrapped

from rowback.model import Column, Op
from rowback.sources.debezium.convert import float_text
from rowback.sources.debezium.decode import PLACEHOLDER, DecodeError, Decoder, NoKey, Oversized

ROW = {"id": 1, "name": "a", "amount": 1.5, "ok": True, "meta": {"x": [1, 2]}}


def decode(doc: Any, decoder: Decoder | None = None) -> Any:
    return (decoder or Decoder()).decode(doc if isinstance(doc, bytes) else line(doc))


def error(doc: Any, decoder: Decoder | None = None) -> str:
    with pytest.raises(DecodeError) as e:
        decode(doc, decoder)
    return str(e.value)


# -- operations and shapes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "expected"),
    [("c", Op.INSERT), ("u", Op.UPDATE), ("d", Op.DELETE), ("r", Op.SNAPSHOT), ("t", Op.TRUNCATE)],
)
def test_every_operation(op: str, expected: Op) -> None:
    d = Decoder(source="src1")
    decode(event("c", ROW, txid=5, lsn=90), d)  # the table is known before a truncate
    after = None if op in "dt" else {**ROW, "name": "b"}
    before = ROW if op in "ud" else None
    ch = decode(event(op, after, before, txid=6, lsn=100, ts_ms=TS_MS + 1), d)
    assert ch.op is expected
    assert (ch.txid, ch.lsn, ch.commit_us, ch.seq) == (6, 100, (TS_MS + 1) * 1000, 0)
    assert ch.table.source == "src1" and ch.table.qualified == "public.orders"
    if op == "t":
        assert (ch.key, ch.after, ch.before) == (None, None, None)
        return
    assert ch.key == ("1",)
    assert ch.after == (None if op == "d" else ["1", "b", "1.5", "t", '{"x":[1,2]}'])
    assert ch.before == (["1", "a", "1.5", "t", '{"x":[1,2]}'] if before else None)


def test_all_shapes_decode_alike() -> None:
    ev = event("c", ROW)
    fields = [
        field("id", "int64"),
        field("name", "string"),
        field("amount", "float64"),
        field("ok", "boolean"),
        field("meta", "struct", fields=[]),
    ]
    shapes = {
        "bare": ev,
        "wrapped": wrapped(ev, fields),
        "record": {"key": {"id": 1}, "value": ev},
        "record, wrapped": {
            "key": {"schema": {"type": "struct"}, "payload": {"id": 1}},
            "value": wrapped(ev, fields),
        },
    }
    for name, doc in shapes.items():
        ch = decode(doc)
        assert ch.after == ["1", "a", "1.5", "t", '{"x":[1,2]}'], name
        assert ch.key == ("1",), name


def test_seq_counts_events_within_a_transaction() -> None:
    d = Decoder()
    seqs = [
        decode(event("c", {"id": i}, txid=tx, lsn=i), d).seq
        for i, tx in enumerate([7] * 3 + [8] * 2)
    ]
    assert seqs == [0, 1, 2, 0, 1]
    snap = decode(event("r", {"id": 9}, txid=None, lsn=None), d)
    assert (snap.txid, snap.lsn, snap.op) == (0, 0, Op.SNAPSHOT)


def test_ts_us_is_preferred_over_ts_ms() -> None:
    ev = event("c", {"id": 1})
    ev["source"]["ts_us"] = TS_MS * 1000 + 7
    assert decode(ev).commit_us == TS_MS * 1000 + 7


def test_tombstones_and_blank_lines_are_not_changes() -> None:
    d = Decoder()
    for raw in (b"", b"   \r", b"null", b'{"key": {"id": 1}, "value": null}'):
        assert d.decode(raw) is None
    assert d.decode(line({"schema": {}, "payload": None})) is None


# -- primary keys ----------------------------------------------------------------------


def test_key_from_record_then_mapping_then_id() -> None:
    rec = {"key": {"a": 1, "b": "x"}, "value": event("c", {"b": "x", "v": 2, "a": 1})}
    ch = decode(rec)
    assert [c.name for c in ch.table.columns if c.key] == ["b", "a"]
    assert ch.key == ("x", "1")  # key values follow the column order, as the store expects
    mapped = Decoder(keys={"public.orders": ["code"]})
    assert decode(event("c", {"id": 1, "code": "z"}), mapped).key == ("z",)
    assert decode(event("c", {"id": 4, "code": "z"})).key == ("4",)


def test_missing_key_stops_naming_the_fields_and_the_setting() -> None:
    with pytest.raises(NoKey) as e:
        decode(event("c", {"sku": "z", "name": "n"}))
    assert str(e.value) == (
        "public.orders: no key known (fields: sku, name); pass --key public.orders=sku"
    )
    with pytest.raises(NoKey, match="--key column 'x' is not a field"):
        decode(event("c", {"id": 1}), Decoder(keys={"public.orders": ["x"]}))
    assert error(event("c", {"id": None, "v": 1})) == "after.id: primary key is null"


def test_inferred_key_is_told_once_per_table() -> None:
    told: list[str] = []
    d = Decoder(notify=told.append)
    decode(event("c", {"id": 1, "v": 1}), d)
    decode(event("c", {"id": 2, "v": 1, "w": 2}), d)  # a new version keeps the key
    decode(event("c", {"id": 1}, table="items"), d)
    decode({"key": {"code": 1}, "value": event("c", {"code": 1, "id": 2}, table="x")}, d)
    decode(event("c", {"id": 1, "code": 1}, table="y"), Decoder(keys={"public.y": ["code"]}))
    assert told == [
        "public.orders: key inferred as (id) from its field named id",
        "public.items: key inferred as (id) from its field named id",
    ]


def kcat(value: Any, key: Any = None) -> dict[str, Any]:
    """What ``kcat -C -J`` prints for one message: key and payload as JSON text."""
    text = None if value is None else orjson.dumps(value).decode()
    k = None if key is None else orjson.dumps(key).decode()
    return {"topic": "srv.public.orders", "partition": 0, "offset": 7, "tstype": "create",
            "ts": TS_MS, "broker": 1, "key": k, "payload": text}  # fmt: skip


def test_kcat_envelope_gives_key_and_value() -> None:
    ev = event("c", {"sku": "a", "v": 1})
    ch = decode(kcat(ev, {"sku": "a"}))
    assert (ch.key, [c.name for c in ch.table.columns if c.key]) == (("a",), ["sku"])
    schema_key = {"schema": {"type": "struct"}, "payload": {"sku": "b"}}
    wrapped_ev = wrapped(event("c", {"sku": "b", "v": 2}), [field("sku", "string"),
                                                             field("v", "int64")])  # fmt: skip
    assert decode(kcat(wrapped_ev, schema_key)).key == ("b",)
    assert decode(kcat(None, {"sku": "a"})) is None  # a tombstone
    with pytest.raises(NoKey):
        decode(kcat(ev))  # no key, no id, no setting
    bad = {**kcat(ev), "key": "{nope"}
    assert error(bad).startswith("key: not valid JSON")
    assert error({**kcat(ev), "payload": "[1]"}) == "payload: expected an object, got array"


def test_delete_with_only_a_key_record() -> None:
    d = Decoder()
    decode({"key": {"id": 3}, "value": event("c", {"id": 3, "v": "x"})}, d)
    ch = decode({"key": {"id": 3}, "value": event("d", None, None)}, d)
    assert (ch.op, ch.key, ch.before) == (Op.DELETE, ("3",), None)


# -- types without a schema ------------------------------------------------------------


def test_inferred_types_are_kept_and_enforced() -> None:
    d = Decoder()
    ch = decode(event("c", {"id": 1, "amount": 5, "f": 1.0, "b": False, "j": [1], "s": "x"}), d)
    assert [c.type for c in ch.table.columns] == [
        "bigint", "bigint", "double precision", "boolean", "jsonb", "text",
    ]  # fmt: skip
    assert ch.after == ["1", "5", "1", "f", "[1]", "x"]
    bad = event("u", {"id": 1, "amount": "12", "f": 1.0, "b": False, "j": [1], "s": "x"})
    assert error(bad, d) == "after.amount: expected bigint, got string"
    bad = event("u", {"id": 1, "amount": 1, "f": "abc", "b": False, "j": [1], "s": "x"})
    assert error(bad, d) == "after.f: expected double precision, got string"
    bad = event("u", {"id": 1, "amount": 1, "f": 2, "b": 1, "j": "s", "s": 5})
    assert error(bad, d) == "after.b: expected boolean, got integer"
    ok = decode(event("u", {"id": 1, "amount": 2, "f": "NaN", "b": True, "j": "s", "s": "y"}), d)
    assert ok.after == ["1", "2", "NaN", "t", '"s"', "y"]
    assert ok.table is ch.table  # one TableSchema object per version


def test_bigint_range_is_checked() -> None:
    d = Decoder()
    decode(event("c", {"id": 1, "n": 5}), d)
    assert error(event("u", {"id": 1, "n": 2**63}), d) == (
        f"after.n: {2**63} is out of range for bigint"
    )
    raw = line(event("u", {"id": 1, "n": 0})).replace(b'"n":0', b'"n":' + str(2**70).encode())
    assert error(raw, d) == "after.n: expected bigint, got number"


def test_null_columns_wait_for_a_value_to_decide() -> None:
    d = Decoder()
    first = decode(event("c", {"id": 1, "n": None}), d)
    assert first.table.columns[1] == Column("n", "text")
    again = decode(event("c", {"id": 2, "n": None}), d)
    assert again.table is first.table
    decided = decode(event("u", {"id": 2, "n": 7}), d)
    assert decided.table.columns[1] == Column("n", "bigint") and decided.after == ["2", "7"]
    from_before = decode(event("u", {"id": 3, "m": None}, {"id": 3, "m": "x"}), Decoder())
    assert from_before.table.columns[1].type == "text"


def test_new_columns_make_a_new_version() -> None:
    d = Decoder()
    v1 = decode(event("c", {"id": 1}), d).table
    v2 = decode(event("c", {"id": 2, "extra": True}), d).table
    assert v2 is not v1 and [c.type for c in v2.columns] == ["bigint", "boolean"]
    assert decode(event("c", {"id": 3, "extra": False}), d).table is v2


def test_state_restores_types_and_transaction_order() -> None:
    d = Decoder()
    decode(event("c", {"id": 1, "n": 5, "x": None}, txid=9, lsn=1), d)
    state = orjson.loads(orjson.dumps(d.state()))
    fresh = Decoder()
    fresh.restore(state)
    ch = decode(event("c", {"id": 2, "n": None, "x": None}, txid=9, lsn=2), fresh)
    assert [c.type for c in ch.table.columns] == ["bigint", "bigint", "text"]
    assert ch.seq == 1
    assert error(event("c", {"id": 3, "n": "s", "x": None}, txid=9), fresh).startswith("after.n")
    assert decode(event("c", {"id": 4, "n": 1, "x": 2}), fresh).table.columns[2].type == "bigint"


# -- types from a Kafka Connect schema -------------------------------------------------

DZ = "io.debezium"
SEMANTIC_CASES = [
    (field("v", "bytes", "org.apache.kafka.connect.data.Decimal", scale=2), decimal_b64(12345),
     "numeric", "123.45"),
    (field("v", "bytes", "org.apache.kafka.connect.data.Decimal", scale=2), decimal_b64(-5),
     "numeric", "-0.05"),
    (field("v", "bytes", "org.apache.kafka.connect.data.Decimal", scale=2,
           connect_decimal_precision=10), decimal_b64(-1234567), "numeric(10,2)", "-12345.67"),
    (field("v", "bytes", "org.apache.kafka.connect.data.Decimal", scale=0), decimal_b64(-129),
     "numeric", "-129"),
    (field("v", "struct", f"{DZ}.data.VariableScaleDecimal"),
     {"scale": 3, "value": decimal_b64(-1000001)}, "numeric", "-1000.001"),
    (field("v", "int32", f"{DZ}.time.Date"), 19723, "date", "2024-01-01"),
    (field("v", "int32", f"{DZ}.time.Date"), -1, "date", "1969-12-31"),
    # day counts and epochs below as PostgreSQL 15 computes them
    (field("v", "int32", f"{DZ}.time.Date"), -735160, "date", "0044-03-15 BC"),
    (field("v", "int32", f"{DZ}.time.Date"), -719163, "date", "0001-12-31 BC"),
    (field("v", "int32", f"{DZ}.time.Date"), -2440588, "date", "4714-11-24 BC"),
    (field("v", "int64", f"{DZ}.time.MicroTimestamp"), -63517788000 * 10**6 + 5,
     "timestamp without time zone", "0044-03-15 10:00:00.000005 BC"),
    (field("v", "int64", f"{DZ}.time.Timestamp"), 1704110400123,
     "timestamp without time zone", "2024-01-01 12:00:00.123"),
    (field("v", "int64", f"{DZ}.time.MicroTimestamp"), 1704110400000001,
     "timestamp without time zone", "2024-01-01 12:00:00.000001"),
    (field("v", "int64", f"{DZ}.time.MicroTimestamp"), -1,
     "timestamp without time zone", "1969-12-31 23:59:59.999999"),
    (field("v", "int64", f"{DZ}.time.NanoTimestamp"), 1704110400000000000,
     "timestamp without time zone", "2024-01-01 12:00:00"),
    (field("v", "string", f"{DZ}.time.ZonedTimestamp"), "2024-01-01T12:00:00.5Z",
     "timestamp with time zone", "2024-01-01 12:00:00.5+00"),
    (field("v", "string", f"{DZ}.time.ZonedTimestamp"), "2024-01-01T01:30:00+02:00",
     "timestamp with time zone", "2023-12-31 23:30:00+00"),
    (field("v", "int64", f"{DZ}.time.MicroTime"), 45296000001, "time without time zone",
     "12:34:56.000001"),
    (field("v", "int32", f"{DZ}.time.Time"), 45296789, "time without time zone", "12:34:56.789"),
    (field("v", "int64", f"{DZ}.time.NanoTime"), 86400000000000, "time without time zone",
     "24:00:00"),
    (field("v", "string", f"{DZ}.time.ZonedTime"), "10:15:30.25Z", "time with time zone",
     "10:15:30.25+00"),
    (field("v", "string", f"{DZ}.data.Uuid"), "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "uuid",
     "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    (field("v", "string", f"{DZ}.data.Json"), '{"a": [1, 2]}', "jsonb", '{"a": [1, 2]}'),
    (field("v", "bytes"), "AAH/", "bytea", "\\x0001ff"),
    (field("v", "int8"), -3, "smallint", "-3"),
    (field("v", "int16"), 300, "smallint", "300"),
    (field("v", "int32"), -70000, "integer", "-70000"),
    (field("v", "int64"), 2**62, "bigint", str(2**62)),
    (field("v", "float32"), 0.1, "real", "0.1"),
    (field("v", "float32"), 1234567.0, "real", "1.234567e+06"),
    (field("v", "float64"), 1e15, "double precision", "1e+15"),
    (field("v", "float64"), "-Infinity", "double precision", "-Infinity"),
    (field("v", "boolean"), False, "boolean", "f"),
    (field("v", "string"), "héllo", "text", "héllo"),
    (field("v", "array", items={"type": "int32"}), [1, None, 3], "integer[]", "{1,NULL,3}"),
    (field("v", "array", items={"type": "string"}), ["a b", "", "NULL", 'q"\\'], "text[]",
     '{"a b","","NULL","q\\"\\\\"}'),
    (field("v", "array", items={"type": "array", "items": {"type": "int64"}}), [[1, 2], [3, 4]],
     "bigint[]", "{{1,2},{3,4}}"),
    (field("v", "map"), {"k": 1}, "jsonb", '{"k":1}'),
]  # fmt: skip


@pytest.mark.parametrize(("fld", "value", "pg_type", "text"), SEMANTIC_CASES)
def test_schema_types(fld: dict[str, Any], value: Any, pg_type: str, text: str) -> None:
    ev = wrapped(event("c", {"id": 1, "v": value}), [field("id", "int64"), fld])
    ch = decode(ev)
    assert ch.table.columns[1].type == pg_type
    assert ch.after == ["1", text]


@pytest.mark.parametrize(
    ("fld", "value", "message"),
    [
        (field("v", "int16"), 40000, "after.v: 40000 is out of range for smallint"),
        (field("v", "int64"), "7", "after.v: expected bigint, got string"),
        (field("v", "bytes", "org.apache.kafka.connect.data.Decimal", scale=2), "%%%",
         "after.v: expected numeric as base64, got a string that is not base64"),
        (field("v", "bytes", "org.apache.kafka.connect.data.Decimal", scale=1,
               connect_decimal_precision=3), decimal_b64(12345),
         "after.v: 1234.5 does not fit numeric(3,1)"),
        (field("v", "int32", f"{DZ}.time.Date"), 10**9,
         "after.v: 2739877-01-03 is outside 4714-11-24 BC..294246-12-31"),
        (field("v", "int32", f"{DZ}.time.Date"), -2440589,
         "after.v: 4714-11-23 BC is outside 4714-11-24 BC..294246-12-31"),
        (field("v", "string", f"{DZ}.time.ZonedTimestamp"), "yesterday",
         "after.v: expected timestamp with time zone, got 'yesterday'"),
        (field("v", "string", f"{DZ}.time.ZonedTimestamp"), "2024-02-30T00:00:00Z",
         "after.v: expected timestamp with time zone, got '2024-02-30T00:00:00Z'"),
        (field("v", "string", f"{DZ}.data.Uuid"), "nope", "after.v: expected uuid, got 'nope'"),
        (field("v", "string", f"{DZ}.data.Json"), "{",
         "after.v: expected jsonb, got a string that is not JSON"),
        (field("v", "float32"), 1e39, "after.v: 1e+39 is out of range for real"),
        (field("v", "array", items={"type": "int32"}), 5,
         "after.v: expected an array, got integer"),
    ],
)  # fmt: skip
def test_schema_type_errors(fld: dict[str, Any], value: Any, message: str) -> None:
    ev = wrapped(event("c", {"id": 1, "v": value}), [field("id", "int64"), fld])
    assert error(ev) == message


def test_schema_version_is_reused_until_fields_change() -> None:
    d = Decoder()
    fields = [field("id", "int64"), field("v", "string")]
    a = decode(wrapped(event("c", {"id": 1, "v": "x"}), fields), d).table
    b = decode(wrapped(event("c", {"id": 2, "v": "y"}), fields), d).table
    c = decode(
        wrapped(event("c", {"id": 3, "v": 1}), [field("id", "int64"), field("v", "int32")]), d
    )
    assert a is b and c.table is not a and c.table.columns[1].type == "integer"


def test_float_text_matches_postgresql() -> None:
    cases = {0.1: "0.1", 100000.0: "100000", 1e15: "1e+15", 1.5e15: "1.5e+15", 1e16: "1e+16",
             1e-5: "1e-05", 0.0001: "0.0001", -0.0: "-0", 123456789012345.6: "123456789012345.6",
             float("nan"): "NaN", float("inf"): "Infinity"}  # fmt: skip
    assert {k: float_text(k) for k in cases if k == k} | {"nan": float_text(float("nan"))} == {
        **{k: v for k, v in cases.items() if k == k}, "nan": "NaN"}  # fmt: skip


# -- TOAST placeholders ----------------------------------------------------------------


def test_placeholder_marks_unchanged_columns() -> None:
    d = Decoder()
    decode(event("c", {"id": 1, "doc": "big", "n": 1}), d)
    ch = decode(
        event("u", {"id": 1, "doc": PLACEHOLDER, "n": 2}, {"id": 1, "doc": PLACEHOLDER, "n": 1}), d
    )
    assert ch.unchanged == frozenset({1})
    assert ch.after == ["1", None, "2"] and ch.before == ["1", None, "1"]
    fields = [
        field("id", "int64"),
        field("b", "bytes"),
        field("a", "array", items={"type": "string"}),
    ]
    ph64 = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="
    ch = decode(wrapped(event("u", {"id": 1, "b": ph64, "a": [PLACEHOLDER]}), fields), d)
    assert ch.unchanged == frozenset({1, 2}) and ch.after == ["1", None, None]
    assert "placeholder in op c" in error(event("c", {"id": 2, "doc": PLACEHOLDER, "n": 1}), d)


def test_placeholder_only_in_before_drops_the_before_image() -> None:
    d = Decoder()
    decode(event("c", {"id": 1, "doc": "x"}), d)
    ch = decode(event("u", {"id": 1, "doc": "y"}, {"id": 1, "doc": PLACEHOLDER}), d)
    assert ch.unchanged == frozenset() and ch.before is None and ch.after == ["1", "y"]


# -- hostile input ---------------------------------------------------------------------

GOOD = event("c", {"id": 1})


def with_(path: str, value: Any) -> bytes:
    doc = orjson.loads(line(GOOD))
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[p]
    node[last] = value
    return line(doc)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (line(GOOD)[:-9], "json: not valid JSON"),
        (b'{"op": "c", "x": "\xff"}', "json: not valid JSON: str is not valid UTF-8"),
        (b"[1, 2]", "json: expected an object, got array"),
        (b'"c"', "json: expected an object, got string"),
        (b"[" * 100_000, "json: not valid JSON: depth limit exceeded"),
        (with_("op", 1), "op: expected a string, got integer"),
        (with_("op", ["c"]), "op: expected a string, got array"),
        (with_("op", "x"), "op: unknown operation 'x' (expected c, u, d, r or t)"),
        (with_("op", None), "op: missing"),
        (with_("source", "s"), "source: expected an object, got string"),
        (with_("source.table", None), "source.table: expected a name, got null"),
        (with_("source.schema", 5), "source.schema: expected a name, got integer"),
        (with_("source.txId", "12"), "source.txId: expected a transaction id, got string"),
        (with_("source.txId", -1), "source.txId: expected a transaction id, got integer"),
        (with_("source.lsn", 1.5), "source.lsn: expected an LSN, got number"),
        (with_("source.ts_ms", "now"), "source.ts_ms: expected a time since the epoch"),
        (with_("source.ts_ms", 10**17), "source.ts_ms: expected a time since the epoch"),
        (with_("after", [1]), "after: expected an object or null, got array"),
        (with_("after", None), "after: missing for op c"),
        (with_("before", 3), "before: expected an object or null, got integer"),
        (with_("after", {"id": None}), "after.id: primary key is null"),
        (line({"key": 5, "value": GOOD}), "key: expected an object, got integer"),
        (line({"key": None, "value": [1]}), "value: expected an object, got array"),
        (line({"schema": {}, "payload": "x"}), "payload: expected an object, got string"),
        (line({"schema": 1, "payload": GOOD}), "schema: expected an object, got integer"),
        (line({"schema": {"fields": [{"field": "after", "fields": [{"type": "int64"}]}]},
               "payload": GOOD}), "schema.after.fields[0]: expected a unique field name"),
        (line({"schema": {"fields": [{"field": "after", "fields": [{"field": "id", "type": "x"}]}]},
               "payload": GOOD}), "schema.after.id: unknown Kafka Connect type 'x'"),
        (line({**GOOD, "op": "t", "after": None, "source": source(table="never")}),
         "source.table: public.never has not been seen yet and has no schema"),
    ],
)  # fmt: skip
def test_hostile_events_raise_decode_errors(raw: bytes, message: str) -> None:
    assert error(raw).startswith(message)


def test_line_size_limit() -> None:
    d = Decoder(max_line=100)
    assert error(b"{" + b" " * 200 + b"}", d) == "line: 202 bytes is over the 100 byte limit"
    big = Oversized(b'{"op"')
    big.size = 50_000_000
    assert error(big) == f"line: 50000000 bytes is over the {16 * 1024 * 1024} byte limit"


def test_huge_values_are_bounded() -> None:
    fields = [field("id", "int64"), field("v", "bytes", "org.apache.kafka.connect.data.Decimal")]
    assert "too long" in error(wrapped(event("c", {"id": 1, "v": "A" * 200_000}), fields))
    assert "limit" in error(wrapped(event("c", {"id": 1, "v": "Q" * 99_000}), fields))


def test_delete_with_placeholders_still_has_its_key() -> None:
    d = Decoder()
    decode(event("c", {"id": 1, "doc": "x"}), d)
    ch = decode(event("d", None, {"id": 1, "doc": PLACEHOLDER}), d)
    assert (ch.op, ch.key, ch.before) == (Op.DELETE, ("1",), None)


def test_key_only_delete_after_a_restart_with_schema_types() -> None:
    d = Decoder()
    fields = [field("id", "string", "io.debezium.data.Uuid"), field("v", "int32")]
    uid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    decode({"key": {"id": uid}, "value": wrapped(event("c", {"id": uid, "v": 1}), fields)}, d)
    fresh = Decoder()
    fresh.restore(d.state())
    ch = decode({"key": {"id": uid}, "value": event("d", None, None)}, fresh)
    assert (ch.op, ch.key, ch.table.columns[0].type) == (Op.DELETE, (uid,), "uuid")
