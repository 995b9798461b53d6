"""Reverting transactions: undo exactly the cells they wrote, keep every later edit.

``plan`` is pure (versions in, a plan out), ``sql`` writes the guarded reverse SQL,
``apply`` runs it against PostgreSQL. :func:`prepare` ties the store to the planner.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace

from rowback.errors import RowbackError
from rowback.model import Text
from rowback.revert.plan import Action, Mode, Plan, RowPlan, plan
from rowback.store.base import Reader, TableVersions

__all__ = ["Action", "Mode", "Plan", "plan", "prepare", "plan_rows", "PLAN_COLUMNS"]

DEFAULT_MAX_ROWS = 100_000


def prepare(
    reader: Reader,
    txids: Sequence[int],
    mode: Mode = Mode.nocascade,
    source: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    tables: set[str] | None = None,
    keys: Keys | None = None,
) -> Plan:
    """The plan reverting ``txids`` (only their changes to ``tables``, and of those only
    to the rows ``keys`` names per table, when given), from the versions ``reader``
    holds; one-line errors for an unknown txid, a selection with nothing to revert, or
    too many rows."""
    if not txids:
        raise RowbackError("say what to revert: --txid X (repeatable)")
    got = (
        _cascade(reader, txids, source, tables, keys, max_rows)
        if mode is Mode.cascade
        else plan(_versions(reader, txids, source, tables, keys), txids, mode, max_rows)
    )
    if not got.rows:
        shown = ", ".join(str(x) for x in txids)
        raise RowbackError(f"nothing to revert: tx {shown} left no row to change")
    if got.n_writes > max_rows:
        got.rows.close()
        raise RowbackError(
            f"the revert would change more than --max-rows {max_rows} rows "
            "(planning stopped there; raise --max-rows to plan it all)"
        )
    return got


CASCADE_ROUNDS = 50
"""Rounds of pulling in later writers before a cascade gives up (each round re-plans)."""


Keys = Mapping[str, set[tuple[Text, ...]]]
"""Per table, the rows (by key text, as ``touched_versions`` gives it) to revert."""


CHUNK_ROWS = 50_000
"""Rows whose versions are read from the store at a time while planning."""


def _versions(
    reader: Reader,
    txids: Sequence[int],
    source: str | None,
    tables: set[str] | None,
    keys: Keys | None = None,
) -> Iterator[TableVersions]:
    """The versions to plan from, a chunk of rows at a time (bounded memory)."""
    for t in reader.touched_versions(txids, source, CHUNK_ROWS):
        if tables is not None and t.table not in tables:
            continue
        if keys is not None:
            t = replace(t, rows=tuple(r for r in t.rows if r.key in keys.get(t.table, ())))
        if t.rows:
            yield t


def _cascade(
    reader: Reader,
    txids: Sequence[int],
    source: str | None,
    tables: set[str] | None,
    keys: Keys | None = None,
    max_rows: int | None = None,
) -> Plan:
    """Grow the selection by the writers of every conflict until none is left: their own
    later writers come in on the next round (transitively). Each added transaction is
    reverted whole, in every table, as the ones selected (only in ``tables`` and the
    rows ``keys`` names, when given)."""
    selected = list(dict.fromkeys(int(x) for x in txids))
    pulled: dict[int, str] = {}
    for _ in range(CASCADE_ROUNDS):
        got = plan(
            _versions(reader, selected, source, tables, keys), selected, Mode.cascade, max_rows
        )
        new: dict[int, str] = {}
        for c in got.conflicts:
            for t in c.txids:
                if t not in pulled and t not in selected:
                    new.setdefault(t, c.line(got.tables.get(c.table, ())))
        if not new or (max_rows is not None and got.n_writes > max_rows):
            got.pulled = pulled
            return got
        got.rows.close()
        pulled.update(new)
        selected += list(new)
    raise RowbackError(
        f"--mode cascade did not settle after {CASCADE_ROUNDS} rounds "
        f"({len(selected)} transactions pulled in): revert a window (--since) instead"
    )


PLAN_COLUMNS = ["table", "key", "action", "column", "current", "expected", "target", "note"]

Live = Mapping[tuple[str, tuple[Text, ...]], Mapping[str, Text] | None]
LIVE_CHUNK = 5_000
"""Rows whose current values are asked of the target at a time (dry run)."""


def plan_rows(
    p: Plan, live: Callable[[list[RowPlan]], Live] | None = None
) -> Iterator[tuple[object, ...]]:
    """The plan as rows for output, one per cell: ``current`` is what the target holds
    now (``live`` reads it for a chunk of rows; absent without a target), ``expected``
    what the shadow holds and the guard, ``target`` what the revert writes; a row's
    conflicts on its first line."""
    rows = iter(p.rows)
    while chunk := list(itertools.islice(rows, LIVE_CHUNK)):
        now_of = live(chunk) if live is not None else None
        for r in chunk:
            yield from _cell_rows(r, now_of)


def _cell_rows(r: RowPlan, live: Live | None) -> Iterator[tuple[object, ...]]:
    """One row's lines of the plan (``plan_rows``)."""
    key = dict(zip(r.key_columns, r.key, strict=True))
    now = live.get((r.table, r.key)) if live is not None else None
    notes = [f"{c.what} by tx {', '.join(map(str, c.txids))}" for c in r.conflicts if not c.column]
    notes += [f"{c}: dropped since, cannot be restored" for c in r.dropped]
    if live is not None and now is None and r.action is not Action.insert:
        notes.append("no such row in the target now")
    for i, c in enumerate(r.cells or [None]):
        note = list(notes) if i == 0 else []
        if c is None:
            yield (
                r.table,
                key,
                r.action.value,
                None,
                None,
                None,
                None,
                "; ".join(note) or None,
            )
            continue
        if c.writers:
            verb = "overwritten" if c.written else "kept"
            note.append(f"written later by tx {', '.join(map(str, c.writers))} ({verb})")
        action = r.action.value if c.written else "keep"
        current = now.get(c.column) if now is not None else None
        yield (
            r.table,
            key,
            action,
            c.column,
            current,
            c.expected,
            c.target,
            "; ".join(note) or None,
        )
