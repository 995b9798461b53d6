"""One ``rowback revert``, from the selection to the record: check the shadow is caught
up, plan, then preview, export or apply, and record the reversion and its outcome in the
store. The CLI (and later the API) only parses and prints."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rowback.errors import BadParameter, RowbackError
from rowback.revert import DEFAULT_MAX_ROWS, prepare
from rowback.revert import apply as ra
from rowback.revert import sql as rsql
from rowback.revert.plan import Mode, Plan
from rowback.store.base import Reader, Reversion, Store


@dataclass(frozen=True)
class Request:
    """What to revert and how; ``undo``: the id of a reversion to undo instead of txids."""

    txids: Sequence[int] = ()
    undo: int | None = None
    mode: Mode = Mode.nocascade
    target: str | None = None
    source: str | None = None
    max_rows: int = DEFAULT_MAX_ROWS
    reason: str | None = None
    slot: str = "rowback"
    publication: str = "rowback"


@dataclass
class Outcome:
    """What came of an applied revert."""

    id: int
    plan: Plan
    applied: ra.Applied


def selection(reader: Reader, req: Request) -> tuple[list[int], str | None]:
    """The transactions to revert: the given ones, or the transaction of the reversion
    to undo (which must have been applied)."""
    if req.undo is None:
        if not req.txids:
            raise RowbackError("say what to revert: --txid X (repeatable) or --reversion ID")
        return list(req.txids), req.source
    if req.txids:
        raise BadParameter("--reversion", "give --txid or --reversion, not both")
    found = [r for r in reader.reversions() if r.id == req.undo]
    if not found:
        raise RowbackError(f"reversion {req.undo} is not in the store (see `rowback reversions`)")
    r = found[0]
    if r.status != "applied" or r.txid is None:
        raise RowbackError(f"reversion {r.id} is {r.status}: only an applied one can be undone")
    return [r.txid], r.selection.get("source")


def plan_for(reader: Reader, req: Request) -> Plan:
    """Check the shadow holds all the target committed (when a target is given), then plan."""
    txids, source = selection(reader, req)
    if req.target is not None:
        name = source or "postgres"
        state = next((x for x in reader.sources() if x.name == name), None)
        if state is None or state.position is None:
            raise RowbackError(f"the store holds no position of source {name!r}")
        ra.check_caught_up(req.target, int(state.position["lsn"]), req.slot, req.publication)
    return prepare(reader, txids, req.mode, source, req.max_rows)


def write_sql(plan: Plan, path: Path, target: str | None = None) -> None:
    """The reverse SQL for a person to review (``psql -v ON_ERROR_STOP=1 -f``); with a
    target, its statements follow the target's foreign keys and generated columns."""
    import secrets

    catalog = ra.target_catalog(target) if target is not None else rsql.NO_CATALOG
    with path.open("w") as out:
        out.writelines(rsql.script(plan, f"sql-{secrets.token_hex(4)}", catalog))


def apply_recorded(
    store: Store,
    req: Request,
    plan: Plan,
    between: Callable[[], None] | None = None,
) -> Outcome:
    """Apply ``plan`` to the target and record it: ``refused`` (nocascade with conflicts,
    nothing written), else ``started`` before the target is touched, then ``applied``
    or ``failed``; an undo marks the reversion it undid ``undone``."""
    if req.target is None:
        raise RowbackError("give --target DSN: the store does not record the source's DSN")
    record = Reversion(
        id=0,
        created_at=None,
        who=getpass.getuser(),
        reason=req.reason,
        selection={"txids": list(plan.txids), "source": req.source, "reversion": req.undo},
        mode=req.mode.value,
        status="refused" if plan.refused else "started",
        rows=0 if plan.refused else None,
        undoes=req.undo,
        plan={"rows": len(plan.writes), "conflicts": [c.line() for c in plan.conflicts]},
    )
    rid = store.record_reversion(record)
    if plan.refused:
        raise RowbackError(
            f"refused: {len(plan.conflicts)} conflict(s) in --mode nocascade; nothing was "
            f"written (reversion {rid}; --mode nonconflict reverts the rest, force overwrites)"
        )
    try:
        done = ra.apply(plan, req.target, str(rid), between=between)
    except BaseException:
        store.update_reversion(rid, "failed", rows=0)
        raise
    store.update_reversion(rid, "applied", done.rows, done.txid)
    if req.undo is not None:
        store.update_reversion(req.undo, "undone")
    return Outcome(rid, plan, done)
