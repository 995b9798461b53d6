"""Debezium's semantic types converted a column at a time, for the bulk decoder.

Each function gives exactly what the line decoder's converter gives for every value of
the column, computed with Arrow and numpy. A column with any value outside what it
handles goes to ``each`` (the converter, one value at a time), which also refuses
(``Declined``) what the converter would refuse: the line decoder then quarantines it.
Per-value Python is what made wrapped events (Kafka Connect's default JSON) 2.5x slower
to decode than bare ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from rowback.sources.debezium import convert

ToText = Callable[[pa.Array], pa.Array]


class Declined(Exception):
    """The block is not provably like the line decoder's view of it. ``learn``: because
    the decoder has not yet seen something the block holds (a table, a schema, the type
    of a column seen only as null), which a few lines decoded one by one teach it; then
    ``lines``: how many of the block's lines to decode one by one for that (0: a few)."""

    def __init__(self, learn: bool = False, lines: int = 0) -> None:
        super().__init__()
        self.learn = learn
        self.lines = lines


def each(c: convert.Converter) -> ToText:
    """A converter without a bulk form, applied per value (still no per-event work)."""

    def conv(arr: pa.Array) -> pa.Array:
        try:
            return pa.array([None if v is None else c(v) for v in arr.to_pylist()], pa.string())
        except (ValueError, TypeError, OverflowError, RecursionError, KeyError):
            raise Declined from None

    return conv


_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_DAYS = (-719_162, 2_932_896)  # 0001-01-01 .. 9999-12-31
_MICROS = (-62_135_596_800_000_000, 253_402_300_799_999_999)


def _in(arr: pa.Array, bounds: tuple[int, int]) -> bool:
    if arr.null_count == len(arr):
        return True
    lo, hi = pc.min_max(arr).values()
    return bool(bounds[0] <= lo.as_py() and hi.as_py() <= bounds[1])


def uuids(arr: pa.Array, c: convert.Converter) -> pa.Array:
    if (
        arr.type == pa.string()
        and pc.all(pc.match_substring_regex(arr, _UUID)).as_py() is not False
    ):
        return pc.utf8_lower(arr)  # (all() is None when every value is NULL)
    return each(c)(arr)


def dates(arr: pa.Array, c: convert.Converter) -> pa.Array:
    if arr.type == pa.int64() and _in(arr, _DAYS):
        return arr.cast(pa.int32()).cast(pa.date32()).cast(pa.string())
    return each(c)(arr)


def _trimmed(text: pa.Array) -> pa.Array:
    """Arrow prints every fraction digit of its unit; PostgreSQL only the significant ones."""
    return pc.utf8_rtrim(pc.utf8_rtrim(text, characters="0"), characters=".")


def micro_timestamps(arr: pa.Array, c: convert.Converter) -> pa.Array:
    if arr.type == pa.int64() and _in(arr, _MICROS):
        return _trimmed(arr.cast(pa.timestamp("us")).cast(pa.string()))
    return each(c)(arr)


def milli_timestamps(arr: pa.Array, c: convert.Converter) -> pa.Array:
    """``io.debezium.time.Timestamp`` (timestamp(0..3) columns): milliseconds."""
    if arr.type == pa.int64() and _in(arr, (_MICROS[0] // 1000, _MICROS[1] // 1000)):
        return _trimmed(arr.cast(pa.timestamp("ms")).cast(pa.string()))
    return each(c)(arr)


def micro_times(arr: pa.Array, c: convert.Converter) -> pa.Array:
    """``io.debezium.time.MicroTime``: microseconds since midnight (24:00:00 goes by value)."""
    if arr.type == pa.int64() and _in(arr, (0, 86_400_000_000 - 1)):
        return _trimmed(arr.cast(pa.time64("us")).cast(pa.string()))
    return each(c)(arr)


# -- ZonedTimestamp: UTC ("...Z") in bulk, the rest one by one ---------------------------

_ZULU = r"^\d{4}-\d\d-\d\dT\d\d:[0-5]\d:\d\d(\.\d{1,6})?Z$"  # times._ZULU, anchored
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _part(text: pa.Array, start: int, stop: int) -> np.ndarray:
    got = pc.cast(pc.utf8_slice_codeunits(text, start, stop), pa.int64())
    return np.asarray(got.to_numpy(zero_copy_only=False))


def zoned_timestamps(arr: pa.Array, c: convert.Converter) -> pa.Array:
    """``times.zoned_timestamp``: a valid UTC time ``YYYY-MM-DDTHH:MM:SS[.f]Z`` becomes
    ``YYYY-MM-DD HH:MM:SS[.f]+00`` (trailing fraction zeros dropped); ``infinity`` stays."""
    if arr.type != pa.string():
        return each(c)(arr)
    special = pc.fill_null(pc.is_in(arr, pa.array(["infinity", "-infinity"])), False)
    zulu = pc.fill_null(pc.match_substring_regex(arr, _ZULU), False)
    known = pc.or_(special, zulu)
    if not pc.all(pc.or_(known, pc.is_null(arr))).as_py():
        return each(c)(arr)
    text = pc.if_else(zulu, arr, "2000-01-01T00:00:00Z")  # a valid stand-in for the others
    y, mo, d = _part(text, 0, 4), _part(text, 5, 7), _part(text, 8, 10)
    hh, ss = _part(text, 11, 13), _part(text, 17, 19)
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    month = np.clip(mo, 0, 12)
    last = _MONTH_DAYS[month] + ((month == 2) & leap)
    valid = (y > 0) & (mo >= 1) & (mo <= 12) & (d >= 1) & (d <= last) & (hh < 24) & (ss < 60)
    if not valid.all():
        return each(c)(arr)  # the converter refuses it, or reads it another way
    frac = pc.utf8_rtrim(pc.utf8_slice_codeunits(text, 19, -1), characters="0")
    frac = pc.if_else(pc.greater(pc.utf8_length(frac), 1), frac, "")
    day, clock = pc.utf8_slice_codeunits(text, 0, 10), pc.utf8_slice_codeunits(text, 11, 19)
    out = pc.binary_join_element_wise(day, " ", clock, frac, "+00", "")
    return pc.if_else(pc.is_valid(arr), pc.if_else(special, arr, out), pa.scalar(None, pa.string()))


# -- Decimal: base64 two's complement, decoded with numpy ------------------------------

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_SIXBITS = np.full(256, 255, np.uint8)
_SIXBITS[np.frombuffer(_ALPHABET, np.uint8)] = np.arange(64, dtype=np.uint8)
_PAD = ord("=")


def _unscaled(arr: pa.Array) -> np.ndarray | None:
    """The integers of base64 big-endian two's-complement values (NULL: 0), decoded as
    ``binascii.a2b_base64(v, strict_mode=True)`` does; None when a value is not plain
    padded base64 of at most 8 bytes (the converter then decides)."""
    n = len(arr)
    out = np.zeros(n, np.int64)
    if arr.null_count == n:
        return out
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], np.int32, n + 1, arr.offset * 4)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    starts = offsets[:-1].astype(np.int64)
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False))
    lens = np.where(valid, np.diff(offsets), 0)
    if (lens % 4).any() or (lens > 12).any():
        return None
    for width in (4, 8, 12):
        rows = np.flatnonzero(lens == width)
        if not len(rows):
            continue
        chars = data[starts[rows, None] + np.arange(width)]
        pads = (chars[:, -1] == _PAD).astype(np.int64) + (chars[:, -2] == _PAD)
        if ((chars[:, -2] == _PAD) & (chars[:, -1] != _PAD)).any():
            return None
        is_pad = np.arange(width) >= (width - pads)[:, None]
        six = _SIXBITS[chars]
        if ((six == 255) & ~is_pad).any():
            return None
        q = np.where(is_pad, 0, six).astype(np.uint32).reshape(len(rows), width // 4, 4)
        word = (q[..., 0] << 18) | (q[..., 1] << 12) | (q[..., 2] << 6) | q[..., 3]
        raw = np.stack([word >> 16, word >> 8, word], axis=-1).astype(np.uint8)
        raw = raw.reshape(len(rows), width // 4 * 3)
        size = width // 4 * 3 - pads  # bytes per value; trailing bits are dropped
        if (size > 8).any():
            return None
        for nb in np.unique(size):
            sel = size == nb
            full = np.where(raw[sel, :1] >= 128, 255, 0).astype(np.uint8).repeat(8, axis=1)
            full[:, 8 - nb :] = raw[sel, :nb]
            out[rows[sel]] = full.view(">i8").ravel()
    return out


def decimals(arr: pa.Array, c: convert.Converter) -> pa.Array:
    """``convert.Decimal``: the exact text of ``unscaled * 10**-scale``."""
    if arr.type != pa.string() or not isinstance(c, convert.Decimal) or not len(arr):
        return each(c)(arr)
    u = _unscaled(arr)
    if u is None or (u == np.iinfo(np.int64).min).any():
        return each(c)(arr)
    digits = pa.array(np.abs(u)).cast(pa.string())
    if c.limit is not None and pc.max(pc.utf8_length(digits)).as_py() > c.limit:
        raise Declined  # the converter refuses it: the line decoder quarantines the line
    scale = c.scale
    if scale > 0:
        digits = pc.utf8_lpad(digits, width=scale + 1, padding="0")
        text = pc.binary_join_element_wise(
            pc.utf8_slice_codeunits(digits, 0, -scale),
            pc.utf8_slice_codeunits(digits, -scale, 2**31 - 1),
            ".",
        )
    elif scale < 0:
        zeros = pc.binary_join_element_wise(digits, "0" * -scale, "")
        text = pc.if_else(pa.array(u == 0), digits, zeros)
    else:
        text = digits
    signed = pc.if_else(pa.array(u < 0), pc.binary_join_element_wise("-", text, ""), text)
    return pc.if_else(arr.is_valid(), signed, pa.scalar(None, pa.string()))


# -- Json: checked, kept verbatim ------------------------------------------------------


def json_texts(arr: pa.Array, c: convert.Converter) -> pa.Array:
    """``convert.json_text``: every value must be JSON; the column is kept as it is."""
    if arr.type != pa.string() or c is not convert.json_text:
        return each(c)(arr)
    loads = orjson.loads
    try:
        for v in arr.to_pylist():
            if v is not None:
                loads(v)
    except orjson.JSONDecodeError:
        raise Declined from None
    return arr


SEMANTIC: dict[str, Callable[[pa.Array, convert.Converter], pa.Array]] = {
    "io.debezium.data.Uuid": uuids,
    "io.debezium.time.Date": dates,
    "org.apache.kafka.connect.data.Date": dates,
    "io.debezium.time.MicroTimestamp": micro_timestamps,
    "io.debezium.time.Timestamp": milli_timestamps,
    "org.apache.kafka.connect.data.Timestamp": milli_timestamps,
    "io.debezium.time.MicroTime": micro_times,
    "io.debezium.time.ZonedTimestamp": zoned_timestamps,
    "org.apache.kafka.connect.data.Decimal": decimals,
    "io.debezium.data.Json": json_texts,
}
