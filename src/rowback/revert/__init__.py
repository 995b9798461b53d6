"""Reverting transactions: undo exactly the cells they wrote, keep every later edit.

``plan`` is pure (versions in, a plan out), ``sql`` writes the guarded reverse SQL,
``apply`` runs it against PostgreSQL. :func:`prepare` ties the store to the planner.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from rowback.errors import RowbackError
from rowback.revert.plan import Action, Mode, Plan, plan
from rowback.store.base import Reader

__all__ = ["Action", "Mode", "Plan", "plan", "prepare", "plan_rows", "PLAN_COLUMNS"]

DEFAULT_MAX_ROWS = 100_000


def prepare(
    reader: Reader,
    txids: Sequence[int],
    mode: Mode = Mode.nocascade,
    source: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Plan:
    """The plan reverting ``txids``, from the versions ``reader`` holds; one-line errors
    for an unknown txid, a selection with nothing to revert, or too many rows."""
    if not txids:
        raise RowbackError("say what to revert: --txid X (repeatable)")
    got = plan(reader.touched_versions(txids, source), txids, mode)
    if not got.rows:
        shown = ", ".join(str(x) for x in txids)
        raise RowbackError(f"nothing to revert: tx {shown} left no row to change")
    if len(got.writes) > max_rows:
        raise RowbackError(
            f"the revert would change {len(got.writes)} rows, more than --max-rows {max_rows}"
        )
    return got


PLAN_COLUMNS = ["table", "key", "action", "column", "expected", "target", "conflict"]


def plan_rows(p: Plan) -> Iterator[tuple[object, ...]]:
    """The plan as rows for output: one per cell (a row's conflicts on its first line)."""
    for r in p.rows:
        key = dict(zip(r.key_columns, r.key, strict=True))
        notes = [c.what + " by tx " + ", ".join(map(str, c.txids)) for c in r.conflicts]
        notes += [f"{c}: dropped since, cannot be restored" for c in r.dropped]
        row_note = "; ".join(n for c, n in zip(r.conflicts, notes, strict=False) if not c.column)
        row_note = "; ".join([row_note] + notes[len(r.conflicts) :]).strip("; ")
        if r.action in (Action.insert, Action.delete) or not r.cells:
            first = True
            for c in r.cells or ():
                yield (
                    r.table,
                    key,
                    r.action.value,
                    c.column,
                    c.expected,
                    c.target,
                    row_note if first else None,
                )
                first = False
            if not r.cells:
                yield (r.table, key, r.action.value, None, None, None, row_note or None)
            continue
        for i, c in enumerate(r.cells):
            note = []
            if i == 0 and row_note:
                note.append(row_note)
            if c.writers:
                verb = "kept" if not c.written else "overwritten"
                note.append(f"written later by tx {', '.join(map(str, c.writers))} ({verb})")
            action = r.action.value if c.written else "keep"
            yield (r.table, key, action, c.column, c.expected, c.target, "; ".join(note) or None)
