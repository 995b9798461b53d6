"""The shadow store protocol: what capture writes to and time travel reads from.

A backend is one folder under ``rowback/store`` plus one line in ``registry.py``; the
contract suite in ``tests/contract`` runs every backend through the same tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from rowback.filters import Filter
from rowback.model import Change, ChangeBatch, Op, Quarantined, TableSchema, Text, WriteStats
from rowback.when import Point


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; callers and contract tests branch on these, not on types."""

    atomic_position: bool
    """Changes and the source position commit together, so a crash never duplicates."""
    differential: bool
    """Updates store only the columns that changed."""
    single_process: bool
    """Only one process may open the store while it is being written."""


class Image(dict[str, object]):
    """A row image (``before``, ``after``, a key, what a change wrote): each column's
    value as the store holds it, unrendered, with its rendering hint in ``types``.

    Values are typed where Python holds them exactly (int, float, Decimal, bytes, UUID,
    date and time) and PostgreSQL's text where it does not (unbounded numeric, arrays,
    json, intervals, BC or infinite dates), so a caller building SQL (a guarded revert's
    ``WHERE col = <expected>``) gets the exact value; ``render`` turns it into JSON only
    at the edge. Equality is the dict's: the hints do not take part.

    >>> Image({"id": 1, "tags": "{a,b}"}, {"tags": "pgarray"}).types
    {'tags': 'pgarray'}
    """

    __slots__ = ("types",)

    def __init__(
        self, values: Mapping[str, object] | None = None, types: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(values or {})
        self.types: dict[str, str] = dict(types) if types else {}

    def put(self, name: str, value: object, hint: str | None) -> None:
        """Set column ``name`` to ``value``, to be read as ``hint`` (None: by its type)."""
        self[name] = value
        if hint:
            self.types[name] = hint
        else:
            self.types.pop(name, None)


@dataclass
class Result:
    """Rows of a query, with hints (``json``, ``numeric``, ``bytea``, ``row``…) for
    rendering: values are as the store holds them (a ``row`` column holds an ``Image``)."""

    columns: list[str]
    rows: Iterable[Sequence[object]]
    types: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TableInfo:
    """A captured table as the store knows it."""

    source: str
    schema: str
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    versions: int
    live_rows: int
    current: TableSchema | None = None
    """The table's live version as the store holds it; columns in the source's order when
    each has its number (``Column.number``), which capture resumes from."""

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class SourceState:
    """What the store holds of one source."""

    name: str
    position: dict[str, Any] | None
    written_at: datetime | None
    """When the store last durably wrote this source's changes and position."""
    quarantined: int


@dataclass(frozen=True)
class Version:
    """One stored version of a row, as plain data for the revert planner: the columns it
    wrote (all of them for an insert or snapshot, none for a delete or TRUNCATE) as
    PostgreSQL text, exact for the reverse SQL's casts; ``alive``: the columns the
    table had then."""

    pos: int
    txid: int
    op: Op
    written: Mapping[str, Text]
    alive: tuple[str, ...]


@dataclass(frozen=True)
class RowVersions:
    """Every version of one row (by key text), oldest first."""

    key: tuple[Text, ...]
    versions: tuple[Version, ...]


@dataclass(frozen=True)
class TableVersions:
    """The rows of one table that some selected transactions touched, with their whole
    history; ``columns``: today's columns (name, PostgreSQL type), ``missing``: what rows
    older than an added column hold in it (``Column.missing``)."""

    source: str
    table: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    rows: tuple[RowVersions, ...]
    missing: Mapping[str, Text] = field(default_factory=dict)


@dataclass(frozen=True)
class Reversion:
    """One recorded revert: who (OS user), why (``--reason``), what (``selection``), how
    (``mode``), its outcome (``status``: started, applied, refused, failed, undone), the
    rows it changed, its transaction on the target, the reversion it undid, and a summary
    of its plan."""

    id: int
    created_at: datetime | None
    who: str
    reason: str | None
    selection: dict[str, Any]
    mode: str
    status: str
    rows: int | None = None
    txid: int | None = None
    undoes: int | None = None
    plan: dict[str, Any] = field(default_factory=dict)


@dataclass
class Incident:
    """A group of anomalous changes detection judged to be one bad statement, job or loop
    (``rowback.detect``), with what a person needs to decide: its kind and calibrated
    score, the severity of its impact, the policy's action and the incident's status
    (open, pending_confirmation, reverting, reverted, dismissed, expired). Times are
    commit times in µs since the epoch; ``detected_at`` is the commit time of the change
    that crossed the threshold, so a replay gives the same incidents."""

    id: int
    source: str
    kind: str
    tables: list[str]
    columns: list[str]
    score: float
    severity: str
    status: str
    action: str
    first_us: int
    last_us: int
    detected_us: int
    txids: list[int]
    rows_affected: int
    explanation: str
    detail: dict[str, Any] = field(default_factory=dict)
    """Signals with what is normal and what was seen, example keys, the decision."""
    reason: str | None = None
    """Why it was dismissed or approved."""
    reversion: int | None = None
    """The reversion that reverted it."""


class Observer(Protocol):
    """Watches every write inside its transaction (detection): what it returns commits
    with the changes, so a crash can neither lose nor repeat what it concluded."""

    def observe(
        self,
        changes: Sequence[Change],
        source: str,
        reverting: Mapping[int, str],
        partial: bool = False,
    ) -> list[Incident]:
        """Judge ``changes`` (just written, not yet committed; ``reverting``: the txids
        that are Rowback's own reverts, never judged; ``partial``: the write ends inside
        a transaction that the next write continues); the incidents opened or grown."""
        ...

    def state(self) -> bytes:
        """Everything learned so far, to persist with the write that commits."""
        ...

    def restore(self, state: bytes | None) -> None:
        """Go back to a persisted state (None: untrained): a write was rolled back."""
        ...

    def changed(self, incident: Incident) -> None:
        """A person or a revert moved ``incident`` on (dismissed: learn its pattern as
        normal; reverted: stop growing it)."""
        ...


class Reader(Protocol):
    """The read half of a store: what time travel, the CLI and the API ask."""

    def tables(self) -> list[TableInfo]: ...

    def asof(self, table: str, point: Point, where: Sequence[Filter] = ()) -> Result:
        """The whole table as it was at ``point``, narrowed by ``where`` (all must hold)."""
        ...

    def history(self, table: str, key: Sequence[str]) -> Result:
        """Every version of one row, oldest first, with before and after images."""
        ...

    def changes(
        self,
        table: str | None = None,
        since: Point | None = None,
        until: Point | None = None,
        txid: int | None = None,
    ) -> Result:
        """The change log, in commit order."""
        ...

    def tx(self, txid: int, source: str | None = None) -> Result:
        """Everything one transaction (of ``source``, when ids clash) did, with before and
        after images."""
        ...

    def quarantined(self, source: str | None = None) -> Result: ...

    def touched_versions(
        self, txids: Sequence[int], source: str | None = None, chunk_rows: int | None = None
    ) -> Iterator[TableVersions]:
        """The rows ``txids`` (of ``source``) wrote, each with its every version, for
        planning a revert; raises NotFound for a txid the store does not hold (before
        anything is read). With ``chunk_rows``, a table with more rows than that comes
        in several parts of about that many rows (each row whole in one part), so a
        revert of a million rows is planned in bounded memory; else one per table."""
        ...

    def sources(self) -> list[SourceState]: ...

    def reversions(self) -> list[Reversion]:
        """Every recorded reversion, oldest first."""
        ...

    def reversion_txids(self, source: str | None = None) -> dict[int, str]:
        """txid -> reversion id of the transactions that are Rowback's own reverts (of
        ``source``), which capture labelled: detection must never flag them."""
        ...

    def incidents(self) -> list[Incident]:
        """Every incident detection opened, oldest first."""
        ...

    def detector_state(self) -> bytes | None:
        """What detection has learned, as last committed (None: nothing yet)."""
        ...


class Snapshot(Protocol):
    """A reader on one committed state, apart from the writer (``Store.snapshot``)."""

    @property
    def reader(self) -> Reader: ...

    @property
    def expired(self) -> bool:
        """True once the time limit interrupted it."""
        ...

    def close(self) -> None: ...


class Store(Reader, Protocol):
    """A shadow store backend."""

    capabilities: Capabilities
    generation: int
    """Writes attempted so far in this process, counted once each has ended: an answer
    computed after reading the count is at least that fresh while it is unchanged."""

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
        """Apply ``changes`` in order and record ``position`` for ``source``, atomically.

        ``schemas`` registers table versions with no change yet; ``quarantine`` keeps
        undecodable inputs in the same transaction; ``replayed`` names quarantined inputs
        (by id) that ``changes`` were decoded from, removed in the same transaction;
        ``reverting`` labels transactions (txid -> reversion id) as Rowback's reverts.
        """
        ...

    def write_batch(
        self,
        batch: ChangeBatch | Sequence[ChangeBatch],
        source: str,
        position: Mapping[str, Any],
        *,
        commit: bool = True,
        reverting: Mapping[int, str] | None = None,
    ) -> WriteStats:
        """``write`` for changes decoded in columns; the same history, in bulk.

        ``commit=False`` may leave the transaction open for the next write (a bulk load
        commits every few batches); nothing of it is durable until a write commits. A
        backend without a bulk path writes ``batch.changes()`` and commits each time.
        Several batches (one per table of a block, each with its ``rows``) are one
        write: the same history as ``write`` of their changes in ``rows`` order.
        """
        ...

    def bulk_load(self) -> AbstractContextManager[None]:
        """Around a long load (a file ingest): the backend may tune itself for throughput
        within a fixed memory budget; a no-op where there is nothing to tune."""
        ...

    def position(self, source: str) -> dict[str, Any] | None:
        """The last position recorded for ``source`` (None before its first write)."""
        ...

    def reset_tables(self, source: str, tables: Iterable[str]) -> None:
        """Forget all history of these ``schema.table`` names (a snapshot is being redone)."""
        ...

    def quarantine(self, items: Sequence[Quarantined]) -> None:
        """Keep inputs that could not be turned into changes."""
        ...

    def snapshot(self, limit: float | None = None) -> Snapshot:
        """A reader apart from the writer on the last committed state; any thread may ask
        for one while another writes. ``limit``: seconds before its query is cut off."""
        ...

    def quarantined_items(
        self, source: str | None = None, ids: Sequence[int] | None = None
    ) -> list[Quarantined]:
        """Quarantined inputs with their exact bytes and ids, oldest first (a replay)."""
        ...

    def newest(self) -> tuple[int, int]:
        """The largest LSN and commit time (µs since the epoch) stored; (0, 0) if none.

        Time points resolve to the last position at or before them, so a change appended
        later must not be older than these (``sources.debezium.replay`` checks it)."""
        ...

    def record_reversion(self, reversion: Reversion) -> int:
        """Record a reversion (its ``id`` is given by the store); returns the id."""
        ...

    def update_reversion(
        self, rid: int, status: str, rows: int | None = None, txid: int | None = None
    ) -> None:
        """Record the outcome of reversion ``rid``."""
        ...

    observer: Observer | None
    """Detection, fed every write inside its transaction (None: not watching)."""

    def watch(self, observer: Observer | None) -> None:
        """Attach ``observer`` (restored to its persisted state) to every later write."""
        ...

    def judge_pending(self, source: str) -> None:
        """Let the observer judge what it held back (a replay's last transaction, which
        the next write might have continued): the stream has ended."""
        ...

    def update_incident(
        self,
        iid: int,
        status: str,
        reason: str | None = None,
        reversion: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Incident:
        """Move incident ``iid`` to ``status`` (``detail``: keys to set in its detail).
        A dismissal teaches the observer (when one watches) in the same transaction.
        Returns the incident as it now is."""
        ...

    def close(self) -> None: ...
