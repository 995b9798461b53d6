"""Incidents over HTTP: ``GET /api/v1/incidents`` lists what detection opened,
``GET /api/v1/incidents/{id}`` shows one, ``POST …/approve`` reverts it and
``POST …/dismiss`` closes it as normal (detection then learns its pattern)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from rowback import incidents as ops
from rowback.api.problems import Problem
from rowback.api.read import AcceptH, FormatQ, WidthQ, answer
from rowback.api.revert import API_WHO, _ctx, _plan, _reading
from rowback.errors import NotFound, RowbackError
from rowback.revert import run as rr
from rowback.revert.plan import Mode
from rowback.views import incident_doc, incidents_result

router = APIRouter(prefix="/api/v1", tags=["incidents"])


@router.get("/incidents", summary="Every incident detection opened, oldest first")
def get_incidents(
    request: Request, format: FormatQ = None, width: WidthQ = None, accept: AcceptH = None
) -> StreamingResponse:
    return answer(request, format, width, accept, incidents_result)


@router.get("/incidents/{iid}", summary="One incident, with its signals and decision")
def get_incident(request: Request, iid: int) -> JSONResponse:
    ctx = _ctx(request)
    with _reading(ctx) as reader:
        return JSONResponse(incident_doc(reader, iid, ctx.source_dsn))


class DismissBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(description="Why this is not damage, for the record.")


@router.post("/incidents/{iid}/dismiss", summary="Close an incident as normal traffic")
def dismiss_incident(request: Request, iid: int, body: DismissBody) -> JSONResponse:
    ctx = _ctx(request)
    try:
        with _reading(ctx) as reader:
            done = ops.dismiss(ctx.store, iid, body.reason, reader)
    except NotFound:
        raise
    except RowbackError as e:
        raise Problem(409, "Cannot dismiss", str(e)) from None
    return JSONResponse({"id": done.id, "status": done.status, "reason": done.reason})


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Mode = Mode.nocascade
    target: str | None = Field(None, description="DSN [default: the service's source].")


@router.post("/incidents/{iid}/approve", summary="Revert an incident's transactions")
def approve_incident(request: Request, iid: int, body: ApproveBody) -> JSONResponse:
    ctx = _ctx(request)
    target = body.target or ctx.source_dsn
    if target is None:
        detail = "give target (a DSN): this service does not capture PostgreSQL"
        raise Problem(422, "Missing target", detail, [{"name": "target", "reason": detail}])
    if not ctx.reverting.acquire(timeout=ctx.query_limit):
        raise Problem(503, "Busy", "another revert is running", headers={"Retry-After": "1"})
    try:
        with _reading(ctx) as reader:
            inc = ops.find(reader, iid)
        done = ops.approve(
            ctx.store, inc, target, body.mode, API_WHO, plan=lambda req: _plan(ctx, req)
        )
    except rr.Refused as e:
        raise Problem(409, "Refused", str(e)) from None
    except NotFound:
        raise
    except RowbackError as e:
        raise Problem(409, "Cannot approve", str(e)) from None
    finally:
        ctx.reverting.release()
    return JSONResponse(
        {
            "id": iid,
            "status": done.incident.status,
            "reversion": done.outcome.id,
            "rows": done.outcome.applied.rows,
        }
    )
