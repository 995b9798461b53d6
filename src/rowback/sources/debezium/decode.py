"""Decode one Debezium change event (one line of JSON) into a ``Change``.

Accepted shapes: the bare envelope (``{"before", "after", "source", "op"}``), the same
wrapped as ``{"schema": ..., "payload": ...}`` (Kafka Connect's JSON converter with
schemas), Kafka records ``{"key": ..., "value": ...}`` and kcat's ``-J`` envelope
(``{"topic", "partition", "offset", ..., "key": "<JSON text>", "payload": "<JSON text>"}``),
whose key (a record, or JSON text of one, either possibly schema-wrapped) names the
primary key. Column types come from the schema when there is one, else from the first
non-null value per column (see ``tables``); either way every value is checked, so a value
that would not cast in the store is rejected here, one line at a time. Anything wrong with
the event raises ``DecodeError`` naming the field; the only other exception is ``NoKey``,
for a table whose key is unknown, which is a missing setting rather than a bad event.

>>> d = Decoder()
>>> c = d.decode(b'{"op":"c","after":{"id":1,"n":2.5},"source":'
...              b'{"schema":"public","table":"t","txId":7,"lsn":99,"ts_ms":1700000000000}}')
>>> c.op.label, c.key, c.after, c.txid, c.lsn, c.commit_us
('insert', ('1',), ['1', '2.5'], 7, 99, 1700000000000000)
>>> d.decode(b'{"op":"c","after":{"id":"x","n":1},"source":'
...          b'{"schema":"public","table":"t","ts_ms":1}}')
Traceback (most recent call last):
rowback.sources.debezium.tables.DecodeError: after.id: expected bigint, got string
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from rowback.model import Change, Op, Text
from rowback.sources.debezium.tables import DecodeError, NoKey, Table, Tables, kind_of

__all__ = ["MAX_LINE", "PLACEHOLDER", "DecodeError", "Decoder", "NoKey", "Oversized"]

PLACEHOLDER = "__debezium_unavailable_value"
MAX_LINE = 16 * 1024 * 1024
MAX_TS_US = 10**17  # year 5138: a later commit time is corrupt, and would not cast
MAX_U64 = 2**64 - 1
MAX_BIGINT = 2**63 - 1
MAX_SEQ = 2**32 - 1
_OPS = {"c": Op.INSERT, "u": Op.UPDATE, "d": Op.DELETE, "r": Op.SNAPSHOT, "t": Op.TRUNCATE}
_NO_COLUMNS: frozenset[int] = frozenset()
_CONVERSION_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, KeyError)


_WRAPPED = b'{"schema":'
_JSON_SPACE = b" \t\r\n"


class _Schemas:
    """Envelope schemas seen verbatim at the start of earlier events.

    With Kafka Connect's JSON converter every event repeats its table's schema, often
    three times the size of the change itself. When an event starts with the bytes of a
    schema seen before, only its payload is parsed. Sound because the prefix was a
    complete JSON value when it was learnt; a payload that does not parse on its own
    falls back to parsing the whole line.
    """

    def __init__(self, size: int = 16) -> None:
        self.prefixes: list[tuple[bytes, object]] = []
        self.size = size
        self.misses = 0

    def payload(self, line: bytes) -> tuple[object, Any] | None:
        """(schema, parsed payload) when ``line`` starts with a known schema, else None."""
        for prefix, schema in self.prefixes:
            if line.startswith(prefix):
                rest = line[len(prefix) :].rstrip(_JSON_SPACE)
                if not rest.endswith(b"}"):
                    return None
                try:
                    return schema, orjson.loads(rest[:-1])
                except orjson.JSONDecodeError:
                    return None
        return None

    def learn(self, line: bytes, schema: object) -> None:
        """Remember ``schema`` if it is, byte for byte, how ``line`` starts."""
        if self.misses > 100:
            return  # the producer formats JSON unlike orjson: parsing whole lines it is
        prefix = _WRAPPED + orjson.dumps(schema) + b',"payload":'
        if line.startswith(prefix):
            self.prefixes.insert(0, (prefix, schema))
            del self.prefixes[self.size :]
        else:
            self.misses += 1


def _key_record(key: object) -> dict[str, Any] | None:
    """A message key as a record of key columns (unwrapping Kafka Connect's schema)."""
    if key.__class__ is dict and "payload" in key:
        key = key["payload"]
    if key is not None and key.__class__ is not dict:
        raise DecodeError("key", f"expected an object, got {kind_of(key)}")
    return key


def _kcat(doc: dict[str, Any]) -> tuple[dict[str, Any] | None, Any]:
    """The key record and the parsed value of a ``kcat -J`` envelope, whose key and
    payload are JSON text (the payload None for a tombstone)."""
    parsed: list[Any] = []
    for name in ("key", "payload"):
        text = doc.get(name)
        if text is None:
            parsed.append(None)
            continue
        if text.__class__ is not str:
            raise DecodeError(name, f"expected JSON text, got {kind_of(text)}")
        try:
            parsed.append(orjson.loads(text))
        except orjson.JSONDecodeError as e:
            raise DecodeError(name, f"not valid JSON: {e}") from None
    key, value = parsed
    if value is not None and value.__class__ is not dict:
        raise DecodeError("payload", f"expected an object, got {kind_of(value)}")
    return _key_record(key), value


class Oversized(bytes):
    """The first bytes of a line that was longer than the limit (the rest was not read)."""

    size: int = 0


class Decoder:
    """Turns Debezium events into changes for ``source``.

    It keeps each table's column types and counts events within a transaction (``seq``),
    so one decoder must see a stream in order; ``state()``/``restore()`` carry both across
    restarts. ``keys`` maps ``schema.table`` to primary-key columns for tables whose
    events carry no key record (else ``id`` is taken, and ``notify`` told so).
    """

    def __init__(
        self,
        source: str = "debezium",
        keys: Mapping[str, Sequence[str]] | None = None,
        max_line: int = MAX_LINE,
        placeholder: str = PLACEHOLDER,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.source = source
        self.max_line = max_line
        self.placeholder = placeholder
        self.tables = Tables(source, keys, placeholder, notify)
        self._ph = placeholder.encode()
        self._ph_b64 = binascii.b2a_base64(self._ph, newline=False).decode()
        self._ph_b64_bytes = self._ph_b64.encode()
        self._schemas = _Schemas()
        self._tx = -1
        self._seq = 0
        self.last: tuple[str, str] | None = None
        """The table of the last event decoded (where bulk decoding of a block starts)."""

    def state(self) -> dict[str, Any]:
        """What a restarted decoder needs to continue exactly: types and transaction order."""
        return {"tx": [self._tx, self._seq], "tables": self.tables.state()}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a ``state()`` saved with the last committed batch."""
        self._tx, self._seq = (int(x) for x in state.get("tx", (-1, 0)))
        self.tables.restore(state.get("tables", ()))

    def decode(self, line: bytes) -> Change | None:
        """The change one event describes; None for a tombstone or a blank line."""
        if line.__class__ is not bytes:
            if isinstance(line, Oversized):
                raise DecodeError(
                    "line", f"{line.size} bytes is over the {self.max_line} byte limit"
                )
            line = bytes(line)  # orjson takes exact bytes only, not subclasses
        if len(line) > self.max_line:
            raise DecodeError("line", f"{len(line)} bytes is over the {self.max_line} byte limit")
        if line.startswith(_WRAPPED) and self._schemas.prefixes:
            hit = self._schemas.payload(line)
            if hit is not None:
                env_schema, env = hit
                if env is None:
                    return None
                if env.__class__ is not dict:
                    raise DecodeError("payload", f"expected an object, got {kind_of(env)}")
                return self._envelope(env, env_schema, None, line)
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            if not line.strip():
                return None
            raise DecodeError("json", f"not valid JSON: {e}") from None
        if doc.__class__ is not dict:
            if doc is None:
                return None  # a tombstone, as Kafka's console consumer prints it
            raise DecodeError("json", f"expected an object, got {kind_of(doc)}")
        key_rec = None
        if "op" not in doc and "value" in doc:
            key_rec = _key_record(doc.get("key"))
            doc = doc["value"]
            if doc is None:
                return None  # the tombstone after a delete
            if doc.__class__ is not dict:
                raise DecodeError("value", f"expected an object, got {kind_of(doc)}")
        elif "op" not in doc and "topic" in doc and doc.get("payload").__class__ is str:
            key_rec, doc = _kcat(doc)
            if doc is None:
                return None
        env_schema = None
        if "payload" in doc and "op" not in doc:
            env_schema = doc.get("schema")
            if key_rec is None and env_schema is not None and line.startswith(_WRAPPED):
                self._schemas.learn(line, env_schema)
            doc = doc["payload"]
            if doc is None:
                return None
            if doc.__class__ is not dict:
                raise DecodeError("payload", f"expected an object, got {kind_of(doc)}")
        return self._envelope(doc, env_schema, key_rec, line)

    def _envelope(
        self, env: dict[str, Any], env_schema: object, key_rec: dict[str, Any] | None, line: bytes
    ) -> Change:
        raw_op = env.get("op")
        op = _OPS.get(raw_op) if raw_op.__class__ is str else None
        if op is None:
            if raw_op.__class__ is str:
                msg = f"unknown operation {raw_op[:20]!r} (expected c, u, d, r or t)"
            else:
                msg = "missing" if raw_op is None else f"expected a string, got {kind_of(raw_op)}"
            raise DecodeError("op", msg)
        src = env.get("source")
        if src.__class__ is not dict:
            raise DecodeError("source", f"expected an object, got {kind_of(src)}")
        schema, table = src.get("schema"), src.get("table")
        if schema.__class__ is not str or not schema:
            raise DecodeError("source.schema", f"expected a name, got {kind_of(schema)}")
        if table.__class__ is not str or not table:
            raise DecodeError("source.table", f"expected a name, got {kind_of(table)}")
        txid = src.get("txId")
        if txid.__class__ is not int or not 0 <= txid <= MAX_U64:
            if txid is not None:
                raise DecodeError("source.txId", f"expected a transaction id, got {kind_of(txid)}")
            txid = 0  # snapshot reads have no transaction
        lsn = src.get("lsn")
        if lsn.__class__ is not int or not 0 <= lsn <= MAX_U64:
            if lsn is not None:
                raise DecodeError("source.lsn", f"expected an LSN, got {kind_of(lsn)}")
            lsn = 0
        ts = src.get("ts_us")
        if ts is None:
            ts = src.get("ts_ms")
            if ts.__class__ is int:
                ts *= 1000
        if ts.__class__ is not int or not 0 <= ts < MAX_TS_US:
            name = "ts_us" if "ts_us" in src else "ts_ms"
            raise DecodeError(f"source.{name}", f"expected a time since the epoch, got {ts!r:.40}")
        after, before = env.get("after"), env.get("before")
        if after is not None and after.__class__ is not dict:
            raise DecodeError("after", f"expected an object or null, got {kind_of(after)}")
        if before is not None and before.__class__ is not dict:
            raise DecodeError("before", f"expected an object or null, got {kind_of(before)}")
        q = (schema, table)
        if env_schema is not None:
            tab = self.tables.wrapped(q, env_schema, key_rec)
        elif after is not None or (before is not None and op is not Op.TRUNCATE):
            tab = self.tables.inferred(q, after, before, key_rec)
        elif op is Op.TRUNCATE or op is Op.DELETE:
            tab = self.tables.known(q)
        else:
            raise DecodeError("after", f"missing for op {raw_op}")
        self.last = q
        if op is Op.TRUNCATE:
            key, a, b, unchanged = None, None, None, _NO_COLUMNS
        else:
            key, a, b, unchanged = self._images(tab, op, raw_op, after, before, key_rec, line)
        if txid == self._tx:
            self._seq += 1
        else:
            self._tx, self._seq = txid, 0
        seq = self._seq if self._seq < MAX_SEQ else MAX_SEQ
        return Change(tab.schema, op, key, a, b, ts, txid, lsn, seq, unchanged)

    def _images(
        self,
        tab: Table,
        op: Op,
        raw_op: object,
        after: dict[str, Any] | None,
        before: dict[str, Any] | None,
        key_rec: dict[str, Any] | None,
        line: bytes,
    ) -> tuple[tuple[Text, ...], list[Text] | None, list[Text] | None, frozenset[int]]:
        """The key, after and before images (PostgreSQL text), and TOAST-unchanged columns."""
        # A raw byte search is far cheaper than comparing every value with the placeholder.
        marked = self._ph in line or (tab.convs is not None and self._ph_b64_bytes in line)
        unchanged = _NO_COLUMNS
        a = b = None
        if after is not None:
            a, unchanged = self._values(tab, after, "after", marked)
            if unchanged and op is not Op.UPDATE:
                col = tab.names[min(unchanged)]
                raise DecodeError(f"after.{col}", f"unavailable-value placeholder in op {raw_op}")
        elif op is not Op.DELETE:
            raise DecodeError("after", f"missing for op {raw_op}")
        old: list[Text] | None = None
        if before is not None:
            old, hidden = self._values(tab, before, "before", marked)
            # Part of the old row is unknown, so the store could not check it against history.
            b = None if hidden - unchanged else old
        row, path = (a, "after") if a is not None else (old, "before")
        if row is None:
            if key_rec is None:
                raise DecodeError("before", "missing for a delete, and no key record")
            row, path = self._values(tab, key_rec, "key", False)[0], "key"
        key = tuple([row[i] for i in tab.key_idx])
        if None in key:
            i = tab.key_idx[key.index(None)]
            raise DecodeError(f"{path}.{tab.names[i]}", "primary key is null")
        return key, a, b, unchanged

    def _values(
        self, tab: Table, img: dict[str, Any], path: str, marked: bool
    ) -> tuple[list[Text], frozenset[int]]:
        """``img`` as PostgreSQL text aligned with ``tab``'s columns, and its placeholders."""
        names = tab.names
        if tuple(img) == names:
            vals = list(img.values())
        else:
            known = set(names)
            extra = [n for n in img if n not in known]
            if extra and path != "key":
                raise DecodeError(f"{path}.{extra[0]}", "not a column of the table")
            vals = [img.get(n) for n in names]
        unchanged = _NO_COLUMNS
        if marked:
            ph = self.placeholder
            found = [i for i, v in enumerate(vals) if v == ph or v == self._ph_b64 or v == [ph]]
            for i in found:
                vals[i] = None
            unchanged = frozenset(found)
        sig = tuple(map(type, vals))
        convs, ints = tab.plans.get(sig) or tab.plan(sig, path)
        if ints is not None and max(ints(vals)) > MAX_BIGINT:
            i = next(i for i, v in enumerate(vals) if type(v) is int and v > MAX_BIGINT)
            raise DecodeError(f"{path}.{names[i]}", f"{vals[i]} is out of range for bigint")
        try:
            return [f(v) for f, v in zip(convs, vals, strict=False)], unchanged
        except _CONVERSION_ERRORS:
            for i, (f, v) in enumerate(zip(convs, vals, strict=True)):
                try:
                    f(v)
                except _CONVERSION_ERRORS as e:
                    raise DecodeError(f"{path}.{names[i]}", str(e) or type(e).__name__) from None
            raise  # pragma: no cover - a converter failed once and then succeeded
