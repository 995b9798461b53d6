"""How the service is doing: ``/api/v1/status`` for operators, probes for supervisors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from rowback.api.output import Format
from rowback.api.read import FormatQ, WidthQ, _ctx, answer
from rowback.views import status_result, with_live

router = APIRouter(tags=["status"])


@router.get("/api/v1/status", summary="Per source: position, lag, WAL retained, tables, quarantine")
def status(
    request: Request,
    format: FormatQ = None,
    width: WidthQ = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    ctx = _ctx(request)
    docs = with_live(ctx.stored_status(), ctx.live())
    if format not in (None, Format.json):
        return answer(request, format, width, accept, lambda _: status_result(docs))
    body: dict[str, Any] = {"ready": ctx.ready(), "sources": docs}
    return JSONResponse(body)


@router.get("/healthz", summary="The service is up and its store answers")
def healthz(request: Request) -> JSONResponse:
    ctx = _ctx(request)
    try:
        snap = ctx.snapshot()
        snap.close()
    except Exception as e:  # noqa: BLE001 - a probe reports, it does not raise
        return JSONResponse({"status": "failing", "detail": str(e)}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Capture is streaming: answers include what the source confirmed")
def readyz(request: Request) -> JSONResponse:
    ready = _ctx(request).ready()
    return JSONResponse(
        {"status": "ready" if ready else "starting"}, status_code=200 if ready else 503
    )


__all__ = ["router", "StreamingResponse"]
