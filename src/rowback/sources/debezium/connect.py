"""Kafka Connect field schemas (with Debezium's semantic names) to PostgreSQL types.

Each field schema gives a ``format_type()`` name and the converter for its values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rowback.sources.debezium import times
from rowback.sources.debezium.convert import (
    INT64,
    BadValue,
    Converter,
    array,
    boolean,
    bytea,
    decimal,
    floating,
    integer,
    json_text,
    kind,
    structure,
    text,
    uuid,
    variable_decimal,
)

_MAX_DIMS = 6  # PostgreSQL's MAXDIM
_TS = "timestamp without time zone"
_TIME = "time without time zone"

_SEMANTIC: dict[str, tuple[str, Converter]] = {
    "io.debezium.data.VariableScaleDecimal": ("numeric", variable_decimal),
    "io.debezium.time.Date": ("date", times.date),
    "org.apache.kafka.connect.data.Date": ("date", times.date),
    "io.debezium.time.Timestamp": (_TS, times.timestamp(1000)),
    "org.apache.kafka.connect.data.Timestamp": (_TS, times.timestamp(1000)),
    "io.debezium.time.MicroTimestamp": (_TS, times.timestamp(10**6)),
    "io.debezium.time.NanoTimestamp": (_TS, times.timestamp(10**9)),
    "io.debezium.time.ZonedTimestamp": ("timestamp with time zone", times.zoned_timestamp),
    "io.debezium.time.Time": (_TIME, times.time_of_day(1000)),
    "org.apache.kafka.connect.data.Time": (_TIME, times.time_of_day(1000)),
    "io.debezium.time.MicroTime": (_TIME, times.time_of_day(10**6)),
    "io.debezium.time.NanoTime": (_TIME, times.time_of_day(10**9)),
    "io.debezium.time.ZonedTime": ("time with time zone", times.zoned_time),
    "io.debezium.data.Uuid": ("uuid", uuid),
    "io.debezium.data.Json": ("jsonb", json_text),
    "io.debezium.data.Xml": ("xml", text),
}

_PLAIN: dict[str, tuple[str, Converter]] = {
    "int8": ("smallint", integer("smallint")),
    "int16": ("smallint", integer("smallint")),
    "int32": ("integer", integer("integer")),
    "int64": ("bigint", INT64),
    "float32": ("real", floating("real")),
    "float64": ("double precision", floating("double precision")),
    "boolean": ("boolean", boolean),
    "string": ("text", text),
    "bytes": ("bytea", bytea),
    "struct": ("jsonb", structure),
    "map": ("jsonb", structure),
}


def connect_column(field: Mapping[str, Any], depth: int = 0) -> tuple[str, Converter]:
    """The PostgreSQL type and converter for one Kafka Connect field schema.

    Raises BadValue when the schema itself is malformed.
    """
    if field.__class__ is not dict:
        raise BadValue(f"expected a field schema object, got {kind(field)}")
    name, ctype = field.get("name"), field.get("type")
    if name == "org.apache.kafka.connect.data.Decimal":
        params = field.get("parameters")
        params = params if params.__class__ is dict else {}
        scale = _param_int(params, "scale", 0)
        precision = params.get("connect.decimal.precision")
        prec = _param_int(params, "connect.decimal.precision", 0) if precision else None
        pg_type = f"numeric({prec},{scale})" if prec else "numeric"
        return pg_type, decimal(scale, prec)
    if name.__class__ is str and name in _SEMANTIC:
        return _SEMANTIC[name]
    if ctype == "array":
        if depth >= _MAX_DIMS:
            raise BadValue(f"arrays nest deeper than {_MAX_DIMS} dimensions")
        elem_type, elem = connect_column(field.get("items") or {}, depth + 1)
        nested = elem_type.endswith("[]")
        return (elem_type if nested else elem_type + "[]"), array(elem, nested)
    if ctype.__class__ is str and ctype in _PLAIN:
        return _PLAIN[ctype]
    raise BadValue(f"unknown Kafka Connect type {str(ctype)[:40]!r}")


def _param_int(params: Mapping[str, Any], key: str, default: int) -> int:
    raw = params.get(key, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise BadValue(f"parameter {key} is not an integer: {str(raw)[:40]!r}") from None
    if not -1000 <= value <= 1000:
        raise BadValue(f"parameter {key} is out of range: {value}")
    return value
