"""Disk spill for streamed (in-progress) transactions.

PostgreSQL streams a large transaction in chunks before it knows whether it will commit.
The chunks go to one append-only file per transaction, so memory stays flat whatever the
transaction's size; they are replayed in order at Stream Commit. The files need not
survive a crash: the slot has not been confirmed past the transaction, so PostgreSQL
streams it again.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from rowback.sources.postgres.pgoutput import message_xid

_LEN = struct.Struct("!I")


class Spill:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[int, BinaryIO] = {}
        self._aborted: dict[int, set[int]] = {}

    def _path(self, xid: int) -> Path:
        return self.dir / f"{xid}.spill"

    def append(self, xid: int, payload: bytes) -> None:
        f = self._files.get(xid)
        if f is None:
            f = self._files[xid] = open(self._path(xid), "ab")  # noqa: SIM115
        f.write(_LEN.pack(len(payload)))
        f.write(payload)

    def abort(self, xid: int, subxid: int) -> None:
        """Forget a whole transaction, or just the messages of one aborted subtransaction."""
        if xid == subxid:
            self.discard(xid)
        else:
            self._aborted.setdefault(xid, set()).add(subxid)

    def replay(self, xid: int) -> Iterator[bytes]:
        """The transaction's messages in order, without those of aborted subtransactions."""
        f = self._files.pop(xid, None)
        if f is None:
            return
        f.close()
        aborted = self._aborted.pop(xid, set())
        with open(self._path(xid), "rb") as r:
            while head := r.read(4):
                (size,) = _LEN.unpack(head)
                payload = r.read(size)
                if message_xid(payload) not in aborted:
                    yield payload
        self._path(xid).unlink(missing_ok=True)

    def discard(self, xid: int) -> None:
        f = self._files.pop(xid, None)
        if f is not None:
            f.close()
        self._aborted.pop(xid, None)
        self._path(xid).unlink(missing_ok=True)

    def close(self) -> None:
        for xid in list(self._files):
            self.discard(xid)
