"""Build Debezium events for tests: envelopes, Kafka Connect schema wrappers, key records."""

from __future__ import annotations

import base64
from typing import Any

import orjson

TS_MS = 1_700_000_000_000


def source(
    table: str = "orders",
    schema: str = "public",
    txid: int | None = 1,
    lsn: int | None = 1,
    ts_ms: int = TS_MS,
) -> dict[str, Any]:
    return {
        "version": "2.5.0.Final",
        "connector": "postgresql",
        "name": "srv",
        "ts_ms": ts_ms,
        "snapshot": "false",
        "db": "shop",
        "schema": schema,
        "table": table,
        "txId": txid,
        "lsn": lsn,
    }


def event(
    op: str,
    after: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
    **src: Any,
) -> dict[str, Any]:
    """A bare Debezium envelope."""
    return {"before": before, "after": after, "source": source(**src), "op": op, "ts_ms": TS_MS}


def field(name: str, ctype: str, semantic: str | None = None, **params: Any) -> dict[str, Any]:
    """A Kafka Connect field schema (``params`` become ``parameters``, ``items`` stays)."""
    f: dict[str, Any] = {"type": ctype, "optional": True, "field": name}
    if semantic:
        f["name"] = semantic
    if "items" in params:
        f["items"] = params.pop("items")
    if "fields" in params:
        f["fields"] = params.pop("fields")
    if params:
        f["parameters"] = {k.replace("_", "."): str(v) for k, v in params.items()}
    return f


def wrapped(payload: dict[str, Any], fields: list[dict[str, Any]]) -> dict[str, Any]:
    """``payload`` with a Kafka Connect envelope schema whose row struct has ``fields``."""
    row = {"type": "struct", "fields": fields, "optional": True, "name": "srv.public.t.Value"}
    schema = {
        "type": "struct",
        "name": "srv.public.t.Envelope",
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            {"type": "struct", "fields": [], "field": "source"},
            {"type": "string", "field": "op"},
        ],
    }
    return {"schema": schema, "payload": payload}


def decimal_b64(unscaled: int) -> str:
    """Kafka Connect's Decimal encoding: big-endian two's complement, base64."""
    n = (unscaled.bit_length() + 8) // 8
    return base64.b64encode(unscaled.to_bytes(n, "big", signed=True)).decode()


def line(doc: object) -> bytes:
    return orjson.dumps(doc)


def lines(docs: list[Any]) -> bytes:
    """Newline-delimited: events as JSON, ``bytes`` items verbatim (malformed lines)."""
    return b"".join((d if isinstance(d, bytes) else orjson.dumps(d)) + b"\n" for d in docs)
