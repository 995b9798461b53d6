"""Run one measured function in this (child) process and report its result and peak RSS.

``python -m bench.worker SPEC.json OUT.json``: SPEC names ``module:function`` and its
keyword arguments; OUT receives the function's dict plus ``peak_rss_mb`` (VmHWM). With
``profile`` set, the call runs under cProfile; the stats go to that path and the top
functions by cumulative time to the same path with ``.txt``. SIGTERM calls the functions
registered with :func:`on_stop`, so long-running work (a live capture) can end cleanly.
"""

from __future__ import annotations

import importlib
import io
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import peak_rss_mb

_stoppers: list[Callable[[], None]] = []
_stopped = False


def on_stop(fn: Callable[[], None]) -> None:
    """Call ``fn`` when the parent asks this child to stop (or now, if it already has)."""
    _stoppers.append(fn)
    if _stopped:
        fn()


def stopped() -> bool:
    return _stopped


def _handle(signum: int, frame: object) -> None:
    global _stopped
    _stopped = True
    for fn in _stoppers:
        fn()


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    signal.signal(signal.SIGTERM, _handle)
    module, _, func = spec["target"].partition(":")
    fn: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), func)
    t0 = time.perf_counter()
    if spec.get("profile"):
        import cProfile
        import pstats

        prof = cProfile.Profile()
        result = prof.runcall(fn, **spec["kwargs"])
        prof.dump_stats(spec["profile"])
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(45)
        Path(spec["profile"]).with_suffix(".txt").write_text(text.getvalue())
    else:
        result = fn(**spec["kwargs"])
    result = dict(result)
    result.setdefault("child_wall_s", time.perf_counter() - t0)
    result["peak_rss_mb"] = peak_rss_mb()
    Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    # Run through the imported module, so that ``bench.worker.on_stop`` as called by the
    # benchmark code and this signal handler share one list of stoppers.
    from bench.worker import main as _main

    _main(sys.argv[1], sys.argv[2])
