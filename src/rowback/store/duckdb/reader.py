"""Reading the embedded store: one snapshot per reader, apart from the writer.

DuckDB lets one process hold many connections to one database, each with its own MVCC
transaction. A reader takes a connection of its own, begins a transaction and loads the
catalog inside it, so everything it answers comes from one committed state: the writer
commits on, never waits for a reader, and a reader never sees half of a write. A
time limit interrupts a query that runs too long (``interrupt`` is DuckDB's own cancel).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb

from rowback.errors import RowbackError
from rowback.filters import Filter
from rowback.store.base import (
    Incident,
    Result,
    Reversion,
    SourceState,
    TableInfo,
    TableVersions,
)
from rowback.store.duckdb import catalog, queries, revisions
from rowback.store.duckdb import incidents as incident_log
from rowback.store.duckdb import reversions as reversion_log
from rowback.store.duckdb.catalog import Table, first
from rowback.timetravel import resolve
from rowback.when import Point


class QueryTimeout(RowbackError):
    """A read ran past its time limit and was interrupted."""


class DuckDBReader:
    """The read half of the store over ``con`` and the catalog ``tables`` it sees."""

    def __init__(self, con: duckdb.DuckDBPyConnection, tables: dict[int, Table]) -> None:
        self._con = con
        self._tables = tables

    def table(self, name: str) -> Table:
        """Resolve ``schema.table``, ``source:schema.table`` or a bare unique name."""
        return resolve(self._tables.values(), name)

    def tables(self) -> list[TableInfo]:
        out = []
        for t in sorted(self._tables.values(), key=lambda t: (t.source, t.schema, t.name)):
            live = first(self._con.execute(f"SELECT count(*) FROM {t.head}").fetchall())
            out.append(
                TableInfo(
                    t.source,
                    t.schema,
                    t.name,
                    tuple(c.name for c in t.alive),
                    tuple(c.name for c in t.key_columns),
                    len({c.added_pos for c in t.columns} | {c.dropped_pos for c in t.columns})
                    - (1 if any(c.dropped_pos is None for c in t.columns) else 0),
                    int(live[0]) if live else 0,
                    catalog.current_schema(t),
                )
            )
        return out

    def asof(self, table: str, point: Point, where: Sequence[Filter] = ()) -> Result:
        return queries.asof(self._con, self.table(table), point, where)

    def history(self, table: str, key: Sequence[str]) -> Result:
        return queries.history(self._con, self.table(table), key)

    def changes(
        self,
        table: str | None = None,
        since: Point | None = None,
        until: Point | None = None,
        txid: int | None = None,
    ) -> Result:
        tables = [self.table(table)] if table else list(self._tables.values())
        return queries.changes(self._con, tables, since, until, txid, self._snapshot_pos())

    def tx(self, txid: int, source: str | None = None) -> Result:
        return queries.tx(self._con, self._of(source), txid, source)

    def touched_versions(
        self, txids: Sequence[int], source: str | None = None, chunk_rows: int | None = None
    ) -> Iterator[TableVersions]:
        return revisions.touched_versions(self._con, self._of(source), txids, source, chunk_rows)

    def reversions(self) -> list[Reversion]:
        return reversion_log.listed(self._con)

    def incidents(self) -> list[Incident]:
        return incident_log.listed(self._con)

    def detector_state(self) -> bytes | None:
        return incident_log.load_state(self._con)

    def reversion_txids(self, source: str | None = None) -> dict[int, str]:
        return {
            txid: rid
            for (src, txid), rid in catalog.reverting(self._con).items()
            if source is None or src == source
        }

    def _of(self, source: str | None) -> list[Table]:
        return [t for t in self._tables.values() if source is None or t.source == source]

    def _snapshot_pos(self) -> int:
        """The last position this reader's snapshot holds. Queries that read through
        connections of their own (one per table, merged) stop here, so they agree."""
        got = first(self._con.execute("SELECT coalesce(max(pos_hi), 0) FROM _rb_tx").fetchall())
        return int(got[0]) if got else 0

    def quarantined(self, source: str | None = None) -> Result:
        sql = "SELECT id, source, location, line, error, raw, quarantined_at FROM _rb_quarantine"
        args: list[object] = []
        if source:
            sql += " WHERE source = ?"
            args.append(source)
        rows = self._con.execute(sql + " ORDER BY id", args).fetchall()
        return Result(
            ["id", "source", "location", "line", "error", "raw", "quarantined_at"],
            [(*r[:5], r[5].decode("utf-8", "backslashreplace"), r[6]) for r in rows],
        )

    def sources(self) -> list[SourceState]:
        """Each source's recorded position, when it was durably written, and how much of
        its input waits in the quarantine."""
        import orjson

        counts = dict(
            self._con.execute(
                "SELECT source, count(*) FROM _rb_quarantine GROUP BY source"
            ).fetchall()
        )
        rows = self._con.execute(
            "SELECT source, position, updated FROM _rb_positions ORDER BY source"
        ).fetchall()
        names = {t.source for t in self._tables.values()} | set(counts) | {r[0] for r in rows}
        known = {r[0]: (dict(orjson.loads(r[1])), r[2]) for r in rows}
        out = []
        for name in sorted(names):
            position, written = known.get(name, (None, None))
            out.append(SourceState(name, position, written, int(counts.get(name, 0))))
        return out

    def sql(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run a read query (tests and benchmarks)."""
        return self._con.execute(query, list(params)).fetchall()


class CatalogCache:
    """The catalog as of the last committed write, shared by the readers that see it.

    Loading it takes a dozen queries (~5 ms), more than a row's history takes. Every
    write records the store's next position, and every catalog change happens in a write
    or in a snapshot redo (which changes ``_rb_tables``/``_rb_columns``), so that triple
    tells one committed catalog from another. Readers never change a ``Table``."""

    KEY_SQL = (
        "SELECT (SELECT max(v) FROM _rb_meta WHERE k = 'next_pos'), "
        "(SELECT count(*) FROM _rb_tables), (SELECT count(*) FROM _rb_columns)"
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._tables: dict[int, Table] = {}

    def load(self, con: duckdb.DuckDBPyConnection) -> dict[int, Table]:
        key = tuple(con.execute(self.KEY_SQL).fetchall()[0])
        with self._lock:
            if key == self._key:
                return self._tables
        tables = catalog.load(con)
        with self._lock:
            self._key, self._tables = key, tables
        return tables


class Snapshot:
    """A reader on a connection of its own, in one transaction, with a time limit;
    ``close`` ends both (a query still running is interrupted)."""

    def __init__(
        self,
        root: duckdb.DuckDBPyConnection,
        lock: threading.Lock,
        limit: float | None,
        cache: CatalogCache | None = None,
    ):
        with lock:  # one connection object must not be used by two threads at once
            self._con = root.cursor()
        self._timer: threading.Timer | None = None
        self._closed = False
        try:
            self._con.execute("BEGIN TRANSACTION")
            tables = (cache or CatalogCache()).load(self._con)
            self.reader = DuckDBReader(self._con, tables)
        except BaseException:
            self._con.close()
            raise
        if limit is not None:
            self._timer = threading.Timer(limit, self._expire)
            self._timer.daemon = True
            self._timer.start()
        self.expired = False

    def _expire(self) -> None:
        self.expired = True
        self._con.interrupt()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        try:
            self._con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # an interrupted transaction is already over
        self._con.close()
