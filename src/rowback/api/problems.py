"""RFC 9457 problem details: every error the API returns, as ``application/problem+json``.

A bad parameter names itself (``invalid-params``), so a client can point at what to fix;
nothing reaches the client as a traceback or a bare 500.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from rowback.errors import BadParameter, NotFound, RowbackError

MEDIA = "application/problem+json"
log = logging.getLogger("rowback.api")


class Problem(Exception):
    """An error to answer with: status, a short title, and what exactly was wrong."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        params: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.params = params or []
        self.headers = headers or {}


def from_error(e: RowbackError) -> Problem:
    """The problem a library error means for a client."""
    text = str(e)
    if isinstance(e, BadParameter):
        return Problem(400, "Bad parameter", text, [{"name": e.param, "reason": text}])
    if isinstance(e, NotFound):
        return Problem(404, "Not found", text)
    return Problem(422, "Cannot answer", text)


def response(p: Problem, request: Request) -> JSONResponse:
    body: dict[str, object] = {
        "type": "about:blank",
        "title": p.title,
        "status": p.status,
        "detail": p.detail,
        "instance": request.url.path,
    }
    if p.params:
        body["invalid-params"] = p.params
    return JSONResponse(body, status_code=p.status, media_type=MEDIA, headers=p.headers)


def install(app: FastAPI) -> None:
    """Route every error through ``response``."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return response(exc, request)

    @app.exception_handler(RowbackError)
    async def _rowback(request: Request, exc: RowbackError) -> JSONResponse:
        return response(from_error(exc), request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        params = []
        for err in exc.errors():
            loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "path", "body")]
            params.append({"name": ".".join(loc) or "request", "reason": str(err.get("msg"))})
        detail = "; ".join(f"{p['name']}: {p['reason']}" for p in params)
        return response(Problem(400, "Bad parameter", detail, params), request)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        return response(Problem(exc.status_code, title, str(exc.detail)), request)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        detail = (
            f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
        return response(Problem(500, "Internal error", detail), request)
