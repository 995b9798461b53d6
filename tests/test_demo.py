"""`rowback demo` tells its story, in time, and leaves nothing running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from rowback.store.duckdb import DuckDBStore


def _postgres_pids() -> set[str]:
    """Processes whose command line mentions the demo's data directory (``pgrep -f``
    without procps, which a minimal Debian lacks)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if b"rowback-pg-" in cmdline and entry.name != str(os.getpid()):
            pids.add(entry.name)
    return pids


def test_demo_runs_and_cleans_up(tmp_path: Path) -> None:
    before = _postgres_pids()
    start = time.monotonic()
    got = subprocess.run(
        [
            sys.executable,
            "-m",
            "rowback.cli",
            "demo",
            "--seconds",
            "4",
            "--keep",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - start
    assert got.returncode == 0, got.stderr[-2000:]
    out = got.stdout
    for section in (
        "bad deploy",
        "just before the bad deploy",
        "history of product 1",
        "everything it did",
    ):
        assert section in out, section
    assert "price:" in out and "→ 0.00" in out  # the bad transaction's diff is shown
    # the story ends with the bad deploy reverted in PostgreSQL, the traffic since kept
    flat = " ".join(out.split())
    undone = re.search(
        r"(\d+) → (\d+) products at 0\.00; orders (\d+) → (\d+), stock (\d+) → (\d+)", flat
    )
    assert undone, flat[-600:]
    zeroed, left, orders, orders_after, stock, stock_after = map(int, undone.groups())
    assert zeroed > 0 and left == 0
    assert (orders, stock) == (orders_after, stock_after)
    # detection caught the deploy and explained it; the policy asked a person (products)
    assert re.search(r"incident 1 pending_confirmation: constant on public\.products", flat)
    assert "40 rows of 40 set to '0.00'" in flat
    assert "rowback incidents approve 1" in flat
    # and reverted the runaway job on its own (orders), while the shop went on
    assert re.search(r"incident 2 \(\w+ on public\.orders\) reverted automatically", flat)
    assert "orders still cancelled after the automatic revert: 0" in flat
    # and it asks first next time: whatif of the deploy's statement, rolled back (it ran
    # after the revert, which found every price restored: the whatif left them so)
    ask = re.search(r"whatif: (\d+) row\(s\) would change \(0 inserted, (\d+) updated", flat)
    assert ask and int(ask.group(1)) == int(ask.group(2)) == zeroed, flat[-400:]
    assert "rolled back" in flat
    assert elapsed < 60
    assert (tmp_path / "s" / "rowback.duckdb").exists()  # --keep keeps the store
    with DuckDBStore(tmp_path / "s", read_only=True) as store:
        assert [(r.status, r.who) for r in store.reversions()][0] == ("applied", "policy")
        assert [r.status for r in store.reversions()] == ["applied", "applied"]
        got = {i.id: (i.tables, i.status) for i in store.incidents()}
        assert got[1] == (["public.products"], "reverted")
        assert got[2] == (["public.orders"], "reverted")
    deadline = time.monotonic() + 10  # a loaded machine can take a moment to reap them
    while not _postgres_pids() <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _postgres_pids() <= before, "a server was left behind"
