"""What the source says about capture's slot: how far its WAL runs ahead of the store
and how much WAL the slot keeps from being recycled. Asked on a connection of its own,
with short timeouts, so a slow source never holds up capture or the API."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg2

from rowback.errors import RowbackError
from rowback.sources.postgres.source_catalog import connect

CACHE_S = 1.0


class SlotProbe:
    """``facts(confirmed_lsn)``, asked at most once a second."""

    def __init__(self, dsn: str, slot: str) -> None:
        self.dsn, self.slot = dsn, slot
        self._lock = threading.Lock()
        self._at = 0.0
        self._got: tuple[int, int | None] | None = None
        self._error: str | None = None

    def facts(self, confirmed_lsn: int) -> dict[str, Any]:
        with self._lock:
            if time.monotonic() - self._at > CACHE_S:
                self._at = time.monotonic()
                try:
                    self._got, self._error = self._ask(), None
                except (psycopg2.Error, OSError, RowbackError) as e:
                    self._got, self._error = None, str(e).strip().splitlines()[0]
            got, error = self._got, self._error
        if got is None:
            return {"lag_bytes": None, "slot_retained_bytes": None, "error": error}
        current, restart = got
        return {
            "lag_bytes": max(0, current - confirmed_lsn) if confirmed_lsn else None,
            "slot_retained_bytes": None if restart is None else max(0, current - restart),
            "source_lsn": current,
        }

    def _ask(self) -> tuple[int, int | None]:
        conn = connect(self.dsn, connect_timeout=3)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SET statement_timeout = 2000")
                cur.execute(
                    "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, "
                    "(SELECT restart_lsn - '0/0'::pg_lsn FROM pg_replication_slots "
                    " WHERE slot_name = %s)",
                    [self.slot],
                )
                row = cur.fetchone()
            assert row is not None
            return int(row[0]), None if row[1] is None else int(row[1])
        finally:
            conn.close()
