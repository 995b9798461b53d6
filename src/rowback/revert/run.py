"""One ``rowback revert``, from the selection to the record: check the shadow is caught
up, plan, then preview, export or apply, and record the reversion and its outcome in the
store. The CLI and the API only parse and print."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rowback.errors import BadParameter, RowbackError
from rowback.filters import Filter
from rowback.model import Text
from rowback.revert import DEFAULT_MAX_ROWS, prepare
from rowback.revert import apply as ra
from rowback.revert import sql as rsql
from rowback.revert.plan import Mode, Plan
from rowback.revert.rows import select_rows
from rowback.store.base import Reader, Reversion, Store
from rowback.when import Point, point_text


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
    since: Point | None = None
    """With ``until`` and ``table``: every transaction in a window (of one table)."""
    until: Point | None = None
    table: str | None = None
    disable_triggers: bool = False
    """Triggers on the target do not fire (the role must be allowed to)."""
    to: Point | None = None
    """With ``table`` and ``key`` or ``where``: bring those rows back to this point
    (every change to them after it is reverted)."""
    key: Sequence[str] = ()
    """One row of ``table``, by its key values (as ``rowback history --key``)."""
    where: Sequence[Filter] = ()
    """The rows of ``table`` that matched these (all of them) at ``to`` (or ``since``),
    and those inserted after it that matched them as inserted."""
    incident: int | None = None
    """Revert this incident's transactions; the incident is marked reverted once applied."""


@dataclass(frozen=True)
class Selection:
    """What a request selects: the transactions, their source, the tables to revert
    them in (None: all) and, per table, the rows to revert (None: every row)."""

    txids: list[int]
    source: str | None
    tables: set[str] | None = None
    keys: dict[str, set[tuple[Text, ...]]] | None = None


class Refused(RowbackError):
    """A ``nocascade`` revert that conflicts: recorded as reversion ``rid``, nothing written."""

    def __init__(self, message: str, rid: int, conflicts: list[str]) -> None:
        super().__init__(message)
        self.rid, self.conflicts = rid, conflicts


@dataclass
class Outcome:
    """What came of an applied revert."""

    id: int
    plan: Plan
    applied: ra.Applied


def resolve_started(store: Store, target: str, reader: Reader | None = None) -> list[Reversion]:
    """Reversions left ``started`` (the reverting process died mid-apply) get their
    outcome from the target's record of their transaction: applied (it committed) or
    failed (it never did, so PostgreSQL is untouched). Returns those resolved.
    ``reader``: where to list them (a snapshot, in the service), else ``store``."""
    out = []
    for r in (reader or store).reversions():
        if r.status != "started":
            continue
        state = ra.outcome(target, r.txid) if r.txid is not None else "aborted"
        if state == "committed":
            store.update_reversion(r.id, "applied")
        elif state in ("aborted", None):
            store.update_reversion(r.id, "failed", rows=0)
        else:
            continue
        out.append(r)
    return out


def selection(reader: Reader, req: Request) -> Selection:
    """The transactions to revert and the tables (and rows) to revert them in: the
    given txids, a window's, a row selection's (``key``/``where``, after ``to`` or in a
    window), or the transaction of the reversion to undo (which must have been
    applied)."""
    window = req.since is not None or req.until is not None
    rows = bool(req.key) or bool(req.where)
    given = sum(
        [
            bool(req.txids),
            req.undo is not None,
            window or req.to is not None,
            req.incident is not None,
        ]
    )
    if given > 1:
        raise BadParameter(
            "--txid", "give one of --txid, --since/--until, --to, --reversion or --incident"
        )
    if req.incident is not None:
        return _incident(reader, req.incident)
    if window and req.to is not None:
        raise BadParameter("--to", "give --to or --since/--until, not both")
    if rows or req.to is not None:
        return _rows(reader, req)
    if window:
        return _window(reader, req)
    if req.table is not None:
        raise BadParameter("--table", "--table goes with --since/--until, --key or --where")
    if req.undo is None:
        if not req.txids:
            raise RowbackError(
                "say what to revert: --txid X (repeatable), --since/--until, "
                "--table T --key K --to WHEN, or --reversion ID"
            )
        return Selection(list(req.txids), req.source)
    found = [r for r in reader.reversions() if r.id == req.undo]
    if not found:
        raise RowbackError(f"reversion {req.undo} is not in the store (see `rowback reversions`)")
    r = found[0]
    if r.status != "applied" or r.txid is None:
        raise RowbackError(f"reversion {r.id} is {r.status}: only an applied one can be undone")
    return Selection([r.txid], r.selection.get("source"))


def _incident(reader: Reader, iid: int) -> Selection:
    """An incident's transactions (detection's selection), if it can still be reverted."""
    found = [i for i in reader.incidents() if i.id == iid]
    if not found:
        raise RowbackError(f"incident {iid} is not in the store (see `rowback incidents`)")
    inc = found[0]
    if inc.status not in ("open", "pending_confirmation", "reverting"):
        raise RowbackError(f"incident {iid} is {inc.status}: only an open one can be reverted")
    return Selection(list(inc.txids), inc.source)


def _rows(reader: Reader, req: Request) -> Selection:
    """``--table T --key K`` or ``--where F``, ``--to WHEN`` (or in a window): the rows
    chosen, and the transactions that changed them after the point."""
    if req.key and req.where:
        raise BadParameter("--key", "give --key or --where, not both")
    if not (req.key or req.where):
        raise BadParameter("--to", "--to goes with --table T and --key K or --where F")
    lower = req.to if req.to is not None else req.since
    if req.table is None or lower is None:
        flag = "--key" if req.key else "--where"
        raise BadParameter(flag, f"{flag} needs --table T and --to WHEN")
    got = select_rows(reader, req.table, req.key, req.where, lower, req.until)
    return Selection(got.txids, req.source or got.source, {got.table}, {got.table: got.keys})


def _window(reader: Reader, req: Request) -> Selection:
    """Every transaction that changed rows (of ``req.table``) in (since, until]; the
    initial snapshot is never one of them."""
    got = reader.changes(req.table, req.since, req.until)
    idx = {c: i for i, c in enumerate(got.columns)}
    txids: dict[int, None] = {}
    tables: set[str] = set()
    for r in got.rows:
        if r[idx["op"]] == "snapshot":
            continue
        txids[int(str(r[idx["txid"]]))] = None
        tables.add(str(r[idx["table"]]))
    if not txids:
        shown = " ".join(
            f"--{n} {point_text(p)}" for n, p in (("since", req.since), ("until", req.until)) if p
        )
        raise RowbackError(f"nothing to revert: no change {shown}".rstrip())
    return Selection(list(txids), req.source, tables if req.table is not None else None)


def shadow_lsn(reader: Reader, source: str | None) -> int:
    """How far the shadow holds ``source`` (the only one, when not given)."""
    known = [x.name for x in reader.sources() if x.position is not None]
    name = source or (known[0] if len(known) == 1 else "postgres")
    state = next((x for x in reader.sources() if x.name == name), None)
    if state is None or state.position is None:
        raise RowbackError(f"the store holds no position of source {name!r}")
    return int(state.position["lsn"])


def shadow_identity(reader: Reader, source: str | None) -> dict[str, str] | None:
    """The cluster and database capture recorded for ``source`` (None: not recorded)."""
    known = [x for x in reader.sources() if x.position is not None]
    name = source or (known[0].name if len(known) == 1 else "postgres")
    state = next((x for x in known if x.name == name), None)
    got = (state.position or {}).get("identity") if state is not None else None
    return dict(got) if isinstance(got, dict) else None


def plan_for(reader: Reader, req: Request, caught_up: bool = False) -> Plan:
    """Check the shadow holds all the target committed (when a target is given, unless
    the caller has waited for that: ``caught_up``), then plan."""
    sel = selection(reader, req)
    if req.target is not None and not caught_up:
        ra.check_caught_up(
            req.target,
            shadow_lsn(reader, sel.source),
            req.slot,
            req.publication,
            shadow_identity(reader, sel.source),
        )
    return prepare(reader, sel.txids, req.mode, sel.source, req.max_rows, sel.tables, sel.keys)


def write_sql(
    plan: Plan, path: Path, target: str | None = None, disable_triggers: bool = False
) -> None:
    """The reverse SQL for a person to review (``psql -v ON_ERROR_STOP=1 -f``); with a
    target, its statements follow the target's foreign keys and generated columns."""
    with path.open("w") as out:
        out.writelines(sql_script(plan, target, disable_triggers))


def sql_script(plan: Plan, target: str | None = None, disable_triggers: bool = False) -> list[str]:
    """The lines of :func:`write_sql`'s file (the API answers with them)."""
    import secrets

    catalog = ra.target_catalog(target) if target is not None else rsql.NO_CATALOG
    return list(rsql.script(plan, f"sql-{secrets.token_hex(4)}", catalog, disable_triggers))


def apply_recorded(
    store: Store,
    req: Request,
    plan: Plan,
    between: Callable[[], None] | None = None,
    who: str | None = None,
) -> Outcome:
    """Apply ``plan`` to the target and record it: ``refused`` (nocascade with conflicts,
    nothing written), else ``started`` before the target is touched, then ``applied``
    or ``failed``; an undo marks the reversion it undid ``undone``. ``who``: for the
    record (the OS user when not given; the API gives its token's holder)."""
    if req.target is None:
        raise RowbackError("give --target DSN: the store does not record the source's DSN")
    record = Reversion(
        id=0,
        created_at=None,
        who=who or getpass.getuser(),
        reason=req.reason,
        selection={
            "txids": list(plan.txids),
            "source": req.source,
            "reversion": req.undo,
            **({"incident": req.incident} if req.incident is not None else {}),
            **({"since": point_text(req.since)} if req.since else {}),
            **({"until": point_text(req.until)} if req.until else {}),
            **({"table": req.table} if req.table else {}),
            **({"key": list(req.key)} if req.key else {}),
            **({"where": [filter_doc(f) for f in req.where]} if req.where else {}),
            **({"to": point_text(req.to)} if req.to else {}),
            **({"pulled": {str(t): w for t, w in plan.pulled.items()}} if plan.pulled else {}),
        },
        mode=req.mode.value,
        status="refused" if plan.refused else "started",
        rows=0 if plan.refused else None,
        undoes=req.undo,
        plan={"rows": plan.n_writes, "conflicts": [c.line() for c in plan.conflicts]},
    )
    rid = store.record_reversion(record)
    if plan.refused:
        raise Refused(
            f"refused: {len(plan.conflicts)} conflict(s) in --mode nocascade; nothing was "
            f"written (reversion {rid}; --mode nonconflict reverts the rest, force overwrites)",
            rid,
            conflict_lines(plan),
        )
    try:
        done = ra.apply(
            plan,
            req.target,
            str(rid),
            between=between,
            disable_triggers=req.disable_triggers,
            started=lambda txid: store.update_reversion(rid, "started", txid=txid),
        )
    except BaseException:
        store.update_reversion(rid, "failed", rows=0)
        raise
    store.update_reversion(rid, "applied", done.rows, done.txid)
    if req.undo is not None:
        store.update_reversion(req.undo, "undone")
    if req.incident is not None:
        store.update_incident(req.incident, "reverted", reason=req.reason, reversion=rid)
    return Outcome(rid, plan, done)


def filter_doc(f: Filter) -> dict[str, object]:
    """A filter as the API body and the record hold it: ``{column, op, value}``."""
    value = list(f.value) if isinstance(f.value, tuple) else f.value
    return {"column": f.column, "op": f.op.value, "value": value}


def pulled_lines(plan: Plan) -> list[str]:
    """cascade: one line per transaction it added, and the conflict that added it."""
    return [f"tx {t} reverted too (cascade), for: {why}" for t, why in plan.pulled.items()]


def conflict_lines(plan: Plan) -> list[str]:
    """Each conflict as one line naming its row (by its key columns) and its writers."""
    out = []
    for c in plan.conflicts:
        out.append(c.line(plan.tables.get(c.table, ())))
    return out
