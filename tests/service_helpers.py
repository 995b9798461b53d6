"""Starting ``rowback run`` as a real process and talking to it over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

ROWBACK = [sys.executable, "-m", "rowback.cli"]


def cli(*args: str, store: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROWBACK_STORE": str(store)}
    env.pop("ROWBACK_DEBUG", None)
    got = subprocess.run([*ROWBACK, *args], capture_output=True, text=True, env=env, timeout=120)
    if ok:
        assert got.returncode == 0, got.stderr
    return got


class Service:
    """A running ``rowback run``: its process, address and token."""

    def __init__(self, proc: subprocess.Popen[str], store: Path, log: Path) -> None:
        self.proc, self.store, self.log = proc, store, log
        doc = orjson.loads((store / "service.json").read_bytes())
        self.url, self.token = str(doc["url"]), str(doc["token"])
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)

    def rows(self, path: str, **params: Any) -> list[dict[str, Any]]:
        r = self.get(path, **params)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert isinstance(doc["rows"], list)
        return list(doc["rows"])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def start(store: Path, *args: str, timeout: float = 60) -> Service:
    """Start ``rowback run ARGS --store STORE``; return once it serves and is ready."""
    log = store.parent / f"run-{time.monotonic_ns()}.log"
    stale = store / "service.json"
    if stale.exists():
        stale.unlink()  # a kill -9 leaves it behind; the new process writes its own
    env = {k: v for k, v in os.environ.items() if k != "ROWBACK_DEBUG"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*ROWBACK, "run", *args, "--store", str(store)],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    deadline = time.monotonic() + timeout
    while not (store / "service.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"rowback run did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    svc = Service(proc, store, log)
    while svc.http.get("/readyz").status_code != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            svc.stop(signal.SIGKILL)
            raise AssertionError(f"rowback run never got ready: {svc.stderr()[-2000:]}")
        time.sleep(0.05)
    return svc


@contextmanager
def running(store: Path, *args: str) -> Iterator[Service]:
    svc = start(store, *args)
    try:
        yield svc
    finally:
        if svc.proc.poll() is None:
            svc.stop()
