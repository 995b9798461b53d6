"""Results as HTTP responses, streamed a chunk at a time and never built whole.

``format``: ``json`` (default; one object with columns and rows), ``ndjson`` (one object a
line, as the CLI's ``--format json`` prints), ``csv``, or ``table`` (the CLI's table, at
``width``), so that the CLI asking a service prints byte for byte what it prints offline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from enum import StrEnum
from itertools import chain, islice
from typing import Protocol

from fastapi.responses import StreamingResponse

from rowback.render import iter_text
from rowback.store.base import Result

log = logging.getLogger("rowback.api")

CHUNK = 64 * 1024
"""Bytes gathered before a write: one thread hop per chunk, not per row."""


class Format(StrEnum):
    json = "json"
    ndjson = "ndjson"
    csv = "csv"
    table = "table"


_KINDS = {
    Format.json: ("document", "application/json"),
    Format.ndjson: ("json", "application/x-ndjson"),
    Format.csv: ("csv", "text/csv; charset=utf-8"),
    Format.table: ("table", "text/plain; charset=utf-8"),
}


def negotiate(fmt: Format | None, accept: str | None) -> Format:
    """``format=`` wins; else ``Accept: application/x-ndjson`` or ``text/csv``; else JSON."""
    if fmt is not None:
        return fmt
    accept = (accept or "").lower()
    if "ndjson" in accept or "jsonlines" in accept:
        return Format.ndjson
    if "text/csv" in accept:
        return Format.csv
    return Format.json


class Closing(Protocol):
    def close(self) -> None: ...


def stream(result: Result, fmt: Format, snapshot: Closing, width: int | None) -> StreamingResponse:
    """Stream ``result``; ``snapshot`` (whose transaction the rows are read in) is closed
    when the last chunk is sent or the client goes away. The first row is read before
    answering, so an error in the query is still a problem response, not a cut stream."""
    rows = iter(result.rows)
    head = list(islice(rows, 1))
    kind, media = _KINDS[fmt]
    pieces = iter_text(kind, result.columns, chain(head, rows), result.types, width=width)
    return StreamingResponse(_chunks(pieces, snapshot), media_type=media)


def _chunks(pieces: Iterator[str], snapshot: Closing) -> Iterator[bytes]:
    buf: list[str] = []
    size = 0
    try:
        for piece in pieces:
            buf.append(piece)
            size += len(piece)
            if size >= CHUNK:
                yield "".join(buf).encode("utf-8")
                buf, size = [], 0
        if buf:
            yield "".join(buf).encode("utf-8")
    except Exception:
        # the status line is sent: all that is left is to cut the stream, which the
        # client sees as an incomplete response, never as a short but valid one
        log.exception("stream cut off (an error, or the query's time limit)")
        raise
    finally:
        snapshot.close()
