"""The embedded shadow store: one DuckDB file in one local directory, no server."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from rowback.errors import RowbackError
from rowback.filters import Filter
from rowback.model import Change, ChangeBatch, Op, Quarantined, TableSchema, WriteStats
from rowback.store.base import (
    Capabilities,
    Incident,
    Observer,
    Result,
    Reversion,
    SourceState,
    TableInfo,
    TableVersions,
)
from rowback.store.duckdb import catalog, checkpoints, retype, vector, widening
from rowback.store.duckdb import incidents as incident_log
from rowback.store.duckdb import reversions as reversion_log
from rowback.store.duckdb.catalog import Table, first, unregister
from rowback.store.duckdb.reader import CatalogCache, DuckDBReader, Snapshot
from rowback.store.duckdb.writer import diff_changes, fetch_head, write_head
from rowback.when import Point

FILE_NAME = "rowback.duckdb"
OBSERVE_PIECE = 10_000
"""Changes of a bulk write handed to detection at once (as objects, ~1 KB each)."""


W = TypeVar("W", bound=Callable[..., Any])


def _writing(method: W) -> W:
    """Run ``method`` holding the store's writer lock. DuckDB's connection must not be
    used by two threads at once, and a statement run on it while another thread's write
    transaction is open would join that transaction (and be rolled back with it)."""

    @functools.wraps(method)
    def locked(self: DuckDBStore, *args: Any, **kwargs: Any) -> Any:
        with self._write_lock:
            try:
                return method(self, *args, **kwargs)
            finally:
                self.generation += 1

    return cast(W, locked)


class DuckDBStore:
    """Shadow store in ``<path>/rowback.duckdb``.

    DuckDB allows one writing process per file, so capture owns the store while it runs;
    readers in other processes open it read-only once capture has stopped, and readers in
    the capturing process (``rowback run``) take ``snapshot()``s apart from the writer.
    ``checkpoint_every``: changes to a table between two of its checkpoints (None: the
    larger of 200,000 and its live rows).
    """

    capabilities = Capabilities(atomic_position=True, differential=True, single_process=True)

    def __init__(
        self,
        path: str | Path,
        read_only: bool = False,
        vectorized: bool = True,
        checkpoint_every: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.vectorized = vectorized
        self.checkpoint_every = checkpoint_every
        file = self.path / FILE_NAME
        if read_only and not file.exists():
            raise RowbackError(f"no store at {self.path} (nothing captured yet?)")
        if not read_only:
            self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(file), read_only=read_only)
        except duckdb.IOException as e:
            msg = str(e).splitlines()[0]
            if "lock" in msg.lower():
                raise RowbackError(
                    f"store {self.path} is in use by another process (a running capture?): "
                    "stop it, or capture with `rowback run`, which the read commands ask"
                ) from None
            raise RowbackError(f"cannot open store {self.path}: {msg}") from None
        self.read_only = read_only
        # readers' connections are made from this one, never from the writer's, which a
        # write may be using in another thread
        self._root = self._con.cursor()
        self._root_lock = threading.Lock()
        # the writer connection is used by one thread at a time: capture's writes and
        # the service's reversion records (an API thread) take turns on it
        self._write_lock = threading.RLock()
        self.generation = 0
        self._catalogs = CatalogCache()
        self._open = False  # a bulk transaction left open by write_batch(commit=False)
        self.observer: Observer | None = None
        if not read_only:
            self._con.execute(catalog.CATALOG_DDL)
        self._load()

    def _load(self) -> None:
        try:
            self._tables = catalog.load(self._con)
        except duckdb.CatalogException:
            self._tables = {}
        self._by_name = {(t.source, t.schema, t.name): t for t in self._tables.values()}
        if not self.read_only:
            self._upgrade_heads()
        got = first(self._con.execute("SELECT v FROM _rb_meta WHERE k = 'next_pos'").fetchall())
        self._next_pos = int(got[0]) if got else 1

    def _upgrade_heads(self) -> None:
        """Give heads written before ``_h`` existed their value hashes (``catalog.digest``),
        taking today's columns in physical order for the layout."""
        have = {
            r[0]
            for r in self._con.execute(
                "SELECT table_name FROM duckdb_columns() "
                "WHERE column_name = '_h' AND database_name = current_database()"
            ).fetchall()
        }
        for t in self._tables.values():
            if t.head not in have:
                self._con.execute(f"ALTER TABLE {t.head} ADD COLUMN _h UBIGINT")
                catalog.rehash(self._con, t, tuple(c.phys for c in t.alive))

    # -- writing ---------------------------------------------------------------------

    @_writing
    def write(
        self,
        changes: Sequence[Change],
        source: str,
        position: Mapping[str, Any],
        schemas: Sequence[TableSchema] = (),
        quarantine: Sequence[Quarantined] = (),
        replayed: Sequence[int] = (),
        reverting: Mapping[int, str] | None = None,
    ) -> WriteStats:
        """Apply ``changes`` in order and record ``position``, in one transaction.

        ``schemas`` registers table versions that have no change yet (an empty table);
        ``quarantine`` keeps the inputs that failed to decode alongside, so a crash can
        neither lose them nor keep them twice; ``replayed`` removes the quarantined
        inputs (by id) that ``changes`` came from, for the same reason; ``reverting``
        labels transactions (by txid) as the revert of a reversion (by id).
        """
        stats = WriteStats()
        con = self._con
        self._begin()
        try:
            pending: dict[int, list[tuple[int, Change, tuple[int, ...]]]] = {}
            txs: list[list[int]] = []  # [pos_lo, pos_hi, lsn, txid, commit_us]
            pos = self._next_pos
            now = int(datetime.now(UTC).timestamp() * 1_000_000)
            lsn = int(position.get("lsn", 0))
            for s in schemas:
                _, _, used = self._layout(s, pos, pending, stats, (lsn, 0, now))
                if used:
                    txs.append([pos, pos + used - 1, lsn, 0, now])
                    pos += used
            if schemas and not changes:
                txs.append([pos, pos, lsn, 0, now])
                pos += 1
            last_schema: TableSchema | None = None
            placed: list[tuple[int, Change]] = []
            items: list[tuple[int, Change, tuple[int, ...]]] = []
            layout: tuple[int, ...] = ()
            tx = [0, 0, -1, -1, 0]
            for ch in changes:
                if ch.table is not last_schema:  # runs of one table are the common case
                    at = (ch.lsn, ch.txid, ch.commit_us)
                    table, layout, used = self._layout(ch.table, pos, pending, stats, at)
                    if used:  # the rows a retype re-read, as write_batch records them
                        txs.append([pos, pos + used - 1, *at])
                        tx = [0, 0, -1, -1, 0]
                        pos += used
                    items = pending.setdefault(table.id, [])
                    last_schema = ch.table
                items.append((pos, ch, layout))
                placed.append((pos, ch))
                if tx[3] == ch.txid and tx[2] == ch.lsn:
                    tx[1] = pos
                else:
                    tx = [pos, pos, ch.lsn, ch.txid, ch.commit_us]
                    txs.append(tx)
                pos += 1
            for tid in list(pending):
                self._flush(self._tables[tid], pending.pop(tid), stats)
            checkpoints.take_due(con, self._tables.values(), pos - 1, self.checkpoint_every)
            self._observe(lambda: placed, source, reverting, bool(position.get("partial")))
            self._record(txs, source, position, pos, reverting)
            self._quarantine(quarantine)
            if replayed:
                con.execute(  # one statement: a DELETE per id would scan the table each time
                    "DELETE FROM _rb_quarantine WHERE id IN (SELECT unnest(?::BIGINT[]))",
                    [list(replayed)],
                )
            self._commit()
        except BaseException:
            self._rollback()
            raise
        self._next_pos = pos
        stats.written = len(changes)
        return stats

    def _layout(
        self,
        schema: TableSchema,
        pos: int,
        pending: dict[int, list[tuple[int, Change, tuple[int, ...]]]],
        stats: WriteStats,
        at: tuple[int, int, int],
    ) -> tuple[Table, tuple[int, ...], int]:
        """The table and physical layout of ``schema``, evolving the table to it when it is
        a new version. A retyped column re-reads the table at ``pos`` (``at``: the lsn,
        txid and commit time to record), which takes the returned number of positions."""
        table = self._by_name.get((schema.source, schema.schema, schema.name))
        if table is None:
            tid = max(self._tables, default=0) + 1
            table = catalog.create(self._con, tid, schema, pos)
            self._tables[tid] = table
            self._by_name[(schema.source, schema.schema, schema.name)] = table
        layout = table.layout(schema)
        used = 0
        if layout is None:
            if table.id in pending:
                self._flush(table, pending.pop(table.id), stats)
            retyped = catalog.evolve(self._con, table, schema, pos)
            if retyped:
                lsn, txid, commit_us = at
                used = retype.reread(self._con, table, retyped, pos, lsn, txid, commit_us, stats)
            layout = table.layout(schema)
            assert layout is not None
            catalog.rehash(self._con, table, layout)  # the values hashed have changed
        return table, layout, used

    def _flush(
        self, table: Table, items: list[tuple[int, Change, tuple[int, ...]]], stats: WriteStats
    ) -> None:
        if self.vectorized and vector.eligible(table, items):
            vector.apply(self._con, table, items, stats)
        else:
            widening.check_changes(self._con, table, items)  # before anything casts them
            keys = {ch.key for _, ch, _ in items if ch.key is not None}
            prev, rowids = fetch_head(self._con, table, keys)
            batch, touched, cleared = diff_changes(table, items, prev, stats)
            batch.insert(self._con)
            write_head(self._con, table, touched, rowids, cleared, items[0][2])
        checkpoints.count(self._con, table, items)

    def _record(
        self,
        txs: list[list[int]] | pa.Table,
        source: str,
        position: Mapping[str, Any],
        next_pos: int,
        reverting: Mapping[int, str] | None = None,
    ) -> None:
        con = self._con
        if isinstance(txs, list) and txs:
            txs = _tx_table(*zip(*txs, strict=True))
        if len(txs):
            labels: list[str | None] = [None] * len(txs)
            if reverting:
                labels = [reverting.get(x) for x in txs.column("txid").to_pylist()]
            txs = txs.append_column("reversion", pa.array(labels, pa.string()))
            con.register("_rb_txs", txs)
            try:
                con.execute(
                    "INSERT INTO _rb_tx (pos_lo, pos_hi, lsn, txid, ts, source, reversion) "
                    "SELECT pos_lo, pos_hi, lsn, txid, ts, ?, reversion FROM _rb_txs",
                    [source],
                )
            finally:
                unregister(con, "_rb_txs")
        con.execute("DELETE FROM _rb_positions WHERE source = ?", [source])
        con.execute(
            "INSERT INTO _rb_positions VALUES (?, ?, now())",
            [source, orjson.dumps(dict(position)).decode()],
        )
        con.execute("DELETE FROM _rb_meta WHERE k = 'next_pos'")
        con.execute("INSERT INTO _rb_meta VALUES ('next_pos', ?)", [str(next_pos)])

    def position(self, source: str) -> dict[str, Any] | None:
        got = first(
            self._con.execute(
                "SELECT position FROM _rb_positions WHERE source = ?", [source]
            ).fetchall()
        )
        return dict(orjson.loads(got[0])) if got else None

    @_writing
    def reset_tables(self, source: str, tables: Iterable[str]) -> None:
        """Drop the history of ``tables`` so their snapshot can be taken again."""
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            for name in tables:
                schema, _, rel = name.partition(".")
                t = self._by_name.get((source, schema, rel))
                if t is None:
                    continue
                con.execute(f"DROP TABLE {t.hist}")
                con.execute(f"DROP TABLE {t.head}")
                checkpoints.forget(con, t)
                con.execute("DELETE FROM _rb_columns WHERE table_id = ?", [t.id])
                con.execute("DELETE FROM _rb_missing WHERE table_id = ?", [t.id])
                con.execute("DELETE FROM _rb_numbers WHERE table_id = ?", [t.id])
                con.execute("DELETE FROM _rb_widened WHERE table_id = ?", [t.id])
                con.execute("DELETE FROM _rb_tables WHERE id = ?", [t.id])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            self._load()

    @_writing
    def quarantine(self, items: Sequence[Quarantined]) -> None:
        """Keep inputs that could not be decoded (outside any change write)."""
        self._con.execute("BEGIN TRANSACTION")
        try:
            self._quarantine(items)
            self._con.execute("COMMIT")
        except BaseException:
            self._con.execute("ROLLBACK")
            raise

    def _quarantine(self, items: Sequence[Quarantined]) -> None:
        if not items:
            return
        got = first(self._con.execute("SELECT coalesce(max(id), 0) FROM _rb_quarantine").fetchall())
        next_id = int(got[0]) + 1 if got else 1
        self._con.executemany(
            "INSERT INTO _rb_quarantine VALUES (?, ?, ?, ?, ?, ?, now())",
            [
                [next_id + i, q.source, q.location, q.line, q.error, q.raw]
                for i, q in enumerate(items)
            ],
        )

    # -- reading ---------------------------------------------------------------------
    # Offline (the CLI on a stopped store) reads go through the writer's own connection;
    # a live service reads through ``snapshot()``, a connection and transaction apart.

    def _reading(self) -> DuckDBReader:
        return DuckDBReader(self._con, self._tables)

    def snapshot(self, limit: float | None = None) -> Snapshot:
        """A reader apart from the writer, on one committed state; ``limit``: seconds
        after which its query is interrupted. Safe to call from any thread."""
        return Snapshot(self._root, self._root_lock, limit, self._catalogs)

    def tables(self) -> list[TableInfo]:
        return self._reading().tables()

    def table(self, name: str) -> Table:
        """Resolve ``schema.table``, ``source:schema.table`` or a bare unique name."""
        return self._reading().table(name)

    def asof(self, table: str, point: Point, where: Sequence[Filter] = ()) -> Result:
        return self._reading().asof(table, point, where)

    def history(self, table: str, key: Sequence[str]) -> Result:
        return self._reading().history(table, key)

    def changes(
        self,
        table: str | None = None,
        since: Point | None = None,
        until: Point | None = None,
        txid: int | None = None,
    ) -> Result:
        return self._reading().changes(table, since, until, txid)

    def tx(self, txid: int, source: str | None = None) -> Result:
        return self._reading().tx(txid, source)

    def touched_versions(
        self, txids: Sequence[int], source: str | None = None, chunk_rows: int | None = None
    ) -> Iterator[TableVersions]:
        return self._reading().touched_versions(txids, source, chunk_rows)

    def reversions(self) -> list[Reversion]:
        return self._reading().reversions()

    def reversion_txids(self, source: str | None = None) -> dict[int, str]:
        return self._reading().reversion_txids(source)

    @_writing
    def record_reversion(self, reversion: Reversion) -> int:
        self._settle()
        return reversion_log.add(self._con, reversion)

    @_writing
    def update_reversion(
        self, rid: int, status: str, rows: int | None = None, txid: int | None = None
    ) -> None:
        self._settle()
        reversion_log.update(self._con, rid, status, rows, txid)

    def _observe(
        self,
        placed: Callable[[], Sequence[tuple[int, Change]]],
        source: str,
        reverting: Mapping[int, str] | None,
        partial: bool = False,
    ) -> None:
        """Feed the observer what this write stores, and keep what it concluded (its
        incidents and learned state) in the same transaction. ``partial``: the write
        ends inside a transaction (capture's ``partial`` position), judged once whole."""
        if self.observer is None:
            return
        seen = self._diffed(placed())
        got = self.observer.observe(seen, source, reverting or {}, partial)
        incident_log.save(self._con, got)
        # every write, not only one that commits: a bulk transaction left open may be
        # committed by whatever writes next (``_settle``), and must hold the state too
        incident_log.save_state(self._con, self.observer.state())

    def _observe_in_pieces(
        self,
        n: int,
        piece: Callable[[int, int], Sequence[tuple[int, Change]]],
        source: str,
        reverting: Mapping[int, str] | None,
    ) -> None:
        """``_observe`` of a bulk write's ``n`` changes, ``OBSERVE_PIECE`` at a time: as
        objects they take ~1 KB each, and a block may hold 60,000. A piece that ends
        inside a transaction says so (the observer judges the transaction once, whole)."""
        if self.observer is None:
            return
        for lo in range(0, n, OBSERVE_PIECE):  # none when empty: a tail waits on
            hi = min(n, lo + OBSERVE_PIECE)
            self._observe(functools.partial(piece, lo, hi), source, reverting, partial=hi < n)

    def _diffed(self, placed: Sequence[tuple[int, Change]]) -> list[Change]:
        """The changes as the store diffed them: an update sent without a before image
        (PostgreSQL's default replica identity sends every column) has the columns the
        store found unchanged marked ``unchanged``, so detection judges only what it
        changed, not the damaged values a later, innocent update carries along."""
        want: dict[int, list[int]] = {}
        for pos, ch in placed:
            if ch.op == Op.UPDATE and ch.before is None:
                t = self._by_name.get((ch.table.source, ch.table.schema, ch.table.name))
                if t is not None:
                    want.setdefault(t.id, []).append(pos)
        masks: dict[int, int] = {}
        for tid, ps in want.items():
            t = self._tables[tid]
            words = t.mask_words()
            cols = ", ".join(f"_m{w}" for w in range(words))
            rows = self._con.execute(
                f"SELECT _pos, {cols} FROM {t.hist} WHERE _pos BETWEEN ? AND ?",
                [min(ps), max(ps)],
            ).fetchall()
            if words == 1:  # up to 64 columns: the common case, without the shifting
                masks.update((int(p), int(m or 0)) for p, m in rows)
                continue
            for r in rows:
                bits = 0
                for w in range(words):
                    bits |= int(r[1 + w] or 0) << (w * catalog.MASK_BITS)
                masks[int(r[0])] = bits
        out = []
        same_of: dict[tuple[int, int, int], frozenset[int]] = {}
        """Per (table version, layout, mask): the unchanged indexes, computed once (a
        stream's updates of one table mostly change the same columns)."""
        for pos, ch in placed:
            m = masks.get(pos)
            if m is None or ch.op != Op.UPDATE or ch.before is not None:
                out.append(ch)
                continue
            t = self._by_name.get((ch.table.source, ch.table.schema, ch.table.name))
            layout = t.layout(ch.table) if t is not None else None
            if layout is None:
                out.append(ch)
                continue
            k = (id(ch.table), id(layout), m)
            same = same_of.get(k)
            if same is None:
                same = same_of[k] = frozenset(i for i, p in enumerate(layout) if not (m >> p) & 1)
            un = ch.unchanged | same if ch.unchanged else same
            out.append(
                Change(
                    ch.table,
                    ch.op,
                    ch.key,
                    ch.after,
                    ch.before,
                    ch.commit_us,
                    ch.txid,
                    ch.lsn,
                    ch.seq,
                    un,
                )
            )
        return out

    def watch(self, observer: Observer | None) -> None:
        self.observer = observer
        if observer is not None:
            observer.restore(incident_log.load_state(self._con))

    @_writing
    def judge_pending(self, source: str) -> None:
        if self.observer is None:
            return
        self._settle()
        self._begin()
        try:
            incident_log.save(self._con, self.observer.observe([], source, {}))
            incident_log.save_state(self._con, self.observer.state())
            self._commit()
        except BaseException:
            self._rollback()
            raise

    def incidents(self) -> list[Incident]:
        # under the writer's lock: the service's responder asks from its own thread
        # while capture writes on the same connection
        with self._write_lock:
            return self._reading().incidents()

    def detector_state(self) -> bytes | None:
        with self._write_lock:
            return self._reading().detector_state()

    @_writing
    def update_incident(
        self,
        iid: int,
        status: str,
        reason: str | None = None,
        reversion: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Incident:
        self._settle()
        self._begin()
        try:
            got = incident_log.one(self._con, iid)
            got.status = status
            got.reason = reason if reason is not None else got.reason
            got.reversion = reversion if reversion is not None else got.reversion
            got.detail.update(detail or {})
            if self.observer is not None:
                self.observer.changed(got)
                incident_log.save_state(self._con, self.observer.state())
            incident_log.save(self._con, [got])
            self._commit()
        except BaseException:
            self._rollback()
            raise
        return got

    def _settle(self) -> None:
        """Commit a bulk transaction ``write_batch(commit=False)`` left open, so that a
        record written next is durable on its own: each batch recorded its position, so
        every batch boundary is a consistent state to commit."""
        if self._open:
            self._commit()

    def quarantined(self, source: str | None = None) -> Result:
        return self._reading().quarantined(source)

    def sources(self) -> list[SourceState]:
        return self._reading().sources()

    def quarantined_items(
        self, source: str | None = None, ids: Sequence[int] | None = None
    ) -> list[Quarantined]:
        sql = "SELECT source, location, line, error, raw, id FROM _rb_quarantine WHERE true"
        args: list[object] = []
        if source:
            sql += " AND source = ?"
            args.append(source)
        if ids is not None:
            sql += " AND list_contains(?, id)"
            args.append(list(ids))
        rows = self._con.execute(sql + " ORDER BY id", args).fetchall()
        return [Quarantined(s, loc, n, err, bytes(raw), i) for s, loc, n, err, raw, i in rows]

    def newest(self) -> tuple[int, int]:
        got = first(
            self._con.execute(
                "SELECT coalesce(max(lsn), 0), coalesce(epoch_us(max(ts)), 0) FROM _rb_tx"
            ).fetchall()
        )
        return (int(got[0]), int(got[1])) if got else (0, 0)

    def sql(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run a read query against the store (tests and benchmarks)."""
        return self._con.execute(query, list(params)).fetchall()

    def close(self) -> None:
        self._root.close()
        self._con.close()

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- bulk writing ----------------------------------------------------------------

    @_writing
    def write_batch(
        self,
        batch: ChangeBatch | Sequence[ChangeBatch],
        source: str,
        position: Mapping[str, Any],
        *,
        commit: bool = True,
        reverting: Mapping[int, str] | None = None,
    ) -> WriteStats:
        """``write`` for a columnar batch: the same history, without a Python object per
        change. ``commit=False`` leaves the transaction open for the next write: DuckDB
        writes a transaction's full row groups compressed, straight to the file, instead
        of through its log and a checkpoint, so bulk loads commit every ~10 blocks.
        Several batches are one block of interleaved tables (see ``ChangeBatch.rows``)."""
        if not isinstance(batch, ChangeBatch):
            if len(batch) != 1 or batch[0].rows is not None:
                return self._write_block(batch, source, position, commit, reverting)
            batch = batch[0]
        stats = WriteStats()
        n = len(batch)
        con = self._con
        self._begin()
        try:
            pos = self._next_pos
            at = (0, 0, 0)
            if n:
                at = (batch.lsn[0].as_py(), batch.txid[0].as_py(), batch.commit_us[0].as_py())
            table, layout, used = self._layout(batch.table, pos, {}, stats, at)
            runs = [_tx_table([pos], [pos + used - 1], [at[0]], [at[1]], [at[2]])] if used else []
            pos += used
            if n and len(table.columns) > catalog.MASK_BITS:  # the row-by-row path
                self._flush(
                    table, [(pos + i, ch, layout) for i, ch in enumerate(batch.changes())], stats
                )
                checkpoints.take_due(con, [table], pos + n - 1, self.checkpoint_every)
            elif n:
                inp = vector.batch_input(table, layout, batch, pos)
                vector.apply_input(con, table, layout, inp, stats)
                snapshots = pc.sum(pc.equal(batch.op, int(Op.SNAPSHOT))).as_py() or 0
                checkpoints.note(con, table, n - snapshots)
                checkpoints.take_due(con, [table], pos + n - 1, self.checkpoint_every)
            runs.append(_tx_runs(batch, pos))
            self._observe_in_pieces(
                n,
                lambda lo, hi: list(enumerate(batch.changes(lo, hi), pos + lo)),
                source,
                reverting,
            )
            self._record(pa.concat_tables(runs), source, position, pos + n, reverting)
            if commit:
                self._commit()
        except BaseException:
            self._rollback()
            raise
        self._next_pos = pos + n
        stats.written = n
        return stats

    def _write_block(
        self,
        batches: Sequence[ChangeBatch],
        source: str,
        position: Mapping[str, Any],
        commit: bool,
        reverting: Mapping[int, str] | None = None,
    ) -> WriteStats:
        """One block of several tables, each change at the position its ``rows`` give it,
        as ``write`` would place it. A table the store does not know in this version (so
        that a table would be created or altered mid-block) goes through ``write``."""
        n = sum(len(b) for b in batches)
        found = []
        for b in batches:
            s = b.table
            table = self._by_name.get((s.source, s.schema, s.name))
            layout = table.layout(s) if table is not None else None
            if table is None or layout is None or len(table.columns) > catalog.MASK_BITS:
                return self.write(_in_order(batches, 0, n), source, position, reverting=reverting)
            found.append((b, table, layout))
        stats = WriteStats()
        con = self._con
        self._begin()
        try:
            pos = self._next_pos
            for b, table, layout in found:
                vector.apply_input(
                    con, table, layout, vector.batch_input(table, layout, b, pos), stats
                )
                snapshots = pc.sum(pc.equal(b.op, int(Op.SNAPSHOT))).as_py() or 0
                checkpoints.note(con, table, len(b) - snapshots)
            checkpoints.take_due(con, [t for _, t, _ in found], pos + n - 1, self.checkpoint_every)
            meta = {}
            for name in ("txid", "lsn", "commit_us"):
                merged = np.zeros(n, np.int64 if name == "commit_us" else np.uint64)
                for b in batches:
                    assert b.rows is not None
                    rows = b.rows.to_numpy(zero_copy_only=False)
                    merged[rows] = getattr(b, name).to_numpy(zero_copy_only=False)
                meta[name] = merged
            self._observe_in_pieces(
                n,
                lambda lo, hi: list(enumerate(_in_order(batches, lo, hi), pos + lo)),
                source,
                reverting,
            )
            self._record(
                _runs(meta["txid"], meta["lsn"], meta["commit_us"], pos),
                source,
                position,
                pos + n,
                reverting,
            )
            if commit:
                self._commit()
        except BaseException:
            self._rollback()
            raise
        self._next_pos = pos + n
        stats.written = n
        return stats

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[None]:
        """A long load (a file ingest). DuckDB checkpoints its log every 128 MB instead of
        16 MB: each checkpoint rewrites the head table, whose rows a load replaces all
        over. Its cache is capped at 160 MB so the process stays under 500 MB whatever the
        file's size (measured on 1M events: 740 MB and 77k events/s without either; 500 MB
        with 200 MB, 460 MB with 160 MB, at the same speed)."""
        con = self._con
        con.execute("SET checkpoint_threshold = '128MB'")
        con.execute("SET memory_limit = '160MB'")
        try:
            yield
        finally:
            with contextlib.suppress(duckdb.Error):
                con.execute("RESET checkpoint_threshold")
                con.execute("RESET memory_limit")

    def _begin(self) -> None:
        if not self._open:
            self._con.execute("BEGIN TRANSACTION")
            self._open = True

    def _commit(self) -> None:
        self._con.execute("COMMIT")
        self._open = False

    def _rollback(self) -> None:
        self._open = False
        with contextlib.suppress(duckdb.Error):
            self._con.execute("ROLLBACK")
        self._load()
        if self.observer is not None:  # it saw changes that are not stored after all
            self.observer.restore(incident_log.load_state(self._con))


def _tx_table(
    pos_lo: Sequence[int] | np.ndarray,
    pos_hi: Sequence[int] | np.ndarray,
    lsn: Sequence[int] | np.ndarray,
    txid: Sequence[int] | np.ndarray,
    ts: Sequence[int] | np.ndarray,
) -> pa.Table:
    return pa.table(
        {
            "pos_lo": pa.array(pos_lo, pa.uint64()),
            "pos_hi": pa.array(pos_hi, pa.uint64()),
            "lsn": pa.array(lsn, pa.uint64()),
            "txid": pa.array(txid, pa.uint64()),
            "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def _in_order(batches: Sequence[ChangeBatch], lo: int, hi: int) -> list[Change]:
    """The changes ``lo`` to ``hi`` of one block's batches as objects, in the block's
    order (each batch's ``rows`` rise: its changes in that range are one slice)."""
    out: list[Change | None] = [None] * (hi - lo)
    for b in batches:
        assert b.rows is not None
        rows = b.rows.to_numpy(zero_copy_only=False)
        first, last = (int(i) for i in np.searchsorted(rows, [lo, hi]))
        for r, ch in zip(rows[first:last].tolist(), b.changes(first, last), strict=True):
            out[r - lo] = ch
    assert None not in out
    return out  # type: ignore[return-value]


def _tx_runs(batch: ChangeBatch, pos: int) -> pa.Table:
    """``_rb_tx`` rows of a batch: runs of changes with the same (txid, lsn), as ``write``
    makes them."""
    txid = batch.txid.to_numpy(zero_copy_only=False)
    lsn = batch.lsn.to_numpy(zero_copy_only=False)
    return _runs(txid, lsn, batch.commit_us.to_numpy(zero_copy_only=False), pos)


def _runs(txid: np.ndarray, lsn: np.ndarray, ts: np.ndarray, pos: int) -> pa.Table:
    """``_rb_tx`` rows of changes in position order from ``pos`` on."""
    txid, lsn, ts = txid.astype(np.uint64), lsn.astype(np.uint64), ts.astype(np.int64)
    if not len(txid):
        return _tx_table([], [], [], [], [])
    starts = np.flatnonzero(np.r_[True, (txid[1:] != txid[:-1]) | (lsn[1:] != lsn[:-1])])
    ends = np.r_[starts[1:], len(txid)] - 1
    base = np.uint64(pos)
    return _tx_table(
        starts.astype(np.uint64) + base,
        ends.astype(np.uint64) + base,
        lsn[starts],
        txid[starts],
        ts[starts],
    )
