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
import re
from collections.abc import Sequence
from dataclasses import dataclass
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
# how a line names its table (Debezium writes source.schema, then source.table)
_WHERE = re.compile(rb'"schema":"([^"\\]*)","table":"([^"\\]*)')


@dataclass
class _Part:
    """One table's rows of a block, decoded; ``rows``: where they are in the block."""

    tab: Table
    rows: np.ndarray | None
    op: pa.Array
    txid: pa.Array
    lsn: pa.Array
    commit_us: pa.Array
    after: tuple[pa.Array, ...]
    before: tuple[pa.Array, ...] | None
    has_before: pa.Array | None


class BlockDecoder:
    """Bulk decoding for ``decoder``'s stream; shares (and advances) its state."""

    def __init__(self, decoder: Decoder) -> None:
        self.d = decoder
        self.learn = False
        """Whether the last block was declined for want of learning (see ``Declined``)."""
        self.learn_lines = 0
        """Then how many of its lines to decode one by one (0: a few)."""

    def decode(self, block: bytes) -> list[ChangeBatch] | None:
        """The changes of ``block`` (whole lines, each ending in a newline), one batch
        per table in the order the tables first appear, or None."""
        try:
            return self._decode(block)
        except Declined as e:
            self.learn, self.learn_lines = e.learn, e.lines
            return None
        except Exception:  # noqa: BLE001 - whatever Arrow makes of odd input: the line path decides
            self.learn, self.learn_lines = False, 0
            return None

    def _decode(self, block: bytes) -> list[ChangeBatch]:
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
        wrapped = block.startswith(_WRAPPED)
        if not wrapped and lines.any_start_with(_WRAPPED):
            raise Declined
        groups = self._groups(block, lines)
        parts = []
        for q, rows in groups:
            sub, sub_lines = (block, lines) if rows is None else lines.take(rows)
            parts.append(self._part(q, rows, sub, sub_lines, wrapped))
        return self._batches(parts, groups, len(lines))

    def _groups(
        self, block: bytes, lines: Lines
    ) -> list[tuple[tuple[str, str], np.ndarray | None]]:
        """The tables of the block in the order they first appear, each with its rows
        (None: every row). Found from each line's last ``"schema":…,"table":…`` bytes;
        only a guess (a column may be called ``table``), which parsing then checks, so a
        wrong one declines the block. Without them every line is the last table's."""
        d = self.d
        names = lines.tables()
        ids: dict[bytes, int] = {}
        if names is not None:
            codes = np.fromiter((ids.setdefault(n, len(ids)) for n in names), np.int64)
        found = [_WHERE.fullmatch(n) for n in ids]
        if found and all(found):
            q_names = [(m.group(1).decode(), m.group(2).decode()) for m in found if m]
        elif d.last is not None:
            codes, q_names = np.zeros(len(lines), np.int64), [d.last]
        else:
            raise Declined(learn=True)
        groups: list[tuple[tuple[str, str], np.ndarray | None]] = []
        for i, q in enumerate(q_names):
            rows = np.flatnonzero(codes == i) if len(q_names) > 1 else None
            if q not in d.tables.current:
                first = 0 if rows is None else int(rows[0])
                raise Declined(learn=True, lines=first + 1)
            groups.append((q, rows))
        return groups

    def _part(
        self,
        q: tuple[str, str],
        rows: np.ndarray | None,
        block: bytes,
        lines: Lines,
        wrapped: bool,
    ) -> _Part:
        """The rows of one table (``block``: its lines alone), decoded."""
        env_schema: object = None
        if wrapped:
            env_schema, block = self._unwrap(block, lines)
        tab = self._table(q, env_schema)
        row, to_text = _row_type(tab)
        schema = pa.schema(
            [("before", row), ("after", row), ("source", _SOURCE), ("op", pa.string())]
        )
        opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
        try:
            t = pj.read_json(io.BytesIO(block), read_options=_READ, parse_options=opts)
        except (pa.ArrowException, ValueError):
            raise Declined from None
        if t.num_rows != len(lines) or _non_finite(t):
            raise Declined
        for image in ("after", "before"):
            _check_row_type(t.column(image), row, tab, rows)
        return self._columns(t, q, tab, to_text, rows, lines if env_schema is None else None)

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
            raise Declined(learn=True)  # perhaps a new version of the table's schema
        payloads = b"\n".join([block[s + cut : e - 1] for s, e in zip(starts, ends, strict=True)])
        payloads += b"\n"
        inner = Lines(payloads)
        if not inner.objects() or not inner.all_end_with(b"}"):
            raise Declined
        return env_schema, payloads

    def _table(self, q: tuple[str, str], env_schema: object) -> Table:
        tab = self.d.tables.current.get(q)
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
        elif tab.kinds is None:
            raise Declined(learn=True)
        return tab

    def _columns(
        self,
        t: pa.Table,
        q: tuple[str, str],
        tab: Table,
        to_text: Sequence[ToText | None],
        rows: np.ndarray | None,
        bare: Lines | None,
    ) -> _Part:
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
        names = tab.names
        after_cols = [_field(after, n) for n in names]
        before_cols = [_field(before, n) for n in names]
        for i in tab.key_idx:
            key = pc.if_else(pa.array(is_del), before_cols[i], after_cols[i])
            if key.null_count:
                raise Declined
            after_cols[i] = key
        if bare is not None:
            self._check_missing(bare, after_cols, is_del, names)
        after_text = tuple(_text(f, c) for f, c in zip(to_text, after_cols, strict=True))
        has_before = pa.array(before_ok)
        before_text = None
        if before_ok.any():
            before_text = tuple(_text(f, c) for f, c in zip(to_text, before_cols, strict=True))
        return _Part(
            tab,
            rows,
            op.cast(pa.uint8()),
            _unsigned(src.field("txId")),
            _unsigned(src.field("lsn")),
            _commit_us(src),
            after_text,
            before_text,
            has_before if before_text is not None else None,
        )

    def _batches(
        self,
        parts: list[_Part],
        groups: list[tuple[tuple[str, str], np.ndarray | None]],
        n: int,
    ) -> list[ChangeBatch]:
        """The parts as batches, numbered within their transactions in block order."""
        if len(parts) == 1:
            txid = parts[0].txid.to_numpy(zero_copy_only=False)
            last_q = groups[0][0]
        else:
            txid = np.zeros(n, np.uint64)
            for p in parts:
                txid[p.rows] = p.txid.to_numpy(zero_copy_only=False)
            last_q = next(q for q, rows in groups if rows is not None and rows[-1] == n - 1)
        seq, last = self._seq(txid)
        out = []
        for p in parts:
            out.append(
                ChangeBatch(
                    p.tab.schema,
                    p.op,
                    p.txid,
                    p.lsn,
                    pa.array(seq if p.rows is None else seq[p.rows], pa.uint32()),
                    p.commit_us,
                    p.after,
                    p.before,
                    p.has_before,
                    None if p.rows is None else pa.array(p.rows, pa.uint64()),
                )
            )
        # the decoder's state moves only now: a declined block must leave it as it was
        self.d._tx, self.d._seq = last
        self.d.last = last_q
        return out

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
        """Whether the block is valid UTF-8 (as Python has it: no surrogates, no overlong
        forms), checked by Arrow without a copy: 2-3 times faster than ``bytes.decode``."""
        if not (self.bytes >= 0x80).any():
            return True
        ends = pa.py_buffer(np.array([0, len(self.block)], np.int64))
        one = pa.Array.from_buffers(pa.large_binary(), 1, [None, ends, pa.py_buffer(self.block)])
        try:
            one.cast(pa.large_string())
        except pa.ArrowInvalid:
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

    def tables(self) -> list[bytes] | None:
        """Each line's ``"schema":"…","table":"…`` bytes (the last in the line: Debezium
        writes the source after the row images), or None when a line has none."""
        block, out = self.block, []
        rfind, find = block.rfind, block.find
        for s, e in zip(self.starts.tolist(), self.ends.tolist(), strict=True):
            t = rfind(b'","table":"', s, e)
            at = rfind(b'"schema":"', s, t) if t >= 0 else -1
            if at < 0:
                return None
            out.append(block[at : find(b'"', t + 11, e)])
        return out

    def take(self, rows: np.ndarray) -> tuple[bytes, Lines]:
        """The block of just these lines (in this order), and its lines."""
        block = self.block
        starts, ends = self.starts[rows].tolist(), (self.ends[rows] + 1).tolist()
        sub = b"".join([block[s:e] for s, e in zip(starts, ends, strict=True)])
        return sub, Lines(sub)


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


def _field(arr: pa.StructArray, name: str) -> pa.Array:
    """Column ``name`` of a row image; all null where no line has it."""
    i = arr.type.get_field_index(name)
    return arr.field(i) if i >= 0 else pa.nulls(len(arr))


def _text(conv: ToText | None, arr: pa.Array) -> pa.Array:
    return conv(arr) if conv is not None else pa.nulls(len(arr), pa.string())


def _check_row_type(
    col: pa.ChunkedArray, row: pa.StructType, tab: Table, rows: np.ndarray | None
) -> None:
    """The images parsed must have the declared columns and types, and no others but the
    undecided columns (left for Arrow to infer), which must all be null: the first value
    of one decides its type (a new table version), which the line decoder must see."""
    got = col.type
    if got == row:
        return
    undecided = {tab.names[i] for i in tab.undecided}
    n = row.num_fields
    if got.num_fields < n or any(got.field(i) != row.field(i) for i in range(n)):
        raise Declined
    for i in range(n, got.num_fields):
        f = got.field(i)
        if f.name not in undecided:
            raise Declined
        if f.type != pa.null():
            valid = _flat(col).field(i).is_valid().to_numpy(zero_copy_only=False)
            r = int(np.flatnonzero(valid)[0])
            raise Declined(learn=True, lines=(r if rows is None else int(rows[r])) + 1)


def _row_type(tab: Table) -> tuple[pa.StructType, list[ToText | None]]:
    """The Arrow type of the table's rows as JSON carries them (undecided columns left
    out), and each column's conversion to PostgreSQL text (None: undecided, all null)."""
    fields: list[tuple[str, pa.DataType]] = []
    conv: list[ToText | None] = []
    if tab.kinds is not None:
        for name, kind in zip(tab.names, tab.kinds, strict=True):
            if kind == UNDECIDED:
                conv.append(None)
                continue
            if kind not in _ARROW_OF_KIND:
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
