"""Reverting over HTTP: ``POST /api/v1/reversions`` plans (``dry_run``), exports (``sql``)
or applies a revert, ``GET /api/v1/reversions`` lists the record.

The plan is read from a snapshot, apart from capture's writer; the record is written
through the service's store, whose writer lock capture's writes take too. One revert
runs at a time: two applied at once would race for the same rows' guards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from rowback.api.context import ServiceContext
from rowback.api.problems import MEDIA, Problem
from rowback.api.read import AcceptH, FormatQ, WidthQ, answer
from rowback.errors import BadParameter, NotFound, RowbackError
from rowback.filters import Op as FilterOp
from rowback.filters import from_parts
from rowback.render import iter_text
from rowback.revert import DEFAULT_MAX_ROWS, PLAN_COLUMNS, plan_rows
from rowback.revert import apply as ra
from rowback.revert import run as rr
from rowback.revert.plan import Mode, Plan
from rowback.store.base import Reader
from rowback.views import REVERSION_COLUMNS, reversions_result
from rowback.when import WhenError, parse_when

router = APIRouter(prefix="/api/v1", tags=["revert"])

API_WHO = "api"
"""Who a reversion asked over HTTP is recorded as: the token's holder (one token, until
roles arrive)."""

CATCH_UP_S = 30.0
"""How long a revert waits for capture to store what the target had committed when it
was asked, before it says how far behind the shadow is."""


class FilterBody(BaseModel):
    """One condition on a row: ``column op value`` (``value``: a list for ``in``, none
    for ``isnull``/``notnull``), as ``filter=column:op:value`` of the read routes."""

    model_config = ConfigDict(extra="forbid")

    column: str
    op: FilterOp
    value: str | list[str] | None = None


class RevertBody(BaseModel):
    """What to revert and how: ``txids``, a reversion to undo, a window, or rows of one
    table (``key`` or ``where``) brought back to a point (``to``)."""

    model_config = ConfigDict(extra="forbid")

    txids: list[int] = Field(default_factory=list, description="Transactions to revert.")
    reversion: int | None = Field(None, description="Undo this reversion (its id).")
    incident: int | None = Field(None, description="Revert this incident's transactions.")
    since: str | None = Field(None, description="Every transaction after this point.")
    until: str | None = Field(None, description="...up to this point (inclusive).")
    table: str | None = Field(
        None, description="With since/until: only this table; with key or where: its rows."
    )
    key: list[str] = Field(
        default_factory=list, description="With table and to: one row, by its key value(s)."
    )
    where: list[FilterBody] = Field(
        default_factory=list,
        description="With table and to: the rows that matched all of these at to (and rows "
        "inserted after it that matched them as inserted).",
    )
    to: str | None = Field(
        None, description="With table and key or where: bring those rows back to this point."
    )
    source: str | None = Field(None, description="The source the txids are of.")
    mode: Mode = Mode.nocascade
    target: str | None = Field(None, description="DSN of the database to revert.")
    reason: str | None = Field(None, description="Why, for the record.")
    max_rows: int = Field(DEFAULT_MAX_ROWS, ge=1, description="Refuse a revert of more rows.")
    disable_triggers: bool = False
    dry_run: bool = Field(False, description="Answer with the plan; write nothing.")
    sql: bool = Field(False, description="Answer with the reverse SQL; apply nothing.")
    slot: str = Field("rowback", description="Capture's replication slot (in the target).")
    publication: str = "rowback"


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def _point(name: str, text: str | None) -> Any:
    try:
        return parse_when(text) if text is not None else None
    except WhenError as e:
        raise BadParameter(name, str(e)) from None


def _request(body: RevertBody) -> rr.Request:
    return rr.Request(
        txids=body.txids,
        undo=body.reversion,
        incident=body.incident,
        mode=body.mode,
        target=body.target,
        source=body.source,
        max_rows=body.max_rows,
        reason=body.reason,
        slot=body.slot,
        publication=body.publication,
        since=_point("since", body.since),
        until=_point("until", body.until),
        table=body.table,
        disable_triggers=body.disable_triggers,
        to=_point("to", body.to),
        key=body.key,
        where=[from_parts(f.column, f.op, f.value, "where") for f in body.where],
    )


@contextmanager
def _reading(ctx: ServiceContext) -> Iterator[Reader]:
    """A snapshot's reader, holding one of the read slots until the block ends."""
    if not ctx.slots.acquire(timeout=ctx.query_limit):
        raise Problem(
            503, "Busy", "every read slot stayed busy; try again", headers={"Retry-After": "1"}
        )
    try:
        snap = ctx.snapshot()
        try:
            yield snap.reader
        except duckdb.InterruptException:
            raise Problem(
                503,
                "Query time limit",
                f"planning ran past its time limit of {ctx.query_limit:g} s and was stopped",
            ) from None
        finally:
            snap.close()
    finally:
        ctx.slots.release()


def _json_rows(columns: list[str], rows: Any, types: dict[str, str]) -> list[Any]:
    """Rows as the objects the CLI's ``--format json`` prints, one per line."""
    return [
        orjson.loads(line) for line in "".join(iter_text("json", columns, rows, types)).splitlines()
    ]


def _plan(ctx: ServiceContext, req: rr.Request) -> Plan:
    """Plan once the shadow holds what the target had committed when asked (capture is
    running beside us, so wait for it rather than peek its busy slot)."""
    if req.target is None:
        with _reading(ctx) as reader:
            return rr.plan_for(reader, req)
    with _reading(ctx) as reader:
        identity = rr.shadow_identity(reader, rr.selection(reader, req).source)
    wanted = ra.committed_lsn(req.target, req.slot, identity)
    deadline = time.monotonic() + CATCH_UP_S
    while True:
        with _reading(ctx) as reader:
            source = rr.selection(reader, req).source
            held = rr.shadow_lsn(reader, source)
            if held >= wanted:
                return rr.plan_for(reader, req, caught_up=True)
        if time.monotonic() > deadline:
            raise RowbackError(
                f"the shadow is {wanted - held} bytes of WAL behind the target after "
                f"{CATCH_UP_S:g} s (is capture streaming? see /api/v1/status)"
            )
        time.sleep(0.1)


def _refused(e: rr.Refused, request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "type": "about:blank",
            "title": "Refused",
            "status": 409,
            "detail": str(e),
            "instance": request.url.path,
            "reversion": e.rid or None,  # none recorded for a refused sql export
            "conflicts": e.conflicts,
        },
        status_code=409,
        media_type=MEDIA,
    )


@router.post(
    "/reversions",
    summary="Revert transactions, preview the plan (dry_run) or export the SQL (sql)",
    status_code=201,
)
def post_reversion(request: Request, body: RevertBody) -> JSONResponse:
    ctx = _ctx(request)
    if body.target is None and not (body.dry_run or body.sql):
        detail = "give target (a DSN of the captured database), or dry_run or sql"
        raise Problem(422, "Missing target", detail, [{"name": "target", "reason": detail}])
    req = _request(body)
    if not ctx.reverting.acquire(timeout=ctx.query_limit):
        raise Problem(
            503, "Busy", "another revert is running; try again", headers={"Retry-After": "1"}
        )
    try:
        return _revert(ctx, req, body, request)
    except rr.Refused as e:
        return _refused(e, request)
    except (BadParameter, NotFound):
        raise
    except RowbackError as e:
        raise Problem(409, "Cannot revert", str(e)) from None
    finally:
        ctx.reverting.release()


def _revert(
    ctx: ServiceContext, req: rr.Request, body: RevertBody, request: Request
) -> JSONResponse:
    if req.target is not None and not (body.dry_run or body.sql):
        with _reading(ctx) as reader:
            rr.resolve_started(ctx.store, req.target, reader)
    plan = _plan(ctx, req)
    conflicts = rr.conflict_lines(plan)
    if body.dry_run:
        target = req.target
        live = (lambda rows: ra.live_values(target, rows)) if target is not None else None
        return JSONResponse(
            {
                "dry_run": True,
                "columns": PLAN_COLUMNS,
                "rows": _json_rows(PLAN_COLUMNS, plan_rows(plan, live), {"key": "row"}),
                "writes": plan.n_writes,
                "conflicts": conflicts,
                "pulled": rr.pulled_lines(plan),
                "refused": plan.refused,
            }
        )
    if body.sql:
        if plan.refused:
            raise rr.Refused(
                f"refused: {len(plan.conflicts)} conflict(s) in --mode nocascade; nothing "
                "was written (--mode nonconflict reverts the rest, force overwrites)",
                0,
                conflicts,
            )
        lines = rr.sql_script(plan, req.target, req.disable_triggers)
        return JSONResponse(
            {
                "sql": "".join(lines),
                "statements": plan.n_writes,
                "conflicts": conflicts,
                "pulled": rr.pulled_lines(plan),
            }
        )
    done = rr.apply_recorded(ctx.store, req, plan, who=API_WHO)
    with _reading(ctx) as reader:
        record = [r for r in reversions_result(reader).rows if r[0] == done.id]
    a = done.applied
    return JSONResponse(
        {
            "reversion": _json_rows(REVERSION_COLUMNS, record, {"selection": "row", "plan": "row"})[
                0
            ],
            "id": done.id,
            "mode": req.mode.value,
            "rows": a.rows,
            "missed": [m.describe() for m in a.missed],
            "notes": list(a.notes),
            "conflicts": conflicts,
            "pulled": rr.pulled_lines(plan),
            "txid": a.txid,
            "apply_s": round(a.seconds, 3),
        },
        status_code=201,
    )


@router.get("/reversions", summary="Every recorded reversion, oldest first")
def get_reversions(
    request: Request, format: FormatQ = None, width: WidthQ = None, accept: AcceptH = None
) -> StreamingResponse:
    return answer(request, format, width, accept, reversions_result)


class ResolveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = Field(description="DSN of the database the reversions were applied to.")


@router.post(
    "/reversions/resolve",
    summary="Settle reversions a crash left started, from the target's record",
)
def resolve_reversions(request: Request, body: ResolveBody) -> JSONResponse:
    ctx = _ctx(request)
    if not ctx.reverting.acquire(timeout=ctx.query_limit):
        raise Problem(
            503, "Busy", "another revert is running; try again", headers={"Retry-After": "1"}
        )
    try:
        with _reading(ctx) as reader:
            done = rr.resolve_started(ctx.store, body.target, reader)
    except (BadParameter, NotFound):
        raise
    except RowbackError as e:
        raise Problem(409, "Cannot resolve", str(e)) from None
    finally:
        ctx.reverting.release()
    return JSONResponse({"resolved": [r.id for r in done]})
