"""Parse PostgreSQL's built-in ``pgoutput`` logical replication messages (protocol 2).

Only the message framing lives here: no connection, no store. Tuple values stay in
PostgreSQL text form; ``UNCHANGED`` marks a TOAST value the server did not resend.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

PG_EPOCH_US: Final = 946_684_800_000_000
"""Microseconds from the Unix epoch to PostgreSQL's (2000-01-01)."""


class _Unchanged:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()
Value = str | None | _Unchanged
Tuple = list[Value]


@dataclass(slots=True)
class Begin:
    final_lsn: int
    commit_us: int
    xid: int


@dataclass(slots=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    commit_us: int


@dataclass(slots=True)
class RelColumn:
    name: str
    type_oid: int
    typmod: int
    key: bool


@dataclass(slots=True)
class Relation:
    xid: int | None
    relid: int
    namespace: str
    name: str
    identity: str
    columns: list[RelColumn]


@dataclass(slots=True)
class Insert:
    xid: int | None
    relid: int
    new: Tuple


@dataclass(slots=True)
class Update:
    xid: int | None
    relid: int
    old: Tuple | None
    old_kind: str | None
    new: Tuple


@dataclass(slots=True)
class Delete:
    xid: int | None
    relid: int
    old: Tuple
    old_kind: str


@dataclass(slots=True)
class Truncate:
    xid: int | None
    relids: list[int]


@dataclass(slots=True)
class StreamStart:
    xid: int
    first: bool


@dataclass(slots=True)
class StreamStop:
    pass


@dataclass(slots=True)
class StreamCommit:
    xid: int
    commit_lsn: int
    end_lsn: int
    commit_us: int


@dataclass(slots=True)
class StreamAbort:
    xid: int
    subxid: int


@dataclass(slots=True)
class LogicalMessage:
    """A message written with ``pg_logical_emit_message`` (sent with ``messages 'true'``)."""

    xid: int | None
    transactional: bool
    prefix: str
    content: bytes


@dataclass(slots=True)
class Ignored:
    kind: str


Message = (
    Begin
    | Commit
    | Relation
    | Insert
    | Update
    | Delete
    | Truncate
    | StreamStart
    | StreamStop
    | StreamCommit
    | StreamAbort
    | LogicalMessage
    | Ignored
)

_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_I16 = struct.Struct("!h")
_BEGIN = struct.Struct("!QqI")
_COMMIT = struct.Struct("!bQQq")
_SCOMMIT = struct.Struct("!IbQQq")


def _cstring(buf: bytes, at: int) -> tuple[str, int]:
    end = buf.index(b"\x00", at)
    return buf[at:end].decode(), end + 1


def _tuple(buf: bytes, at: int) -> tuple[Tuple, int]:
    (n,) = _I16.unpack_from(buf, at)
    at += 2
    out: Tuple = []
    append = out.append
    for _ in range(n):
        kind = buf[at]
        at += 1
        if kind == 0x74:  # 't' text
            (size,) = _I32.unpack_from(buf, at)
            at += 4
            append(buf[at : at + size].decode())
            at += size
        elif kind == 0x6E:  # 'n' null
            append(None)
        elif kind == 0x75:  # 'u' unchanged TOAST
            append(UNCHANGED)
        else:
            raise ValueError(f"pgoutput: unexpected tuple value kind {chr(kind)!r}")
    return out, at


def parse(buf: bytes, streaming: bool) -> Message:
    """Parse one message; ``streaming`` is True between Stream Start and Stream Stop."""
    kind = buf[0:1]
    at = 1
    if kind == b"B":
        final_lsn, ts, bxid = _BEGIN.unpack_from(buf, at)
        return Begin(final_lsn, ts + PG_EPOCH_US, bxid)
    if kind == b"C":
        _, lsn, end, ts = _COMMIT.unpack_from(buf, at)
        return Commit(lsn, end, ts + PG_EPOCH_US)
    if kind == b"S":
        (sxid,) = _U32.unpack_from(buf, at)
        return StreamStart(sxid, buf[at + 4] == 1)
    if kind == b"E":
        return StreamStop()
    if kind == b"c":
        cxid, _, lsn, end, ts = _SCOMMIT.unpack_from(buf, at)
        return StreamCommit(cxid, lsn, end, ts + PG_EPOCH_US)
    if kind == b"A":
        axid, subxid = struct.unpack_from("!II", buf, at)
        return StreamAbort(axid, subxid)
    xid: int | None = None
    if streaming and kind in b"RYIUDTM":
        (xid,) = _U32.unpack_from(buf, at)
        at += 4
    if kind == b"I":
        (relid,) = _U32.unpack_from(buf, at)
        new, _ = _tuple(buf, at + 5)  # skip 'N'
        return Insert(xid, relid, new)
    if kind == b"U":
        (relid,) = _U32.unpack_from(buf, at)
        at += 4
        old: Tuple | None = None
        old_kind: str | None = None
        if buf[at : at + 1] in (b"K", b"O"):
            old_kind = chr(buf[at])
            old, at = _tuple(buf, at + 1)
        new, _ = _tuple(buf, at + 1)  # skip 'N'
        return Update(xid, relid, old, old_kind, new)
    if kind == b"D":
        (relid,) = _U32.unpack_from(buf, at)
        old_kind = chr(buf[at + 4])
        old, _ = _tuple(buf, at + 5)
        return Delete(xid, relid, old, old_kind)
    if kind == b"R":
        (relid,) = _U32.unpack_from(buf, at)
        ns, at = _cstring(buf, at + 4)
        name, at = _cstring(buf, at)
        identity = chr(buf[at])
        (ncols,) = _I16.unpack_from(buf, at + 1)
        at += 3
        cols = []
        for _ in range(ncols):
            flags = buf[at]
            cname, at = _cstring(buf, at + 1)
            oid, typmod = struct.unpack_from("!Ii", buf, at)
            at += 8
            cols.append(RelColumn(cname, oid, typmod, bool(flags & 1)))
        return Relation(xid, relid, ns, name, identity, cols)
    if kind == b"T":
        (n,) = _I32.unpack_from(buf, at)
        relids = list(struct.unpack_from(f"!{n}I", buf, at + 5))
        return Truncate(xid, relids)
    if kind == b"M":
        transactional = buf[at] == 1
        prefix, at = _cstring(buf, at + 9)  # skip flags and the message's LSN
        (size,) = _I32.unpack_from(buf, at)
        return LogicalMessage(xid, transactional, prefix, buf[at + 4 : at + 4 + size])
    return Ignored(kind.decode("latin-1"))


def message_xid(buf: bytes) -> int | None:
    """The (sub)transaction id carried by a message inside a stream block."""
    if buf[0:1] in (b"R", b"Y", b"I", b"U", b"D", b"T", b"M"):
        return int(_U32.unpack_from(buf, 1)[0])
    return None
