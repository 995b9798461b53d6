"""Detection in ``rowback ingest`` (replay): event commit times are the clock, so the
same stream gives the same incidents, even when the ingest is killed (-9) midway and
resumed; and ``--learned`` without scikit-learn says so and runs the statistics alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from rowback.detect.scenario import generate, write_debezium

SRC = Path(__file__).parents[2] / "src"


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    s = generate(days=4, seed=3, rate=20, orders0=1500, customers0=300, products0=60, archive=300)
    path = tmp_path_factory.mktemp("stream") / "shop.jsonl"
    write_debezium(s.changes, path)
    return path


def ingest(path: Path, store: Path, *extra: str, env: dict[str, str] | None = None) -> str:
    cmd = [sys.executable, "-m", "rowback", "ingest", str(path), "--store", str(store), *extra]
    env = env or {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def incidents(store: Path) -> list[tuple[object, ...]]:
    cmd = [sys.executable, "-m", "rowback", "incidents", "--store", str(store), "-f", "json"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
    docs = [orjson.loads(line) for line in out.stdout.splitlines()]
    return [
        (d["kind"], d["tables"], d["txids"], d["detected_at"], d["status"], d["rows_affected"])
        for d in docs
    ]


def test_replay_gives_the_same_incidents_and_kill_9_changes_nothing(
    stream: Path, tmp_path: Path
) -> None:
    ingest(stream, tmp_path / "a")
    first = incidents(tmp_path / "a")
    assert first, "the injected damage raised incidents"
    assert all(status == "open" for *_, status, _ in first)  # default policy: alert only
    ingest(stream, tmp_path / "b")
    assert incidents(tmp_path / "b") == first
    # killed while it ingests and judges, then resumed: the same incidents, none twice
    store = tmp_path / "c"
    cmd = [sys.executable, "-m", "rowback", "ingest", str(stream), "--store", str(store)]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    killed = 0
    for delay in (0.2, 0.6, 1.2):
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (store / "rowback.duckdb").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        killed += proc.wait() == -signal.SIGKILL
    assert killed >= 2, "the kills landed while it ingested"
    ingest(stream, store)
    assert incidents(store) == first


def test_learned_without_scikit_learn_falls_back_with_a_clear_line(
    stream: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "nosk" / "sklearn"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(  # as Python says it when it is not installed
        "raise ModuleNotFoundError(\"No module named 'sklearn'\", name='sklearn')\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{fake.parent}{os.pathsep}{SRC}"}
    err = ingest(stream, tmp_path / "s", "--learned", env=env)
    assert "pip install 'rowback[ml]'" in err and "statistical detectors only" in err
    assert incidents(tmp_path / "s") == incidents_of_default(stream, tmp_path)


def incidents_of_default(stream: Path, tmp_path: Path) -> list[tuple[object, ...]]:
    ingest(stream, tmp_path / "d")
    return incidents(tmp_path / "d")
