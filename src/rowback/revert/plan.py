"""Planning a revert: pure, from the versions of the rows the selected transactions wrote.

Each cell they wrote goes back to its value just before the first selected write to it.
Conflicts are judged cell by cell: a later write (by a transaction not selected) to a
cell they wrote is a conflict, and so is a later delete or re-insert of the row; a later
write to *other* columns is not, and survives (revert the delta, not the row). A row
they inserted is deleted (any later write to it is a conflict: deleting would lose it);
a row they deleted comes back with the values it had.
"""

from __future__ import annotations

import itertools
import pickle
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO

from rowback.model import Op, Text
from rowback.store.base import RowVersions, TableVersions, Version

Row = dict[str, Text]


class Mode(StrEnum):
    """What to do about conflicts."""

    nocascade = "nocascade"
    """Refuse the whole revert if anything conflicts, naming the rows and writers."""
    cascade = "cascade"
    """Also revert the transactions that wrote over the selection, transitively (the
    selection grows until nothing conflicts; ``Plan.pulled`` says who came in by whom)."""
    nonconflict = "nonconflict"
    """Revert the cells nobody wrote since; report the rest and leave them."""
    force = "force"
    """Overwrite later writes too, and say what was overwritten."""


class Action(StrEnum):
    update = "update"
    delete = "delete"
    insert = "insert"
    skip = "skip"
    """Nothing is written to this row (its conflicts keep it as it is)."""


@dataclass(frozen=True)
class Cell:
    """One cell of a row: ``expected`` is its value in the shadow's latest version, the
    guard of the statement that writes ``target``; ``writers``: later transactions (not
    selected) that wrote it after the selection did."""

    column: str
    type: str
    expected: Text
    target: Text
    writers: tuple[int, ...] = ()
    written: bool = True
    """False when the mode leaves this conflicting cell as it is."""


@dataclass(frozen=True)
class Conflict:
    """Something written after the selection that a revert would undo or cannot get by."""

    table: str
    key: tuple[Text, ...]
    column: str | None
    txids: tuple[int, ...]
    what: str

    def line(self, key_columns: Sequence[str] = ()) -> str:
        """One human line, e.g. ``public.p (id)=(3) price: written later by tx 812``."""
        names = f" ({', '.join(key_columns)})" if key_columns else ""
        shown = ", ".join("NULL" if k is None else k for k in self.key)
        col = f" {self.column}" if self.column else ""
        who = ", ".join(str(t) for t in self.txids)
        return f"{self.table}{names}=({shown}){col}: {self.what} by tx {who}"


@dataclass(frozen=True)
class RowPlan:
    """What the revert does to one row."""

    table: str
    key_columns: tuple[str, ...]
    key: tuple[Text, ...]
    key_types: tuple[str, ...]
    action: Action
    cells: tuple[Cell, ...]
    """update: the cells the selection wrote; insert: the row's values (``target``);
    delete: the row's current values (``expected``), the guard."""
    conflicts: tuple[Conflict, ...] = ()
    dropped: tuple[str, ...] = ()
    """Columns the selection wrote that were dropped since: they cannot be restored."""


SPILL_ROWS = 20_000
"""Row plans held in memory at most: past this, they go to a temporary file in chunks of
this many, so planning a million rows holds one chunk, not a million images."""


class PlanRows:
    """The rows of a plan in plan order, spilled to an unnamed temporary file past
    ``SPILL_ROWS``. Iterating reads the chunks back one at a time; :meth:`of` reads only
    the chunks that hold a given table and action (statements are written table by table
    along the foreign-key graph, a pass per table and action)."""

    def __init__(self, rows: Iterable[RowPlan] = (), spill: int | None = None) -> None:
        self._spill_at = spill or SPILL_ROWS
        self._mem: list[RowPlan] = []
        self._file: IO[bytes] | None = None
        self._chunks: list[tuple[int, int, frozenset[tuple[str, Action]]]] = []
        """(offset, length, the tables and actions in it) of each spilled chunk."""
        self._n = 0
        for r in rows:
            self.append(r)

    def append(self, row: RowPlan) -> None:
        self._mem.append(row)
        self._n += 1
        if len(self._mem) >= self._spill_at:
            self._write_chunk()

    def _write_chunk(self) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="rowback-plan-")
        data = pickle.dumps(self._mem, protocol=pickle.HIGHEST_PROTOCOL)
        offset = self._file.seek(0, 2)
        self._file.write(data)
        kinds = frozenset((r.table, r.action) for r in self._mem)
        self._chunks.append((offset, len(data), kinds))
        self._mem = []

    def _read(self, offset: int, length: int) -> list[RowPlan]:
        assert self._file is not None
        self._file.seek(offset)
        got: list[RowPlan] = pickle.loads(self._file.read(length))
        return got

    def __iter__(self) -> Iterator[RowPlan]:
        for offset, length, _ in self._chunks:
            yield from self._read(offset, length)
        yield from list(self._mem)

    def of(self, table: str, action: Action) -> Iterator[RowPlan]:
        """The rows of ``table`` with ``action``, in plan order."""
        want = (table, action)
        for offset, length, kinds in self._chunks:
            if want in kinds:
                yield from (r for r in self._read(offset, length) if (r.table, r.action) == want)
        yield from [r for r in self._mem if (r.table, r.action) == want]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> RowPlan:
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return next(itertools.islice(iter(self), i % self._n, None))

    def close(self) -> None:
        """Drop the spill file now (it goes anyway when the plan is collected)."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._chunks = []


@dataclass
class Plan:
    """A whole revert: per row, what to write; the conflicts; whether it is refused.
    Rows are added with :meth:`add`, which keeps the counts and conflicts the callers
    read without a pass over the rows (they may be on disk: :class:`PlanRows`)."""

    txids: tuple[int, ...]
    mode: Mode
    rows: PlanRows = field(default_factory=PlanRows)
    pulled: dict[int, str] = field(default_factory=dict)
    """cascade: each transaction added to the selection, and the conflict that added it."""
    conflicts: list[Conflict] = field(default_factory=list)
    n_writes: int = 0
    """Rows a statement is written for."""
    tables: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Each table with rows in the plan, and its key columns, in plan order."""
    actions: set[tuple[str, Action]] = field(default_factory=set)

    def add(self, row: RowPlan) -> None:
        self.rows.append(row)
        self.conflicts.extend(row.conflicts)
        self.n_writes += row.action is not Action.skip
        self.tables.setdefault(row.table, row.key_columns)
        self.actions.add((row.table, row.action))

    @property
    def refused(self) -> bool:
        """nocascade refuses a plan with any conflict."""
        return self.mode in (Mode.nocascade, Mode.cascade) and bool(self.conflicts)

    @property
    def writes(self) -> list[RowPlan]:
        """The rows a statement is written for, as a list: for small plans (tests); the
        rest use ``n_writes`` and iterate ``rows``."""
        return [r for r in self.rows if r.action is not Action.skip]


def plan(
    tables: Iterable[TableVersions],
    txids: Sequence[int],
    mode: Mode,
    max_writes: int | None = None,
) -> Plan:
    """The revert of ``txids`` over the versions the store gave (``touched_versions``,
    which may give a table in several chunks). Stops as soon as more than ``max_writes``
    rows would be written: the caller refuses such a plan, and need not finish it."""
    selected = frozenset(int(x) for x in txids)
    out = Plan(tuple(sorted(selected)), mode)
    for t in tables:
        types = dict(t.columns)
        for row in t.rows:
            got = plan_row(t, types, row, selected, mode)
            if got is not None:
                out.add(got)
                if max_writes is not None and out.n_writes > max_writes:
                    return out
    return out


def fold(state: Row | None, v: Version, missing: Mapping[str, Text]) -> Row | None:
    """The row after version ``v`` (``missing``: what columns added later read as)."""
    if v.op in (Op.DELETE, Op.TRUNCATE):
        return None
    if v.op in (Op.INSERT, Op.SNAPSHOT) or state is None:
        return {n: v.written.get(n) for n in v.alive}
    return {
        n: v.written[n] if n in v.written else state[n] if n in state else missing.get(n)
        for n in v.alive
    }


@dataclass
class _Walk:
    """What walking a row's versions from the first selected one found."""

    pre: Row | None
    current: Row | None
    targets: dict[str, Text] = field(default_factory=dict)
    writers: dict[str, list[int]] = field(default_factory=dict)
    row_conflicts: list[tuple[int, str]] = field(default_factory=list)


def _walk(row: RowVersions, selected: frozenset[int], missing: Mapping[str, Text]) -> _Walk | None:
    versions = row.versions
    first = next((i for i, v in enumerate(versions) if v.txid in selected), None)
    if first is None:
        return None
    state: Row | None = None
    for v in versions[:first]:
        state = fold(state, v, missing)
    walk = _Walk(pre=state, current=None)
    for v in versions[first:]:
        if v.txid in selected:
            if v.op in (Op.DELETE, Op.TRUNCATE, Op.INSERT, Op.SNAPSHOT):
                cols = list(v.alive) + [n for n in (state or {}) if n not in v.alive]
            else:
                cols = list(v.written)
            for c in cols:
                if c not in walk.targets:
                    walk.targets[c] = state.get(c, missing.get(c)) if state else None
        elif v.op in (Op.DELETE, Op.TRUNCATE):
            if state is not None:
                walk.row_conflicts.append((v.txid, "deleted later"))
        elif v.op in (Op.INSERT, Op.SNAPSHOT):
            walk.row_conflicts.append((v.txid, "inserted again later"))
        else:
            for c in v.written:
                if c in walk.targets:
                    walk.writers.setdefault(c, []).append(v.txid)
        state = fold(state, v, missing)
    walk.current = state
    return walk


def plan_row(
    t: TableVersions,
    types: Mapping[str, str],
    row: RowVersions,
    selected: frozenset[int],
    mode: Mode,
) -> RowPlan | None:
    """One row's part of the plan (None: the selection left nothing to undo in it)."""
    walk = _walk(row, selected, t.missing)
    if walk is None:
        return None
    pre, cur = walk.pre, walk.current
    key_types = tuple(types.get(k, "text") for k in t.key)

    def make(
        action: Action, cells: tuple[Cell, ...], conflicts: list[Conflict], dropped: tuple[str, ...]
    ) -> RowPlan:
        return RowPlan(t.table, t.key, row.key, key_types, action, cells, tuple(conflicts), dropped)

    def conflict(column: str | None, txids: Iterable[int], what: str) -> Conflict:
        return Conflict(t.table, row.key, column, tuple(dict.fromkeys(txids)), what)

    row_conflicts = [conflict(None, [x], what) for x, what in walk.row_conflicts]
    if pre is None and cur is None:
        # inserted and deleted again by the selection: nothing to undo, unless a later
        # writer deleted it (a conflict, reported, though the row is gone either way)
        return make(Action.skip, (), row_conflicts, ()) if row_conflicts else None
    if pre is None:
        assert cur is not None
        cells = tuple(Cell(n, types[n], cur.get(n), None) for n in types if n in cur)
        later = sorted({x for xs in walk.writers.values() for x in xs})
        if later:
            row_conflicts.append(conflict(None, later, "written later (deleting loses it)"))
        skip = bool(row_conflicts) and mode is not Mode.force
        action = Action.skip if skip else Action.delete
        return make(action, cells, row_conflicts, ())
    if cur is None:
        cells = tuple(Cell(n, types[n], None, pre[n]) for n in types if n in pre)
        skip = bool(row_conflicts) and mode is not Mode.force
        action = Action.skip if skip else Action.insert
        dropped = tuple(n for n in pre if n not in types)
        return make(action, cells, row_conflicts, dropped)
    conflicts = list(row_conflicts)
    out: list[Cell] = []
    for c, target in walk.targets.items():
        if c not in types or c in t.key:
            continue
        writers = tuple(dict.fromkeys(walk.writers.get(c, [])))
        expected = cur.get(c)
        if not writers and target == expected:
            continue  # it holds its old value already
        if writers:
            conflicts.append(conflict(c, writers, "written later"))
        keep = bool(writers or row_conflicts) and mode is not Mode.force
        out.append(Cell(c, types[c], expected, target, writers, written=not keep))
    dropped = tuple(c for c in walk.targets if c not in types)
    if not any(c.written for c in out):
        if not out and not conflicts:
            return None
        action = Action.skip
    else:
        action = Action.update
    return make(action, tuple(out), conflicts, dropped)
