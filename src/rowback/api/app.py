"""The FastAPI application: routers, the token check, and problem responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from rowback import __version__
from rowback.api import auth, problems, read, status
from rowback.api.context import ServiceContext


def create_app(ctx: ServiceContext) -> FastAPI:
    app = FastAPI(
        title="Rowback",
        version=__version__,
        summary="The shadow of every row's history: time travel over a live store.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.ctx = ctx
    problems.install(app)

    @app.middleware("http")
    async def _token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        try:
            auth.check(request, ctx.token)
        except problems.Problem as p:
            return problems.response(p, request)
        return await call_next(request)

    app.include_router(read.router)
    app.include_router(status.router)
    return app
