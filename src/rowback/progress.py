"""Progress display for long work: a live status line on stderr when it is a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live
from rich.text import Text

from rowback.sources.postgres.capture import CaptureStatus
from rowback.when import format_lsn


def describe(s: CaptureStatus, rate: float) -> str:
    """One status line for a capture.

    >>> describe(CaptureStatus(snapshot_rows=10, changes=5, lsn=1), 2.5)
    'snapshot 10 rows · 5 changes (2 /s) · 0 tx · lag 0.00 s · confirmed 0/1'
    """
    return (
        f"snapshot {s.snapshot_rows:,} rows · {s.changes:,} changes ({rate:,.0f} /s) · "
        f"{s.transactions:,} tx · lag {s.lag_s:.2f} s · confirmed {format_lsn(s.lsn)}"
        + (f" · {s.gaps} GAPS" if s.gaps else "")
    )


@contextmanager
def capture_progress(enabled: bool) -> Iterator[Callable[[CaptureStatus], None]]:
    """Yield a progress callback; draws only when ``enabled`` (a terminal)."""
    if not enabled:
        yield lambda s: None
        return
    console = Console(stderr=True)
    start = time.monotonic()
    with Live(Text("connecting…"), console=console, refresh_per_second=4, transient=True) as live:

        def update(s: CaptureStatus) -> None:
            elapsed = max(time.monotonic() - start, 1e-6)
            live.update(Text(describe(s, (s.changes + s.snapshot_rows) / elapsed)))

        yield update
