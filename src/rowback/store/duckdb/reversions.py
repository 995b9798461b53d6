"""The record of reversions in the embedded store (``_rb_reversions``): who reverted what,
why, how, and what came of it. A reversion is recorded ``started`` before it touches the
target and moved to its outcome after, so a crash in between leaves a record that says
the outcome is unknown (PostgreSQL's transaction is then either whole or absent)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import orjson

from rowback.errors import NotFound
from rowback.store.base import Reversion
from rowback.store.duckdb.catalog import first

DDL = """
CREATE TABLE IF NOT EXISTS _rb_reversions (
    id INTEGER, created_at TIMESTAMPTZ, who VARCHAR, reason VARCHAR, selection VARCHAR,
    mode VARCHAR, status VARCHAR, rows BIGINT, txid UBIGINT, undoes INTEGER, plan VARCHAR)
"""

_COLUMNS = "id, created_at, who, reason, selection, mode, status, rows, txid, undoes, plan"


def _ensure(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def add(con: duckdb.DuckDBPyConnection, r: Reversion) -> int:
    """Record ``r`` (its ``id`` is ignored); the new id."""
    _ensure(con)
    got = first(con.execute("SELECT coalesce(max(id), 0) + 1 FROM _rb_reversions").fetchall())
    rid = int(got[0]) if got else 1
    con.execute(
        f"INSERT INTO _rb_reversions ({_COLUMNS}) VALUES (?, now(), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            rid,
            r.who,
            r.reason,
            orjson.dumps(r.selection).decode(),
            r.mode,
            r.status,
            r.rows,
            r.txid,
            r.undoes,
            orjson.dumps(r.plan).decode(),
        ],
    )
    return rid


def update(
    con: duckdb.DuckDBPyConnection,
    rid: int,
    status: str,
    rows: int | None = None,
    txid: int | None = None,
) -> None:
    """Move reversion ``rid`` to ``status`` (with its rows and transaction, when known)."""
    _ensure(con)
    con.execute(
        "UPDATE _rb_reversions SET status = ?, rows = coalesce(?, rows), "
        "txid = coalesce(?, txid) WHERE id = ?",
        [status, rows, txid, rid],
    )


def _of(row: tuple[Any, ...]) -> Reversion:
    rid, created, who, reason, selection, mode, status, rows, txid, undoes, plan = row
    assert isinstance(created, datetime)
    return Reversion(
        id=int(rid),
        created_at=created,
        who=who,
        reason=reason,
        selection=orjson.loads(selection),
        mode=mode,
        status=status,
        rows=None if rows is None else int(rows),
        txid=None if txid is None else int(txid),
        undoes=None if undoes is None else int(undoes),
        plan=orjson.loads(plan) if plan else {},
    )


def listed(con: duckdb.DuckDBPyConnection) -> list[Reversion]:
    """Every reversion, oldest first (none in a store that never reverted)."""
    try:
        rows = con.execute(f"SELECT {_COLUMNS} FROM _rb_reversions ORDER BY id").fetchall()
    except duckdb.CatalogException:
        return []
    return [_of(r) for r in rows]


def one(con: duckdb.DuckDBPyConnection, rid: int) -> Reversion:
    """Reversion ``rid``; NotFound when there is none."""
    found = [r for r in listed(con) if r.id == rid]
    if not found:
        raise NotFound(f"reversion {rid} is not in the store (see `rowback reversions`)")
    return found[0]
