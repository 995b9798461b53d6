"""Incidents and the detectors' learned state in the embedded store (``_rb_incidents``,
``_rb_detect``). Both are written inside the transaction of the changes that produced
them (``DuckDBStore._observe``), so after kill -9 they agree with the history stored."""

from __future__ import annotations

from typing import Any

import duckdb
import orjson

from rowback.errors import NotFound
from rowback.store.base import Incident
from rowback.store.duckdb.catalog import first

DDL = """
CREATE TABLE IF NOT EXISTS _rb_incidents (
    id INTEGER PRIMARY KEY, source VARCHAR, kind VARCHAR, tables VARCHAR, columns VARCHAR,
    score DOUBLE, severity VARCHAR, status VARCHAR, action VARCHAR, first_us BIGINT,
    last_us BIGINT, detected_us BIGINT, txids VARCHAR, rows_affected BIGINT,
    explanation VARCHAR, detail VARCHAR, reason VARCHAR, reversion INTEGER,
    updated_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS _rb_detect (k VARCHAR PRIMARY KEY, state BLOB);
"""

_COLUMNS = (
    "id, source, kind, tables, columns, score, severity, status, action, first_us, "
    "last_us, detected_us, txids, rows_affected, explanation, detail, reason, reversion"
)
_JSON = {"tables", "columns", "txids", "detail"}


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def save(con: duckdb.DuckDBPyConnection, items: list[Incident]) -> None:
    """Insert or replace ``items`` (by id)."""
    if not items:
        return
    ensure(con)
    names = _COLUMNS.split(", ")
    rows = []
    for i in items:
        row = []
        for n in names:
            v = getattr(i, n)
            row.append(orjson.dumps(v).decode() if n in _JSON else v)
        rows.append(row)
    marks = ", ".join("?" for _ in names)
    con.executemany(
        f"INSERT OR REPLACE INTO _rb_incidents ({_COLUMNS}, updated_at) VALUES ({marks}, now())",
        rows,
    )


def listed(con: duckdb.DuckDBPyConnection) -> list[Incident]:
    """Every incident, oldest first (none in a store that never detected one)."""
    try:
        rows = con.execute(f"SELECT {_COLUMNS} FROM _rb_incidents ORDER BY id").fetchall()
    except duckdb.CatalogException:
        return []
    return [_of(r) for r in rows]


def one(con: duckdb.DuckDBPyConnection, iid: int) -> Incident:
    try:
        rows = con.execute(f"SELECT {_COLUMNS} FROM _rb_incidents WHERE id = ?", [iid]).fetchall()
    except duckdb.CatalogException:
        rows = []
    if not rows:
        raise NotFound(f"incident {iid} is not in the store (see `rowback incidents`)")
    return _of(rows[0])


def _of(row: tuple[Any, ...]) -> Incident:
    names = _COLUMNS.split(", ")
    got: dict[str, Any] = {}
    for n, v in zip(names, row, strict=True):
        got[n] = orjson.loads(v) if n in _JSON and v is not None else v
    return Incident(**got)


def load_state(con: duckdb.DuckDBPyConnection) -> bytes | None:
    try:
        got = first(con.execute("SELECT state FROM _rb_detect WHERE k = 'engine'").fetchall())
    except duckdb.CatalogException:
        return None
    return bytes(got[0]) if got else None


def save_state(con: duckdb.DuckDBPyConnection, state: bytes) -> None:
    ensure(con)
    con.execute("INSERT OR REPLACE INTO _rb_detect VALUES ('engine', ?)", [state])
