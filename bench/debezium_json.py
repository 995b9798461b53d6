"""The size of a change as a Debezium PostgreSQL connector would publish it (JSON converter).

The reference point for ``store_size``: what one event costs in the usual CDC pipeline.
We build the value of Debezium 2.x's envelope with ``schemas.enable=false`` (schemas on
would add ~1-2 kB per message) and default replica identity (``before`` is null for
updates, only the key for deletes), plus the record key, as compact JSON. Debezium 2.6+
also adds ``ts_us``/``ts_ns`` (about 60 bytes more); we leave them out, so the figure is
on the low side.
"""

from __future__ import annotations

from typing import Any

import orjson

from rowback.model import Change, Op, TableSchema

_OPS = {Op.SNAPSHOT: "r", Op.INSERT: "c", Op.UPDATE: "u", Op.DELETE: "d"}
_INTS = {"smallint", "integer", "bigint"}
_FLOATS = {"real", "double precision"}


def _value(pg_type: str, v: str | None) -> Any:
    if v is None:
        return None
    t = pg_type.split("(")[0].strip()
    if t in _INTS:
        return int(v)
    if t in _FLOATS:
        return float(v)
    if t == "boolean":
        return v == "t"
    return v  # text, char(n) with its padding, timestamps as ISO strings, etc.


def _row(t: TableSchema, values: list[str | None]) -> dict[str, Any]:
    return {c.name: _value(c.type, v) for c, v in zip(t.columns, values, strict=False)}


def envelope(ch: Change) -> tuple[bytes, bytes]:
    """(key JSON, value JSON) of one change as Debezium would write it."""
    t = ch.table
    keys = [c for c in t.columns if c.key]
    key = {c.name: _value(c.type, v) for c, v in zip(keys, ch.key or (), strict=False)}
    ts_ms = ch.commit_us // 1000
    before = None
    if ch.op is Op.DELETE:
        before = {c.name: None for c in t.columns} | key
    value = {
        "before": before,
        "after": _row(t, ch.after) if ch.after is not None else None,
        "source": {
            "version": "2.5.4.Final",
            "connector": "postgresql",
            "name": "rowback",
            "ts_ms": ts_ms,
            "snapshot": "true" if ch.op is Op.SNAPSHOT else "false",
            "db": "postgres",
            "sequence": f'["{ch.lsn}","{ch.lsn}"]',
            "schema": t.schema,
            "table": t.name,
            "txId": ch.txid,
            "lsn": ch.lsn,
            "xmin": None,
        },
        "op": _OPS.get(ch.op, "t"),
        "ts_ms": ts_ms + 3,
        "transaction": None,
    }
    return orjson.dumps(key), orjson.dumps(value)


class DebeziumMeter:
    """A store wrapper that adds up the Debezium JSON size of every change written."""

    def __init__(self, store: Any, table: str) -> None:
        self._store = store
        self._table = table
        self.events = {"snapshot": 0, "change": 0}
        self.value_bytes = {"snapshot": 0, "change": 0}
        self.key_bytes = {"snapshot": 0, "change": 0}

    def write(self, changes: Any, *args: Any, **kwargs: Any) -> Any:
        for ch in changes:
            if ch.table.qualified != self._table:
                continue
            kind = "snapshot" if ch.op is Op.SNAPSHOT else "change"
            k, v = envelope(ch)
            self.events[kind] += 1
            self.key_bytes[kind] += len(k)
            self.value_bytes[kind] += len(v)
        return self._store.write(changes, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
