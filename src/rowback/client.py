"""The CLI asking a running ``rowback run`` for what it would read from a stopped store.

The service renders in the CLI's format (table at the CLI's width), so what is printed
is byte for byte what an offline read prints; this module only carries the bytes.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

import httpx
import orjson

from rowback.errors import BadParameter, NotFound, RowbackError
from rowback.render import NON_TTY_WIDTH
from rowback.service import ServiceInfo
from rowback.when import point_text

if TYPE_CHECKING:
    from rowback.revert.run import Request

Params = Mapping[str, str | int | Sequence[str] | None]

TIMEOUT = httpx.Timeout(10.0, read=120.0)
FORMATS = {"table": "table", "json": "ndjson", "csv": "csv"}


class ServiceGone(RowbackError):
    """Nothing listens where service.json says (it is stopping, or was killed): the store
    is about to be free, or is already."""


def fetch(info: ServiceInfo, path: str, params: Params, fmt: str, out: IO[str]) -> None:
    """GET ``path`` from the service and copy the rendered answer to ``out``."""
    query: dict[str, str | int | list[str]] = {"format": FORMATS[fmt]}
    for k, v in params.items():
        if v is None:
            continue
        query[k] = list(v) if isinstance(v, list | tuple) else v  # type: ignore[assignment]
    if fmt == "table":
        query["width"] = _width(out)
    headers = {"Authorization": f"Bearer {info.token}"}
    try:
        with httpx.stream(
            "GET", info.url + path, params=query, headers=headers, timeout=TIMEOUT
        ) as r:
            if r.status_code != 200:
                raise _problem(r.status_code, r.read())
            for text in r.iter_text():
                out.write(text)
    except httpx.ConnectError as e:
        raise ServiceGone(f"the service at {info.url} is not answering: {e}") from None
    except httpx.HTTPError as e:
        raise RowbackError(f"the service at {info.url} failed to answer: {e}") from None
    out.flush()


def post(info: ServiceInfo, path: str, body: Mapping[str, object]) -> Any:
    """POST ``body`` as JSON to ``path``; the answer's JSON, or the offline error."""
    headers = {"Authorization": f"Bearer {info.token}"}
    try:
        r = httpx.post(info.url + path, json=dict(body), headers=headers, timeout=TIMEOUT)
    except httpx.ConnectError as e:
        raise ServiceGone(f"the service at {info.url} is not answering: {e}") from None
    except httpx.HTTPError as e:
        raise RowbackError(f"the service at {info.url} failed to answer: {e}") from None
    if r.status_code not in (200, 201):
        raise _problem(r.status_code, r.content)
    return orjson.loads(r.content)


def get_json(info: ServiceInfo, path: str) -> Any:
    """GET ``path``'s JSON answer, or the offline error."""
    headers = {"Authorization": f"Bearer {info.token}"}
    try:
        r = httpx.get(info.url + path, headers=headers, timeout=TIMEOUT)
    except httpx.ConnectError as e:
        raise ServiceGone(f"the service at {info.url} is not answering: {e}") from None
    except httpx.HTTPError as e:
        raise RowbackError(f"the service at {info.url} failed to answer: {e}") from None
    if r.status_code != 200:
        raise _problem(r.status_code, r.content)
    return orjson.loads(r.content)


def revert_body(req: Request, dry_run: bool, sql: bool) -> dict[str, object]:
    """``POST /api/v1/reversions``'s body for what ``rowback revert`` was asked."""
    from rowback.revert.run import filter_doc

    return {
        "txids": list(req.txids),
        "reversion": req.undo,
        "incident": req.incident,
        "since": point_text(req.since) if req.since else None,
        "until": point_text(req.until) if req.until else None,
        "table": req.table,
        "key": list(req.key),
        "where": [filter_doc(f) for f in req.where],
        "to": point_text(req.to) if req.to else None,
        "source": req.source,
        "mode": req.mode.value,
        "target": req.target,
        "reason": req.reason,
        "max_rows": req.max_rows,
        "disable_triggers": req.disable_triggers,
        "dry_run": dry_run,
        "sql": sql and not dry_run,
        "slot": req.slot,
        "publication": req.publication,
    }


def _width(out: IO[str]) -> int:
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):
        tty = False
    return shutil.get_terminal_size().columns if tty else NON_TTY_WIDTH


def _problem(status: int, body: bytes) -> RowbackError:
    """The service's problem+json as the error an offline read would raise."""
    try:
        doc = orjson.loads(body)
        detail = str(doc.get("detail") or doc.get("title"))
        params = doc.get("invalid-params") or []
    except (orjson.JSONDecodeError, AttributeError):
        doc, detail, params = {}, body.decode("utf-8", "replace").strip()[:200], []
    if status == 409 and isinstance(doc.get("conflicts"), list):
        from rowback.revert.run import Refused

        return Refused(detail, int(doc.get("reversion") or 0), [str(c) for c in doc["conflicts"]])
    if status == 404:
        return NotFound(detail)
    if status == 400 and params:
        return BadParameter(str(params[0].get("name", "")), detail)
    if status == 401:
        return RowbackError(f"the service refused the token in service.json: {detail}")
    return RowbackError(detail)
