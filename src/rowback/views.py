"""Results that the CLI and the API both show, built from what a store reader knows (and,
for a running service, what its capture knows): one definition, so both print the same."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from rowback.errors import NotFound
from rowback.store.base import Reader, Result, TableInfo
from rowback.when import format_lsn

TABLE_COLUMNS = ["source", "table", "key", "columns", "schema_versions", "live_rows"]

STATUS_COLUMNS = [
    "source",
    "position",
    "last_write",
    "lag_s",
    "lag_bytes",
    "retained_bytes",
    "tables",
    "rows",
    "quarantined",
    "state",
]


def tables_result(infos: list[TableInfo]) -> Result:
    rows = [
        (t.source, t.qualified, ",".join(t.key), ",".join(t.columns), t.versions, t.live_rows)
        for t in infos
    ]
    return Result(list(TABLE_COLUMNS), rows)


def position_text(position: dict[str, Any] | None) -> str | None:
    """A source position as an operator reads it: ``0/16B3748`` for PostgreSQL, else the
    recorded fields.

    >>> position_text({"lsn": 23803720})
    '0/16B3748'
    >>> position_text({"file": "a.json", "offset": 10})
    'file=a.json offset=10'
    """
    if position is None:
        return None
    if "lsn" in position:  # the rest (snapshot progress, a split transaction) is capture's
        return format_lsn(int(position["lsn"]))
    return " ".join(f"{k}={_scalar(v)}" for k, v in position.items())


def _scalar(v: object) -> str:
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def status_docs(
    reader: Reader, live: dict[str, dict[str, Any]], now: datetime | None = None
) -> list[dict[str, Any]]:
    """Per source: position, last durable write, lag, source WAL retained by the slot,
    tables with live row counts, quarantine count, and state. Fields only a running
    capture knows are None offline."""
    return with_live(stored_status(reader), live, now)


def stored_status(reader: Reader) -> list[dict[str, Any]]:
    """What the store itself says of each source: the part of ``status_docs`` that stays
    the same until the next write (a service caches it per write)."""
    infos = reader.tables()
    docs = []
    for s in reader.sources():
        tables = {t.qualified: t.live_rows for t in infos if t.source == s.name}
        docs.append(
            {
                "source": s.name,
                "position": position_text(s.position),
                "written_at": s.written_at,
                "tables": tables,
                "rows": sum(tables.values()),
                "quarantined": s.quarantined,
            }
        )
    return docs


def with_live(
    stored: list[dict[str, Any]], live: dict[str, dict[str, Any]], now: datetime | None = None
) -> list[dict[str, Any]]:
    """``stored`` completed with what capture knows now, and with a source capture runs
    but has not written yet."""
    now = now or datetime.now(UTC)
    known = {d["source"]: d for d in stored}
    docs = []
    for name in sorted(set(known) | set(live)):
        s = known.get(name, {})
        extra = live.get(name, {})
        written = s.get("written_at")
        docs.append(
            {
                "source": name,
                "position": s.get("position"),
                "last_write": _iso(written) if written else None,
                "idle_s": round((now - written).total_seconds(), 3) if written else None,
                "lag_s": extra.get("lag_s"),
                "lag_bytes": extra.get("lag_bytes"),
                "slot_retained_bytes": extra.get("slot_retained_bytes"),
                "tables": s.get("tables", {}),
                "rows": s.get("rows", 0),
                "quarantined": s.get("quarantined", 0),
                "state": extra.get("state", "stopped"),
                "error": extra.get("error"),
            }
        )
    return docs


def _iso(t: datetime) -> str:
    """To the millisecond, in UTC: what an operator compares with a log line."""
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_result(docs: list[dict[str, Any]]) -> Result:
    rows = [
        (
            d["source"],
            d["position"],
            d["last_write"],
            d["lag_s"],
            d["lag_bytes"],
            d["slot_retained_bytes"],
            d["tables"],
            d["rows"],
            d["quarantined"],
            d["state"],
        )
        for d in docs
    ]
    return Result(list(STATUS_COLUMNS), rows, {"tables": "row"})


REVERSION_COLUMNS = [
    "id",
    "created_at",
    "who",
    "reason",
    "selection",
    "mode",
    "status",
    "rows",
    "txid",
    "undoes",
    "plan",
]


def reversions_result(reader: Reader) -> Result:
    """Every recorded reversion, oldest first (``rowback reversions``, the API's list)."""
    rows = [
        (
            r.id,
            r.created_at,
            r.who,
            r.reason,
            r.selection,
            r.mode,
            r.status,
            r.rows,
            r.txid,
            r.undoes,
            r.plan,
        )
        for r in reader.reversions()
    ]
    return Result(list(REVERSION_COLUMNS), rows, {"selection": "row", "plan": "row"})


INCIDENT_COLUMNS = [
    "id",
    "tables",
    "kind",
    "score",
    "severity",
    "status",
    "first_ts",
    "last_ts",
    "detected_at",
    "txids",
    "rows_affected",
    "action",
    "explanation",
    "columns",
    "source",
    "reason",
    "reversion",
]


def _at(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, UTC)


def incidents_result(reader: Reader, iid: int | None = None) -> Result:
    """Every incident, oldest first, or one (``rowback incidents``, the API's list)."""
    got = reader.incidents()
    if iid is not None:
        got = [i for i in got if i.id == iid]
        if not got:
            raise NotFound(f"incident {iid} is not in the store (see `rowback incidents`)")
    rows = [
        (
            i.id,
            i.tables,
            i.kind,
            i.score,
            i.severity,
            i.status,
            _at(i.first_us),
            _at(i.last_us),
            _at(i.detected_us),
            i.txids,
            i.rows_affected,
            i.action,
            i.explanation,
            i.columns,
            i.source,
            i.reason,
            i.reversion,
        )
        for i in got
    ]
    return Result(list(INCIDENT_COLUMNS), rows, {"tables": "row", "txids": "row", "columns": "row"})


def incident_doc(reader: Reader, iid: int, target: str | None = None) -> dict[str, Any]:
    """One incident as ``--format json`` prints it, with its ``detail`` (signals, what is
    normal and what was seen, the policy's decision) and its ``impact`` (with ``target``,
    also the rows that reference it): ``incidents show``, the API and alerts."""
    from rowback.render import iter_text
    from rowback.revert.impact import impact

    got = incidents_result(reader, iid)
    line = "".join(iter_text("json", got.columns, got.rows, got.types))
    doc: dict[str, Any] = orjson.loads(line)
    inc = next(i for i in reader.incidents() if i.id == iid)
    doc["detail"] = inc.detail
    doc["impact"] = orjson.loads(orjson.dumps(impact(reader, inc, target), default=str))
    return doc
