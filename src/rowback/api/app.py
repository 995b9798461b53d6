"""The FastAPI application: routers, the token check, and problem responses."""

from __future__ import annotations

from fastapi import FastAPI

from rowback import __version__
from rowback.api import auth, incidents, problems, read, revert, status, whatif
from rowback.api.context import ServiceContext


def create_app(ctx: ServiceContext) -> FastAPI:
    app = FastAPI(
        title="Rowback",
        version=__version__,
        summary="The shadow of every row's history: time travel over a live store.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        # a redirect to the path without its trailing slash is not an answer a script
        # can use (and "0%2F" decodes to one): such a path is a 404 problem instead
        redirect_slashes=False,
    )
    app.state.ctx = ctx
    problems.install(app)

    app.add_middleware(auth.TokenGuard, token=ctx.token)
    app.include_router(read.router)
    app.include_router(status.router)
    app.include_router(revert.router)
    app.include_router(whatif.router)
    app.include_router(incidents.router)
    return app
