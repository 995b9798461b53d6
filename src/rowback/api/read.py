"""Reading history over HTTP: tables, as-of, a row's versions, the change log, a
transaction, the quarantine. Every route reads one snapshot, apart from the writer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import duckdb
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from rowback.api.context import ServiceContext
from rowback.api.output import Format, negotiate, stream
from rowback.api.problems import Problem
from rowback.filters import parse_param
from rowback.store.base import Reader, Result
from rowback.views import tables_result
from rowback.when import Point, WhenError, parse_when

router = APIRouter(prefix="/api/v1", tags=["history"])

FormatQ = Annotated[
    Format | None,
    Query(description="json (default), ndjson (one object a line), csv, or table (text)."),
]
WidthQ = Annotated[
    int | None, Query(ge=20, le=1000, description="Width of format=table, in characters.")
]
AcceptH = Annotated[str | None, Header(include_in_schema=False)]
WHEN = "ISO-8601 with zone, relative (-5m), lsn:0/16B3748 or tx:TXID (just before it)."


def _ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def answer(
    request: Request,
    fmt: Format | None,
    width: int | None,
    accept: str | None,
    query: Callable[[Reader], Result],
) -> StreamingResponse:
    """Run ``query`` on a fresh snapshot and stream its rows; at most ``READ_SLOTS`` at
    once, the slot held until the last row is sent."""
    ctx = _ctx(request)
    if not ctx.slots.acquire(timeout=ctx.query_limit):
        raise Problem(
            503, "Busy", "every read slot stayed busy; try again", headers={"Retry-After": "1"}
        )
    try:
        snap = ctx.snapshot()
    except BaseException:
        ctx.slots.release()
        raise

    def end() -> None:
        snap.close()
        ctx.slots.release()

    done = _Once(end)
    try:
        return stream(query(snap.reader), negotiate(fmt, accept), done, width)
    except duckdb.InterruptException:
        done.close()
        raise Problem(
            503,
            "Query time limit",
            f"the query ran past its time limit of {ctx.query_limit:g} s and was stopped",
        ) from None
    except BaseException:
        done.close()
        raise


class _Once:
    """Ends a read once: the snapshot closed and its slot given back."""

    def __init__(self, end: Callable[[], object]) -> None:
        self._end: Callable[[], object] | None = end

    def close(self) -> None:
        end, self._end = self._end, None
        if end is not None:
            end()


def point(param: str, text: str) -> Point:
    try:
        return parse_when(text)
    except WhenError as e:
        raise Problem(400, "Bad parameter", str(e), [{"name": param, "reason": str(e)}]) from None


@router.get("/tables", summary="Captured tables with key, columns and live row count")
def tables(
    request: Request, format: FormatQ = None, width: WidthQ = None, accept: AcceptH = None
) -> StreamingResponse:
    return answer(request, format, width, accept, lambda r: tables_result(r.tables()))


@router.get("/tables/{table}/asof", summary="A table as it was at a point in time")
def asof(
    request: Request,
    table: str,
    at: Annotated[str, Query(description=WHEN)],
    filter: Annotated[
        list[str] | None,
        Query(
            description="column:op:value, all must hold; op is one of eq ne lt le gt ge "
            "like in (value a JSON array: id:in:[1,2]) isnull notnull (no value)."
        ),
    ] = None,
    format: FormatQ = None,
    width: WidthQ = None,
    accept: AcceptH = None,
) -> StreamingResponse:
    p = point("at", at)
    where = [parse_param(f) for f in filter or []]
    return answer(request, format, width, accept, lambda r: r.asof(table, p, where))


@router.get("/tables/{table}/history", summary="Every version of one row")
def history(
    request: Request,
    table: str,
    key: Annotated[list[str], Query(description="Key value(s), in key order; repeat.")],
    format: FormatQ = None,
    width: WidthQ = None,
    accept: AcceptH = None,
) -> StreamingResponse:
    return answer(request, format, width, accept, lambda r: r.history(table, key))


@router.get("/changes", summary="The change log, in commit order")
def changes(
    request: Request,
    table: str | None = None,
    since: Annotated[str | None, Query(description="From (exclusive). " + WHEN)] = None,
    until: Annotated[str | None, Query(description="Up to (inclusive). " + WHEN)] = None,
    txid: Annotated[int | None, Query(ge=0)] = None,
    format: FormatQ = None,
    width: WidthQ = None,
    accept: AcceptH = None,
) -> StreamingResponse:
    lo = point("since", since) if since else None
    hi = point("until", until) if until else None
    return answer(request, format, width, accept, lambda r: r.changes(table, lo, hi, txid))


@router.get("/tx/{txid}", summary="Everything one transaction did")
def tx(
    request: Request,
    txid: int,
    source: Annotated[str | None, Query(description="The source whose txid this is.")] = None,
    format: FormatQ = None,
    width: WidthQ = None,
    accept: AcceptH = None,
) -> StreamingResponse:
    return answer(request, format, width, accept, lambda r: r.tx(txid, source))


@router.get("/quarantine", summary="Inputs that could not be decoded")
def quarantine(
    request: Request,
    source: str | None = None,
    format: FormatQ = None,
    width: WidthQ = None,
    accept: AcceptH = None,
) -> StreamingResponse:
    return answer(request, format, width, accept, lambda r: r.quarantined(source))
