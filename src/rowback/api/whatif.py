"""``POST /api/v1/whatif``: what a statement would change, run and rolled back.

The target is the body's, else the service's PostgreSQL source. The store is not read:
the service only lends its address, so the CLI asks it whenever it holds the store.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rowback.api.context import ServiceContext
from rowback.api.problems import Problem
from rowback.errors import RowbackError
from rowback.whatif import Bounds, summary, whatif
from rowback.whatif.diff import to_doc
from rowback.whatif.run import LOCK_TIMEOUT, STATEMENT_TIMEOUT

router = APIRouter(prefix="/api/v1", tags=["whatif"])


class WhatifBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(description="The statement (one).")
    target: str | None = Field(None, description="DSN [default: the service's source].")
    lock_timeout: str = LOCK_TIMEOUT
    statement_timeout: str = STATEMENT_TIMEOUT
    max_rows: int = Field(1000, ge=0, description="Answer at most this many changes.")


@router.post("/whatif", summary="What a statement would change; it is always rolled back")
def post_whatif(request: Request, body: WhatifBody) -> JSONResponse:
    ctx: ServiceContext = request.app.state.ctx
    target = body.target or ctx.source_dsn
    if target is None:
        detail = "give target (a DSN): this service does not capture PostgreSQL"
        raise Problem(422, "Missing target", detail, [{"name": "target", "reason": detail}])
    try:
        got = whatif(target, body.sql, Bounds(body.lock_timeout, body.statement_timeout))
    except RowbackError as e:
        raise Problem(409, "Whatif stopped", str(e)) from None
    shown = got.changes[: body.max_rows]
    doc: dict[str, Any] = {
        "changes": [to_doc(c) for c in shown],
        "summary": summary(got, len(shown)),
    }
    if ctx.policy is not None and got.failure is None:
        from rowback.detect.verdict import verdict

        snap = ctx.snapshot()
        try:
            doc["summary"]["detection"] = verdict(snap.reader, got.changes, ctx.policy)
        finally:
            snap.close()
    return JSONResponse(doc)
