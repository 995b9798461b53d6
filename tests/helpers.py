"""Small helpers shared by the tests and their fixtures."""

from __future__ import annotations

import socket
import subprocess
import time

from rowback.pgserver import free_port

__all__ = ["free_port", "wait_for_port"]


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
