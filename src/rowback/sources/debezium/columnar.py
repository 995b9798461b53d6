"""Decode a block of Debezium lines in columns, for bulk file ingest.

The line decoder (``decode.py``) is exact but spends ~10 µs of Python per event. Here a
whole block of lines is parsed by Arrow's multithreaded JSON reader with the table's
types declared, then checked and turned into PostgreSQL text column by column.

It is a fast path only. A block it cannot prove it decodes exactly as the line decoder
would (another table, a new or missing column, a TOAST placeholder, a key record, a
tombstone, any type mismatch or malformed line) is declined with None, and the caller
decodes that block line by line, which quarantines bad lines naming their field.
``tests/sources/debezium/test_columnar.py`` checks that both paths store the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from rowback.model import ChangeBatch, Op
from rowback.sources.debezium import convert
from rowback.sources.debezium.convert import INT_RANGES, float_text
from rowback.sources.debezium.decode import MAX_SEQ, MAX_TS_US, Decoder
from rowback.sources.debezium.semantic import SEMANTIC, Declined, ToText, each
from rowback.sources.debezium.tables import UNDECIDED, DecodeError, Table, row_fields

_WRAPPED = b'{"schema":'
_OPS = pa.array(["r", "c", "u", "d"])  # index == Op value: SNAPSHOT, INSERT, UPDATE, DELETE
_ARROW_OF_KIND = {
    "text": pa.string(),
    "bigint": pa.int64(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
}
_ARROW_OF_CONNECT = {
    "int8": pa.int64(),
    "int16": pa.int64(),
    "int32": pa.int64(),
    "int64": pa.int64(),
    "float32": pa.float64(),
    "float64": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "bytes": pa.string(),  # base64
}
_SOURCE = pa.struct(
    [
        ("schema", pa.string()),
        ("table", pa.string()),
        ("txId", pa.int64()),
        ("lsn", pa.int64()),
        ("ts_ms", pa.int64()),
        ("ts_us", pa.int64()),
    ]
)
_READ = pj.ReadOptions(use_threads=True, block_size=4 << 20)


class BlockDecoder:
    """Bulk decoding for ``decoder``'s stream; shares (and advances) its state."""

    def __init__(self, decoder: Decoder) -> None:
        self.d = decoder
        self.learn = False
        """Whether the last block was declined for want of learning (see ``Declined``)."""

    def decode(self, block: bytes) -> ChangeBatch | None:
        """The changes of ``block`` (whole lines, each ending in a newline), or None."""
        try:
            return self._decode(block)
        except Declined as e:
            self.learn = e.learn
            return None
        except Exception:  # noqa: BLE001 - whatever Arrow makes of odd input: the line path decides
            self.learn = False
            return None

    def _decode(self, block: bytes) -> ChangeBatch:
        d = self.d
        lines = Lines(block)
        # Every line must be one object: Arrow's reader crashes on some other values, and
        # it reads more than JSON (newlines inside an object, two objects on a line,
        # invalid UTF-8; NaN and Infinity, checked once parsed), which the line decoder
        # rejects.
        if not lines.objects() or not lines.all_end_with(b"}") or lines.longest() > d.max_line:
            raise Declined
        if d._ph in block or not lines.utf8():
            raise Declined
        env_schema: object = None
        if block.startswith(_WRAPPED):
            env_schema, block = self._unwrap(block, lines)
        elif lines.any_start_with(_WRAPPED):
            raise Declined
        q, tab = self._table(env_schema)
        row, to_text = _row_type(tab)
        schema = pa.schema(
            [("before", row), ("after", row), ("source", _SOURCE), ("op", pa.string())]
        )
        opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
        try:
            t = pj.read_json(io.BytesIO(block), read_options=_READ, parse_options=opts)
        except (pa.ArrowException, ValueError):
            raise Declined from None
        if t.num_rows != len(lines) or _non_finite(t) or t.schema.field("after").type != row:
            raise Declined
        if t.schema.field("before").type != row:
            raise Declined
        return self._batch(t, q, tab, to_text, lines if env_schema is None else None)

    def _unwrap(self, block: bytes, lines: Lines) -> tuple[object, bytes]:
        """The schema every line of ``block`` starts with, and the payloads alone."""
        hit = next((p for p in self.d._schemas.prefixes if block.startswith(p[0])), None)
        if hit is None:
            raise Declined(learn=True)
        prefix, env_schema = hit
        if not lines.all_end_with(b"}") or self.d._ph_b64_bytes in block:
            raise Declined
        # every line is the prefix, a payload and the envelope's "}": cut the payloads out
        # (10x faster than bytes.replace of a schema-long prefix)
        starts, ends, cut = lines.starts.tolist(), lines.ends.tolist(), len(prefix)
        if not all(block.startswith(prefix, s) for s in starts):
            raise Declined
        payloads = b"\n".join([block[s + cut : e - 1] for s, e in zip(starts, ends, strict=True)])
        payloads += b"\n"
        inner = Lines(payloads)
        if not inner.objects() or not inner.all_end_with(b"}"):
            raise Declined
        return env_schema, payloads

    def _table(self, env_schema: object) -> tuple[tuple[str, str], Table]:
        d = self.d
        if d.last is None:
            raise Declined(learn=True)
        q = d.last
        tab = d.tables.current.get(q)
        if tab is None:
            raise Declined(learn=True)
        if env_schema is not None:
            # only the version the line decoder made from this very schema
            try:
                fields = row_fields(env_schema)
            except DecodeError:
                raise Declined from None
            if tab.convs is None or not (tab.fields is fields or tab.fields == fields):
                raise Declined(learn=True)
        elif tab.kinds is None or tab.undecided:
            raise Declined(learn=True)
        return q, tab

    def _batch(
        self,
        t: pa.Table,
        q: tuple[str, str],
        tab: Table,
        to_text: Sequence[ToText],
        bare: Lines | None,
    ) -> ChangeBatch:
        src = _flat(t.column("source"))
        if src.null_count:
            raise Declined
        if not _all_equal(src.field("schema"), q[0]) or not _all_equal(src.field("table"), q[1]):
            raise Declined(learn=True)  # perhaps another table from here on
        op = pc.index_in(_flat(t.column("op")), value_set=_OPS)
        if op.null_count:
            raise Declined
        op_np = op.to_numpy(zero_copy_only=False)
        is_del = op_np == Op.DELETE
        after, before = _flat(t.column("after")), _flat(t.column("before"))
        after_ok = after.is_valid().to_numpy(zero_copy_only=False)
        before_ok = before.is_valid().to_numpy(zero_copy_only=False)
        if (after_ok == is_del).any() or (is_del & ~before_ok).any():
            raise Declined  # an insert/update without its row, a delete with one or without
        txid = _unsigned(src.field("txId"))
        lsn = _unsigned(src.field("lsn"))
        commit_us = _commit_us(src)
        names = tab.names
        after_cols = [after.field(i) for i in range(len(names))]
        before_cols = [before.field(i) for i in range(len(names))]
        for i in tab.key_idx:
            key = pc.if_else(pa.array(is_del), before_cols[i], after_cols[i])
            if key.null_count:
                raise Declined
            after_cols[i] = key
        if bare is not None:
            self._check_missing(bare, after_cols, is_del, names)
        after_text = tuple(f(c) for f, c in zip(to_text, after_cols, strict=True))
        has_before = pa.array(before_ok)
        before_text = None
        if before_ok.any():
            before_text = tuple(f(c) for f, c in zip(to_text, before_cols, strict=True))
        seq, last = self._seq(txid.to_numpy(zero_copy_only=False))
        batch = ChangeBatch(
            tab.schema,
            op.cast(pa.uint8()),
            txid,
            lsn,
            pa.array(seq, pa.uint32()),
            commit_us,
            after_text,
            before_text,
            has_before if before_text is not None else None,
        )
        # the decoder's state moves only now: a declined block must leave it as it was
        self.d._tx, self.d._seq = last
        return batch

    def _check_missing(
        self, lines: Lines, cols: list[pa.Array], is_del: np.ndarray, names: tuple[str, ...]
    ) -> None:
        """Arrow reads a missing field as null, but to the line decoder an after image
        without a column means the column was dropped: look again at rows with nulls
        (an extra parse each, so streams with many NULLs gain less from bulk decoding)."""
        nulls = np.zeros(len(is_del), dtype=bool)
        for c in cols:
            if c.null_count:
                nulls |= c.is_null().to_numpy(zero_copy_only=False)
        for r in np.flatnonzero(nulls & ~is_del):
            doc = orjson.loads(lines.line(int(r)))
            if tuple(doc["after"]) != names:
                raise Declined

    def _seq(self, txid: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """Order within the transaction, continuing the line decoder's count; and the
        decoder's (transaction, count) after the block."""
        d = self.d
        idx = np.arange(len(txid), dtype=np.int64)
        starts = np.r_[True, txid[1:] != txid[:-1]]
        seq = idx - np.maximum.accumulate(np.where(starts, idx, 0))
        if int(txid[0]) == d._tx:
            later = np.flatnonzero(starts[1:])
            seq[: later[0] + 1 if len(later) else len(seq)] += d._seq + 1
        return np.minimum(seq, MAX_SEQ), (int(txid[-1]), int(seq[-1]))


class Lines:
    """Where the lines of a block (each ending in a newline) start and end, found with
    numpy: several times faster than ``bytes.count`` on megabytes."""

    def __init__(self, block: bytes) -> None:
        self.block = block
        self.bytes = np.frombuffer(block, dtype=np.uint8)
        self.ends = np.flatnonzero(self.bytes == 10)
        self.starts = np.r_[0, self.ends[:-1] + 1] if len(self.ends) else self.ends

    def __len__(self) -> int:
        return len(self.ends)

    def objects(self) -> bool:
        """Whether there are lines, the last ends the block, and each starts with ``{``."""
        if not len(self.ends) or self.ends[-1] != len(self.block) - 1:
            return False
        return bool((self.bytes[self.starts] == ord("{")).all())

    def utf8(self) -> bool:
        if not (self.bytes >= 0x80).any():
            return True
        try:
            self.block.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    def all_end_with(self, char: bytes) -> bool:
        return bool((self.bytes[self.ends - 1] == char[0]).all()) if len(self.ends) else False

    def longest(self) -> int:
        return int((self.ends - self.starts).max()) if len(self.ends) else 0

    def any_start_with(self, prefix: bytes) -> bool:
        second = self.bytes[np.minimum(self.starts + 2, len(self.block) - 1)]
        return any(self.block.startswith(prefix, int(s)) for s in self.starts[second == prefix[2]])

    def line(self, i: int) -> bytes:
        return self.block[self.starts[i] : self.ends[i]]


def _non_finite(data: pa.Table | pa.Array | pa.ChunkedArray) -> bool:
    """Whether any float anywhere (unread envelope fields too) is NaN or infinite: Arrow
    reads ``NaN``, ``Infinity`` and numbers beyond double, JSON has none of them."""
    if isinstance(data, pa.Table):
        return any(_non_finite(c) for c in data.columns)
    kind = data.type
    if pa.types.is_floating(kind):
        return bool(pc.any(pc.invert(pc.is_finite(data))).as_py())
    if pa.types.is_struct(kind):
        arr = data.combine_chunks() if isinstance(data, pa.ChunkedArray) else data
        return any(_non_finite(arr.field(i)) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        arr = data.combine_chunks() if isinstance(data, pa.ChunkedArray) else data
        return _non_finite(arr.flatten())
    return False


def _flat(col: pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)


def _all_equal(arr: pa.Array, value: str) -> bool:
    return arr.null_count == 0 and bool(pc.all(pc.equal(arr, value)).as_py())


def _unsigned(arr: pa.Array) -> pa.Array:
    """txId and lsn: a missing one is 0, as the line decoder has it."""
    filled = pc.fill_null(arr, 0) if arr.null_count else arr
    if pc.min(filled).as_py() < 0:
        raise Declined
    return filled.cast(pa.uint64())


def _commit_us(src: pa.StructArray) -> pa.Array:
    us, ms = src.field("ts_us"), src.field("ts_ms")
    if ms.null_count < len(ms) and pc.max(ms).as_py() >= MAX_TS_US // 1000:
        raise Declined
    if ms.null_count < len(ms) and pc.min(ms).as_py() < 0:
        raise Declined
    ts = pc.coalesce(us, pc.multiply_checked(ms, 1000))
    if ts.null_count:
        raise Declined
    lo, hi = pc.min_max(ts).values()
    if lo.as_py() < 0 or hi.as_py() >= MAX_TS_US:
        raise Declined
    return ts


def _row_type(tab: Table) -> tuple[pa.StructType, list[ToText]]:
    """The Arrow type of the table's rows as JSON carries them, and each column's
    conversion to PostgreSQL text."""
    fields, conv = [], []
    if tab.kinds is not None:
        for name, kind in zip(tab.names, tab.kinds, strict=True):
            if kind == UNDECIDED or kind not in _ARROW_OF_KIND:
                raise Declined
            fields.append((name, _ARROW_OF_KIND[kind]))
            conv.append(_VECTOR[kind])
        return pa.struct(fields), conv
    assert tab.convs is not None and isinstance(tab.fields, list)
    for name, f, col, c in zip(tab.names, tab.fields, tab.schema.columns, tab.convs, strict=True):
        arrow = _ARROW_OF_CONNECT.get(f.get("type"))
        if arrow is None:
            raise Declined  # arrays, structs, maps: Arrow cannot give their JSON text
        fields.append((name, arrow))
        conv.append(_connect_to_text(f, col.type, c))
    return pa.struct(fields), conv


def _connect_to_text(field: dict[str, Any], pg_type: str, c: convert.Converter) -> ToText:
    bulk = SEMANTIC.get(field.get("name") or "")
    if bulk is not None:
        return lambda arr: bulk(arr, c)
    if field.get("name") is None and pg_type in INT_RANGES:
        return _integers(pg_type)
    if c is convert.text or (field.get("name") is None and pg_type == "boolean"):
        return _VECTOR["text" if c is convert.text else "boolean"]
    if field.get("name") is None and pg_type == "double precision":
        return _VECTOR["double precision"]
    return each(c)


def _integers(pg_type: str) -> ToText:
    lo, hi = INT_RANGES[pg_type]

    def conv(arr: pa.Array) -> pa.Array:
        if arr.null_count < len(arr):
            a, b = pc.min_max(arr).values()
            if a.as_py() < lo or b.as_py() > hi:
                raise Declined
        return arr.cast(pa.string())

    return conv


def _floats(arr: pa.Array) -> pa.Array:
    """PostgreSQL's text of doubles (``float_text``). Arrow prints the same shortest
    digits in fixed notation for 1e-4 <= |v| < 1e15; the rest go through Python."""
    text = arr.cast(pa.string())
    if pc.any(pc.is_inf(arr)).as_py() or pc.any(pc.equal(text, "-0")).as_py():
        # a number beyond double is an error to the line decoder (Arrow makes it inf);
        # "-0" is 0 to it when written as an integer, -0 as a float: Arrow cannot tell
        raise Declined
    mag = pc.abs(arr)
    odd = pc.or_(
        pc.match_substring(text, "e"),
        pc.and_(pc.not_equal(mag, 0.0), pc.or_(pc.less(mag, 1e-4), pc.greater_equal(mag, 1e15))),
    )
    if not pc.any(odd).as_py():
        return text
    values, flags = arr.to_pylist(), odd.to_pylist()
    out = text.to_pylist()
    for i, f in enumerate(flags):
        if f:
            out[i] = float_text(values[i])
    return pa.array(out, pa.string())


_VECTOR: dict[str, ToText] = {
    "text": lambda a: a,
    "bigint": lambda a: a.cast(pa.string()),
    "double precision": _floats,
    "boolean": lambda a: pc.if_else(a, "t", "f"),
}
