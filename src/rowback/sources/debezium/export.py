"""Changes as newline-delimited Debezium JSON, the format ``rowback ingest`` reads.

Each line is a Kafka Connect envelope with its schema, as Debezium's PostgreSQL connector
writes with the JSON converter: numerics as ``Decimal`` (base64 unscaled), timestamptz
as ``ZonedTimestamp``, integers as int32/int64, everything else as strings. Written for
simulated streams (``rowback.detect.scenario``); reading it back gives the same rows.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from rowback.model import Change, Column, Op, TableSchema, Text

TS = "timestamp with time zone"


def _field(c: Column) -> dict[str, Any]:
    f: dict[str, Any] = {"field": c.name, "optional": not c.key}
    if c.type.startswith("numeric("):
        precision, scale = c.type[8:-1].split(",")
        f |= {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "version": 1}
        f["parameters"] = {"scale": scale, "connect.decimal.precision": precision}
    elif c.type == TS:
        f |= {"type": "string", "name": "io.debezium.time.ZonedTimestamp", "version": 1}
    else:
        f["type"] = {"bigint": "int64", "integer": "int32"}.get(c.type, "string")
    return f


def _envelope(t: TableSchema) -> dict[str, Any]:
    row = {
        "type": "struct",
        "fields": [_field(c) for c in t.columns],
        "optional": True,
        "name": f"{t.source}.{t.schema}.{t.name}.Value",
    }
    return {
        "type": "struct",
        "name": f"{t.source}.{t.schema}.{t.name}.Envelope",
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            {"type": "struct", "fields": [], "optional": False, "field": "source"},
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
        ],
    }


def _value(c: Column, v: Text) -> Any:
    if v is None:
        return None
    if c.type.startswith("numeric("):
        scale = int(c.type[:-1].split(",")[1])
        unscaled = int(Decimal(v).scaleb(scale))
        n = (unscaled.bit_length() + 8) // 8
        return base64.b64encode(unscaled.to_bytes(n, "big", signed=True)).decode()
    if c.type == TS:
        return v[:10] + "T" + v[11:19] + "Z" if v[0].isdigit() else v
    if c.type in ("bigint", "integer"):
        return int(v)
    return v


_OPS = {Op.INSERT: "c", Op.UPDATE: "u", Op.DELETE: "d", Op.SNAPSHOT: "r"}


def write_debezium(changes: Iterable[Change], path: str | Path) -> int:
    """Write ``changes`` as newline-delimited Debezium JSON with Kafka Connect schemas
    (``rowback ingest`` reads it back to the same changes); the number of lines."""
    schemas: dict[str, dict[str, Any]] = {}
    n = 0
    with open(path, "wb") as out:
        for c in changes:
            t = c.table
            env = schemas.get(t.qualified)
            if env is None:
                env = schemas[t.qualified] = _envelope(t)

            def image(row: list[Text] | None, t: TableSchema = t) -> dict[str, Any] | None:
                if row is None:
                    return None
                return {col.name: _value(col, v) for col, v in zip(t.columns, row, strict=True)}

            ms = c.commit_us // 1_000
            source = {
                "version": "2.5.0.Final",
                "connector": "postgresql",
                "name": t.source,
                "ts_ms": ms,
                "snapshot": "true" if c.op == Op.SNAPSHOT else "false",
                "db": t.source,
                "schema": t.schema,
                "table": t.name,
                "txId": c.txid,
                "lsn": c.lsn,
            }
            payload = {
                "before": image(c.before),
                "after": image(c.after),
                "source": source,
                "op": _OPS[c.op],
                "ts_ms": ms,
            }
            out.write(orjson.dumps({"schema": env, "payload": payload}) + b"\n")
            n += 1
    return n
