"""Small helpers shared by the tests and their fixtures."""

from __future__ import annotations

import socket
import subprocess
import time

from rowback.pgserver import free_port
from rowback.render import to_json_value
from rowback.store.base import Result

__all__ = ["free_port", "shown", "wait_for_port"]


def shown(result: Result) -> list[list[object]]:
    """``result``'s rows with every value as JSON shows it (``--format json``): the store
    returns raw values, and a test of their text (``6.2500``, ISO dates) reads them so."""
    hints = [result.types.get(c) for c in result.columns]
    return [[to_json_value(v, h) for v, h in zip(row, hints, strict=True)] for row in result.rows]


def wait_for_port(
    port: int,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> bool:
    """Wait until ``host:port`` accepts TCP connections; False on timeout or if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
