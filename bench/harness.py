"""What every benchmark shares: child processes with peak RSS, medians, figures, the machine.

Measured work runs in a child process (``python -m bench.worker``) so that its peak RSS is
its own: the child reads its ``VmHWM`` from ``/proc/self/status`` when the work is done.
(``ru_maxrss`` from ``wait4`` is not used: after a ``vfork`` + ``exec`` Linux folds the
parent's high-water mark into the child's, so it would report the harness's memory.)
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


@dataclass
class Ctx:
    """What the command line asked for, handed to every benchmark."""

    quick: bool
    runs: int
    out: Path
    profile: bool = False

    def work_dir(self, name: str) -> Path:
        """A fresh scratch directory for one benchmark (stores, logs)."""
        path = self.out / "work" / name
        if path.exists():
            import shutil

            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path


@dataclass
class Figure:
    """One measured quantity: every run's value, their median, peak RSS, target, peer ratio."""

    name: str
    unit: str
    values: list[float]
    rss_mb: list[float] = field(default_factory=list)
    target: float | None = None
    better: str = "higher"  # or "lower": which side of the target passes
    peer: str | None = None  # what `peer_ratio` compares against, in words
    peer_ratio: float | None = None
    note: str = ""
    shown_runs: int | None = None  # when ``values`` are already medians reported elsewhere

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def rss_median(self) -> float | None:
        return statistics.median(self.rss_mb) if self.rss_mb else None

    @property
    def ratio(self) -> float | None:
        """Median / target (higher-is-better targets pass at >= 1, lower-is-better at <= 1)."""
        if self.target is None or not self.values:
            return None
        return self.median / self.target

    @property
    def meets(self) -> bool | None:
        r = self.ratio
        if r is None:
            return None
        return r >= 1 if self.better == "higher" else r <= 1

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            median=self.median,
            rss_mb_median=self.rss_median,
            ratio_to_target=self.ratio,
            meets_target=self.meets,
            runs=self.shown_runs or len(self.values),
        )
        return d


@dataclass
class BenchResult:
    name: str
    figures: list[Figure] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": round(self.seconds, 1),
            "params": self.params,
            "notes": self.notes,
            "error": self.error,
            "figures": [f.to_json() for f in self.figures],
        }


# -- child processes ----------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def vm_hwm_mb(pid: int) -> float | None:
    """Another process's peak resident set size (VmHWM) in MiB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@dataclass
class Command:
    """What a whole command took: wall seconds, its peak RSS, its output."""

    seconds: float
    peak_rss_mb: float
    out: str
    err: str


def run_command(cmd: list[str]) -> Command:
    """Run ``cmd`` as a user would, sampling its VmHWM every 20 ms (it only grows: the last
    reading before exit is the peak); a non-zero exit raises with the end of stderr."""
    import threading

    peak = [0.0]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def watch() -> None:
        while proc.poll() is None:
            got = vm_hwm_mb(proc.pid)
            if got is not None:
                peak[0] = max(peak[0], got)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - t
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({proc.returncode}): {err[-1000:]}")
    return Command(seconds, round(peak[0], 1), out, err)


def _child_env() -> dict[str, str]:
    """Children import ``bench`` and ``rowback`` from this checkout (ROOT and ROOT/src)."""
    env = dict(os.environ)
    paths = [str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


class Child:
    """A running ``bench.worker`` process; ``result()`` waits and returns what it reported."""

    def __init__(self, target: str, kwargs: dict[str, Any], profile: Path | None = None) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="rowback-bench-"))
        spec = self._dir / "spec.json"
        self._out = self._dir / "out.json"
        spec.write_text(
            json.dumps(
                {"target": target, "kwargs": kwargs, "profile": str(profile) if profile else None}
            )
        )
        self._log = (self._dir / "stderr.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", str(spec), str(self._out)],
            cwd=ROOT,
            env=_child_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.target = target

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        """Ask the child to finish (SIGTERM; the worker turns it into a clean stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"{self.target} did not finish within {timeout} s") from None
        finally:
            self._log.close()
        import shutil

        try:
            log = (self._dir / "stderr.log").read_text(errors="replace")
            if self.proc.returncode != 0 or not self._out.exists():
                tail = "\n".join(log.strip().splitlines()[-15:])
                raise RuntimeError(f"{self.target} failed (exit {self.proc.returncode}):\n{tail}")
            got: dict[str, Any] = json.loads(self._out.read_text())
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
        return got


def child(
    target: str, timeout: float | None = None, profile: Path | None = None, **kwargs: Any
) -> dict[str, Any]:
    """Run ``module:function(**kwargs)`` in a child; its dict result plus ``peak_rss_mb``."""
    return Child(target, kwargs, profile).result(timeout)


# -- reporting ---------------------------------------------------------------------------


def sh(cmd: str) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    import duckdb

    import rowback

    commit = sh(f"git -C {ROOT} rev-parse --short HEAD") or os.environ.get(
        "ROWBACK_BENCH_COMMIT", ""
    )
    dirty = sh(f"git -C {ROOT} status --porcelain -- src") if commit else ""
    return {
        "nproc": sh("nproc"),
        "memory": sh("free -h | awk '/^Mem:/ {print $2}'"),
        "cpu": sh("lscpu | sed -n 's/^Model name: *//p'"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "postgres": sh("pg_config --version") or sh("ls /usr/lib/postgresql"),
        "commit": commit,
        "src_uncommitted_changes": bool(dirty),
        "rowback_imported_from": str(Path(rowback.__file__).parent),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None or v != v:  # None or NaN
        return "-"
    a = abs(v)
    if a >= 10_000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.{digits - 1}f}"
    return f"{v:.{digits}g}"


def table(results: list[BenchResult]) -> str:
    """A readable plain-text table of every figure."""
    head = ["benchmark", "figure", "median", "unit", "runs", "peak RSS MB", "target", "ratio", ""]
    rows = [head]
    for r in results:
        if r.error:
            rows.append([r.name, "ERROR (see below)", "", "", "", "", "", "", ""])
        for f in r.figures:
            tgt = (
                "" if f.target is None else ("≥ " if f.better == "higher" else "≤ ") + fmt(f.target)
            )
            ok = {True: "ok", False: "MISS", None: ""}[f.meets]
            if f.peer_ratio is not None:
                ok = (ok + " " if ok else "") + f"({f.peer} = {fmt(f.peer_ratio)})"
            rows.append(
                [
                    r.name,
                    f.name,
                    fmt(f.median),
                    f.unit,
                    str(f.shown_runs or len(f.values)),
                    fmt(f.rss_median),
                    tgt,
                    fmt(f.ratio),
                    ok,
                ]
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
