"""Capture a PostgreSQL database into the shadow store over logical replication.

The order of events that makes capture lossless and duplicate-free:

1. the replication slot is created with an exported snapshot; the selected tables are
   read under that snapshot and stored as SNAPSHOT rows at the slot's consistent point;
2. the stream starts at the store's recorded position; changes are batched and written
   to the store together with the new position in one transaction;
3. only then is the position confirmed to PostgreSQL (``flush_lsn``), so WAL the store
   does not yet hold is never released.

A transaction split across several store writes records ``partial = (lsn, seq)``; after
a crash PostgreSQL resends the whole transaction and the already-written part is skipped.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2.extensions
import psycopg2.extras
from psycopg2 import sql

from rowback.errors import RowbackError
from rowback.model import Change, Op, TableSchema
from rowback.revert.sql import MESSAGE_PREFIX as REVERT_PREFIX
from rowback.sources.postgres import new_tables
from rowback.sources.postgres import pgoutput as po
from rowback.sources.postgres.decoder import Decoder
from rowback.sources.postgres.source_catalog import SourceCatalog, connect, qualified
from rowback.sources.postgres.spill import Spill
from rowback.store.base import Store
from rowback.when import format_lsn, parse_lsn

SNAPSHOT_DONE = 2**64 - 1


@dataclass
class CaptureConfig:
    dsn: str
    source: str = "postgres"
    slot: str = "rowback"
    publication: str = "rowback"
    tables: list[str] | None = None
    batch_size: int = 20_000
    flush_interval: float = 0.25
    """Seconds between writes while changes stream in, when writes are quick."""
    max_flush_interval: float = 0.75
    """The longest it grows to when writes are slow (see ``Capture._due``)."""
    once: bool = False
    rescan_interval: float = 10.0
    spill_dir: Path | None = None


@dataclass
class CaptureStatus:
    """Progress, reported after every store write."""

    snapshot_rows: int = 0
    changes: int = 0
    transactions: int = 0
    gaps: int = 0
    lsn: int = 0
    lag_s: float = 0.0
    tables: list[str] = field(default_factory=list)
    gap_examples: list[str] = field(default_factory=list)


@dataclass
class _Tx:
    lsn: int
    commit_us: int
    xid: int
    seq: int = 0
    reversion: str | None = None
    """The reversion this transaction is the revert of (its first message says so)."""


class Capture:
    """One capture session: ``run()`` until caught up (``once``) or ``stop()``."""

    def __init__(
        self,
        config: CaptureConfig,
        store: Store,
        progress: Callable[[CaptureStatus], None] | None = None,
        status: CaptureStatus | None = None,
    ) -> None:
        self.cfg = config
        self.store = store
        self.progress = progress or (lambda s: None)
        self.status = status or CaptureStatus()  # shared by the sessions of a reconnect loop
        self._stop = False
        self.conn = connect(config.dsn)
        self.conn.autocommit = True
        self.cat = SourceCatalog(self.conn, config.source)
        self.decoder = Decoder(
            config.source,
            self.cat.type_name,
            self.cat.key_columns,
            self.cat.missing_values,
            self.cat.column_numbers,
        )
        self.pending: list[Change] = []
        self.position: dict[str, Any] = {}
        self.confirmed = 0
        self._last_flush = time.monotonic()
        self._write_s = 0.0  # smoothed duration of a store write
        self._cur: psycopg2.extras.ReplicationCursor | None = None
        self._recreated: dict[str, int] = {}
        """Tables created again under a captured name: the LSN after which to take them."""
        self._reverting: dict[int, str] = {}
        """txid -> reversion id of Rowback's reverts among the pending changes."""
        self._announcing = False
        """Whether new tables announce themselves in the stream (see ``new_tables``)."""
        self._unannounced: dict[str, int] = {}
        """New tables found in the catalog: the LSN after which, if the stream has not
        announced them by then, they are taken by a snapshot."""

    def stop(self) -> None:
        """Ask ``run`` to write what it holds and return (safe from a signal handler)."""
        self._stop = True

    @property
    def streaming(self) -> bool:
        """Set up (slot, snapshot) and reading the stream."""
        return self._cur is not None

    # -- set-up ----------------------------------------------------------------------

    def _wanted_tables(self) -> list[str]:
        if self.cfg.tables:
            bad = [t for t in self.cfg.tables if "." not in t]
            if bad:
                raise RowbackError(f"--tables: give schema-qualified names, e.g. public.{bad[0]}")
            for t in self.cfg.tables:
                self.cat.schema_of(t)  # one-line error if missing or without a primary key
            return list(dict.fromkeys(self.cfg.tables))
        tables = self.cat.pk_tables()
        if not tables:
            raise RowbackError("the source has no tables with a primary key to capture")
        return tables

    def _replication_conn(self) -> psycopg2.extras.LogicalReplicationConnection:
        conn = connect(
            self.cfg.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection
        )
        assert isinstance(conn, psycopg2.extras.LogicalReplicationConnection)
        return conn

    def _prepare(self) -> psycopg2.extras.ReplicationCursor:
        """Make sure slot, publication and snapshot exist; return a cursor ready to stream."""
        cfg = self.cfg
        pos = self.store.position(cfg.source)
        slot = self.cat.slot(cfg.slot)
        tables = self._wanted_tables()
        if pos is not None and pos.get("snapshot_lsn") is not None and slot is None:
            raise RowbackError(
                f"replication slot {cfg.slot!r} is gone, so changes after "
                f"{format_lsn(int(pos['lsn']))} are lost: start a new store "
                "(or drop this one) to take a fresh snapshot"
            )
        done = pos is not None and pos.get("snapshot_lsn") is not None
        if not done:
            if slot is not None:
                if slot[2]:
                    raise RowbackError(
                        f"replication slot {cfg.slot!r} is in use by another process"
                    )
                self.cat.drop_slot(cfg.slot)  # its exported snapshot is gone: start over
            self.store.reset_tables(cfg.source, (pos or {}).get("tables", {}).keys() | set(tables))
            self.cat.ensure_publication(cfg.publication, tables)
            self._watch_new_tables()
            repl = self._replication_conn()
            try:
                cur = repl.cursor()
                cp, snap = self._create_slot(cur, cfg.slot, temporary=False)
                self.position = {"lsn": cp, "partial": None, "snapshot_lsn": None, "tables": {}}
                self.position["identity"] = self._identity()
                self._snapshot(tables, snap, cp)
                self.position["snapshot_lsn"] = cp
                self.store.write([], cfg.source, self.position)
            except BaseException:
                repl.close()
                raise
            self.confirmed = cp
            return cur
        assert pos is not None
        self.position = pos
        # the slot lives in this database, so a position without identity is of it
        self.position.setdefault("identity", self._identity())
        self.confirmed = int(pos["lsn"])
        self.decoder.known = {
            (t.schema, t.name): t.current
            for t in self.store.tables()
            if t.source == cfg.source
            and t.current is not None
            and all(c.number is not None for c in t.current.columns)
        }
        for name, lsn in pos.get("tables", {}).items():
            self.decoder.skip_before[name] = int(lsn)
        self._watch_new_tables()
        late = [t for t in tables if t not in self.decoder.skip_before]
        if late:
            self._found(late)
        self._find_recreated()
        # only tables there now: a captured table dropped since cannot be added, and one
        # created again without a primary key must not be (its writes would then fail)
        present = set(self.cat.pk_tables())
        self.cat.ensure_publication(
            cfg.publication, [t for t in self.decoder.skip_before if t in present]
        )
        return self._replication_conn().cursor()  # closed by run()

    def _identity(self) -> dict[str, str]:
        """Which cluster and database this is, so a revert can refuse another one."""
        with self.conn.cursor() as c:
            c.execute("SELECT system_identifier::text, current_database() FROM pg_control_system()")
            row = c.fetchone()
        assert row is not None
        return {"system_identifier": str(row[0]), "database": str(row[1])}

    def _watch_new_tables(self) -> None:
        """Without a table list, have new tables join the publication as they are created."""
        if self.cfg.tables is None:
            self._announcing = new_tables.ensure(self.cat, self.cfg.publication)

    def _found(self, tables: list[str]) -> None:
        """Tables seen in the catalog but not captured: when the stream will announce them
        (created since the position), wait for that; else snapshot them now."""
        if not self._announcing:
            self._add_tables(tables)
            return
        at = self.cat.current_lsn()
        for t in tables:
            self._unannounced.setdefault(t, at)

    def _announced(self, m: po.LogicalMessage, tx: _Tx) -> None:
        """A transactional message in ``tx``: Rowback's revert mark, or a new table."""
        if m.transactional and m.prefix == REVERT_PREFIX:
            # Rowback's own revert: its changes are labelled with the reversion's id
            tx.reversion = m.content.decode("utf-8", "replace")
            self._reverting[tx.xid] = tx.reversion
            return
        self._new_table(m, tx)

    def _new_table(self, m: po.LogicalMessage, tx: _Tx) -> None:
        """A new table joined the publication in this transaction, where it starts empty:
        take its changes from here, none missed. A captured table of that name (dropped or
        renamed away since) ends here."""
        got = new_tables.announced(m, self.cfg.publication)
        if got is None or self.cfg.tables is not None or tx.seq < 0:
            return
        tx.seq += 1  # numbered the same when the transaction is sent again
        relid, name = got
        if self.position["tables"].get(name) == tx.lsn:
            return  # sent again after a restart: already taken
        self._unannounced.pop(name, None)
        self._recreated.pop(name, None)
        if name in self.decoder.skip_before:
            self._flush(tx)  # so the store holds the old table's last version
            for t in self.store.tables():
                if t.source == self.cfg.source and t.qualified == name and t.current:
                    self.pending.append(
                        Change(
                            t.current,
                            Op.TRUNCATE,
                            None,
                            None,
                            None,
                            tx.commit_us,
                            tx.xid,
                            tx.lsn,
                            tx.seq,
                        )
                    )
        self.decoder.skip_before[name] = tx.lsn
        self.position["tables"][name] = tx.lsn
        self.position.setdefault("relids", {})[name] = relid
        self.status.tables = sorted(self.decoder.skip_before)

    def _create_slot(
        self, cur: psycopg2.extras.ReplicationCursor, name: str, temporary: bool
    ) -> tuple[int, str]:
        tmp = " TEMPORARY" if temporary else ""
        cur.execute(f'CREATE_REPLICATION_SLOT "{name}"{tmp} LOGICAL pgoutput EXPORT_SNAPSHOT')
        row = cur.fetchone()
        assert row is not None
        return parse_lsn(row[1]), str(row[2])

    def _snapshot(self, tables: list[str], snapshot: str, lsn: int) -> None:
        """Store every row of ``tables`` as seen by the exported ``snapshot``."""
        conn = connect(self.cfg.dsn)
        try:
            self.cat.output_text(conn)
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with conn.cursor() as c:
                c.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])
            now_us = int(time.time() * 1_000_000)
            seq = 0
            schemas = [self.cat.schema_of(t) for t in tables]
            relids = self.cat.relids(tables, conn)
            for schema in schemas:
                cols = sql.SQL(", ").join(sql.Identifier(c.name) for c in schema.columns)
                cur = conn.cursor(name=f"rowback_snap_{schema.name}"[:60])
                cur.itersize = self.cfg.batch_size
                # ONLY: inheritance children are tables of their own; a partitioned
                # table is read with its partitions, whose changes arrive under its name
                only = sql.SQL("" if self.cat.partitioned(schema.qualified) else "ONLY ")
                cur.execute(
                    sql.SQL("SELECT {} FROM {}{}").format(
                        cols, only, qualified(schema.schema, schema.name)
                    )
                )
                batch: list[Change] = []
                for row in cur:
                    seq += 1
                    values = list(row)
                    batch.append(
                        Change(
                            schema,
                            Op.SNAPSHOT,
                            schema.key_of(values),
                            values,
                            None,
                            now_us,
                            0,
                            lsn,
                            seq,
                        )
                    )
                    if len(batch) >= self.cfg.batch_size:
                        self._write_snapshot(batch, schema)
                        batch = []
                self._write_snapshot(batch, schema)
                cur.close()
                self.position["tables"][schema.qualified] = lsn
                self.position.setdefault("relids", {})[schema.qualified] = relids.get(
                    schema.qualified
                )
                self.decoder.skip_before[schema.qualified] = lsn
            self.store.write([], self.cfg.source, self.position, schemas=schemas)
        finally:
            conn.close()

    def _write_snapshot(self, batch: list[Change], schema: TableSchema) -> None:
        self.store.write(batch, self.cfg.source, self.position, schemas=[schema])
        self.status.snapshot_rows += len(batch)
        self._keepalive()  # a late table's snapshot runs while the stream waits
        self.progress(self.status)

    def _keepalive(self) -> None:
        """Confirm what the store holds, now. Also the sign of life PostgreSQL needs within
        ``wal_sender_timeout`` while we replay or snapshot instead of reading; unforced,
        psycopg2 would only send it every 10 s from ``read_message``."""
        if self._cur is not None:
            self._cur.send_feedback(  # type: ignore[no-untyped-call]
                flush_lsn=self.confirmed, force=True
            )

    def _add_tables(self, tables: list[str]) -> None:
        """Start capturing tables that appeared after the slot: snapshot each at a new
        consistent point and ignore stream changes committed before it."""
        self._flush()
        self.store.reset_tables(self.cfg.source, tables)
        self.cat.ensure_publication(self.cfg.publication, tables)
        repl = self._replication_conn()
        try:
            cur = repl.cursor()
            name = f"{self.cfg.slot}_add_{os.getpid()}"
            cp, snap = self._create_slot(cur, name, temporary=True)
            self._snapshot(tables, snap, cp)
        finally:
            repl.close()
        self.status.tables = sorted(self.decoder.skip_before)

    def _find_recreated(self) -> None:
        """Note captured tables that were dropped or renamed and created again under their
        name since (another OID): PostgreSQL sends nothing for either, and the new table is
        not in the publication. Each is taken over once the stream has passed this moment,
        so the old table's changes still in the stream are stored first."""
        recorded: dict[str, int | None] = self.position.setdefault("relids", {})
        published: set[str] | None = None
        for name, oid in self.cat.relids(self.decoder.skip_before).items():
            if name in self._recreated:
                continue
            was = recorded.get(name)
            if was is None:  # a store from before OIDs were kept: the publication holds
                if published is None:  # tables by OID, so a new table is not in it
                    published = self.cat.published(self.cfg.publication) or set()
                if name in published:
                    recorded[name] = oid
                    continue
            if was != oid:
                self._recreated[name] = self.cat.current_lsn()

    def _take_over(self, names: list[str]) -> None:
        """The tables ``names`` are new tables under old names: what the store holds under
        each ends here (a TRUNCATE, history kept), and the new one is snapshotted."""
        for name in names:
            del self._recreated[name]
        self._flush()
        present = set(self.cat.pk_tables())
        held = {t.qualified: t.current for t in self.store.tables() if t.source == self.cfg.source}
        gone = [n for n in names if n not in present]
        if gone:
            # dropped again, or created without a primary key: not capturable; its rows
            # under the name end here, and its OID is noted so this is done once
            self.position["relids"].update(self.cat.relids(gone))
            self._end_rows([held[n] for n in gone if held.get(n)], self.cat.current_lsn())
            names = [n for n in names if n in present]
            if not names:
                return
        self.cat.ensure_publication(self.cfg.publication, names)
        repl = self._replication_conn()
        try:
            cur = repl.cursor()
            cp, snap = self._create_slot(cur, f"{self.cfg.slot}_add_{os.getpid()}", temporary=True)
            self._end_rows([held[n] for n in names if held.get(n)], cp)
            self._snapshot(names, snap, cp)
        finally:
            repl.close()

    def _end_rows(self, tables: list[TableSchema | None], lsn: int) -> None:
        """A TRUNCATE at ``lsn`` of each of the store's ``tables`` (their versions as held)."""
        now_us = int(time.time() * 1_000_000)
        ends = [Change(t, Op.TRUNCATE, None, None, None, now_us, 0, lsn, 0) for t in tables if t]
        self.store.write(ends, self.cfg.source, self.position)

    # -- streaming -------------------------------------------------------------------

    def run(self) -> CaptureStatus:
        """Capture until caught up (``once``) or until :meth:`stop`; returns the totals."""
        cfg = self.cfg
        try:
            cur = self._prepare()
        except BaseException:
            self.conn.close()
            raise
        self.status.tables = sorted(self.decoder.skip_before)
        self.status.lsn = self.confirmed
        spill = Spill(cfg.spill_dir or Path(f"/tmp/rowback-spill-{os.getpid()}"))
        target = self.cat.current_lsn() if cfg.once else None
        self._cur = cur
        cur.start_replication(
            slot_name=cfg.slot,
            decode=False,
            start_lsn=self.confirmed,
            options={
                "proto_version": "2",
                "publication_names": cfg.publication,
                "streaming": "on",
                "messages": "true",
            },
        )
        tx: _Tx | None = None
        stream_xid: int | None = None
        next_scan = time.monotonic() + cfg.rescan_interval
        try:
            while not self._stop:
                msg = cur.read_message()
                if msg is None:
                    if tx is None and stream_xid is None:
                        if cur.wal_end > int(self.position["lsn"]):
                            # all of ours up to wal_end is in hand: store that position so
                            # the slot can advance without being confirmed past the store
                            self.position["lsn"] = cur.wal_end
                        # a brief lull between transactions is not a reason to write:
                        # fixed costs per write dominate when they come every few ms
                        due = [n for n, at in self._recreated.items() if cur.wal_end >= at]
                        if due:
                            self._take_over(due)
                        due = [n for n, at in self._unannounced.items() if cur.wal_end >= at]
                        if due:
                            for n in due:
                                del self._unannounced[n]
                            self._add_tables(due)
                        done = target is not None and cur.wal_end >= target
                        if done or self._due():
                            self._flush()
                        if done:
                            break
                        if time.monotonic() > next_scan:
                            next_scan = time.monotonic() + cfg.rescan_interval
                            if cfg.tables is None:
                                new = [
                                    t
                                    for t in self.cat.pk_tables()
                                    if t not in self.decoder.skip_before
                                    and t not in self._unannounced
                                ]
                                if new:
                                    self._found(new)
                            self._find_recreated()
                    elif self._due():
                        self._flush(tx)
                    cur.send_feedback(  # type: ignore[no-untyped-call]
                        reply=target is not None
                    )
                    select.select([cur], [], [], 0.05 if target is not None else 0.2)
                    continue
                m = po.parse(msg.payload, stream_xid is not None)
                if stream_xid is not None and not isinstance(m, po.StreamStop | po.Ignored):
                    spill.append(stream_xid, msg.payload)
                    continue
                if isinstance(m, po.Begin):
                    tx = _Tx(m.final_lsn, m.commit_us, m.xid)
                    if m.final_lsn < self.confirmed:
                        tx.seq = -(2**62)  # resent transaction the store already holds
                elif isinstance(m, po.Commit):
                    self._commit(tx, m.end_lsn)
                    tx = None
                elif isinstance(m, po.Relation):
                    self.decoder.relation(m)
                elif isinstance(m, po.Insert | po.Update | po.Delete | po.Truncate):
                    assert tx is not None
                    self._row(m, tx)
                elif isinstance(m, po.LogicalMessage):
                    if tx is not None:
                        self._announced(m, tx)
                elif isinstance(m, po.StreamStart):
                    stream_xid = m.xid
                elif isinstance(m, po.StreamStop):
                    stream_xid = None
                elif isinstance(m, po.StreamAbort):
                    spill.abort(m.xid, m.subxid)
                elif isinstance(m, po.StreamCommit):
                    self._replay(spill, m)
                if len(self.pending) >= cfg.batch_size or (tx is None and self._due()):
                    self._flush(tx)
            self._flush(tx)
        finally:
            spill.close()
            self._cur = None
            cur.connection.close()
            self.conn.close()
        return self.status

    def _row(
        self,
        m: po.Insert | po.Update | po.Delete | po.Truncate,
        tx: _Tx,
        overlay: dict[int, TableSchema] | None = None,
    ) -> None:
        if tx.seq < 0:
            return
        changes = self.decoder.changes(m, tx.lsn, tx.commit_us, tx.xid, tx.seq, overlay)
        if not changes:
            return
        tx.seq = changes[-1].seq
        partial = self.position.get("partial")
        if partial and partial[0] == tx.lsn:
            changes = [c for c in changes if c.seq > partial[1]]
        self.pending.extend(changes)

    def _commit(self, tx: _Tx | None, end_lsn: int) -> None:
        if tx is not None and tx.seq > 0:
            self.status.transactions += 1
        self.position["lsn"] = max(int(self.position["lsn"]), end_lsn)
        self.position["partial"] = None

    def _replay(self, spill: Spill, m: po.StreamCommit) -> None:
        """A streamed transaction committed: run its spilled messages through as one tx."""
        tx = _Tx(m.commit_lsn, m.commit_us, m.xid)
        if m.commit_lsn < self.confirmed:
            tx.seq = -(2**62)
        overlay: dict[int, TableSchema] = {}
        for payload in spill.replay(m.xid):
            msg = po.parse(payload, True)
            if isinstance(msg, po.Relation):
                self.decoder.relation(msg, into=overlay)
            elif isinstance(msg, po.Insert | po.Update | po.Delete | po.Truncate):
                self._row(msg, tx, overlay)
                if len(self.pending) >= self.cfg.batch_size:
                    self._flush(tx)
            elif isinstance(msg, po.LogicalMessage):
                self._announced(msg, tx)
        # pgoutput now counts these relations as sent and will not repeat them
        self.decoder.relations.update(overlay)
        self._commit(tx, m.end_lsn)

    def _due(self) -> bool:
        """Whether it is time to write. A write has a fixed cost (a dozen DuckDB statements
        per table, ~50 ms each under load on a small machine) that barely grows with its
        rows, so writing every 0.25 s can take most of a core and fall behind. Spacing
        writes at least three times their own duration keeps capture below a third of
        its time writing, and within ``max_flush_interval`` of the source."""
        interval = min(self.cfg.max_flush_interval, max(self.cfg.flush_interval, 3 * self._write_s))
        return time.monotonic() - self._last_flush > interval

    def _flush(self, tx: _Tx | None = None) -> None:
        """Write pending changes and the position; only then confirm it upstream."""
        self._last_flush = started = time.monotonic()
        if tx is not None and self.pending and self.pending[-1].lsn == tx.lsn:
            self.position["partial"] = [tx.lsn, self.pending[-1].seq]
        if not self.pending and int(self.position["lsn"]) <= self.confirmed:
            return
        stats = self.store.write(
            self.pending, self.cfg.source, self.position, reverting=self._reverting
        )
        if self.pending:
            self._write_s = 0.7 * self._write_s + 0.3 * (time.monotonic() - started)
        # an open revert's later changes, in the next write, are labelled too
        self._reverting = {}
        if tx is not None and tx.reversion is not None:
            self._reverting[tx.xid] = tx.reversion
        self.status.changes += len(self.pending)
        self.status.gaps += stats.gaps
        self.status.gap_examples.extend(stats.gap_examples[: 10 - len(self.status.gap_examples)])
        if self.pending:
            self.status.lag_s = max(0.0, time.time() - self.pending[-1].commit_us / 1e6)
        self.pending = []
        self.confirmed = max(self.confirmed, int(self.position["lsn"]))
        self._keepalive()
        self.status.lsn = self.confirmed
        self.progress(self.status)
