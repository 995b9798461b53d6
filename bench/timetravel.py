"""timetravel: as-of, row history and transaction queries over a large history.

The store is built synthetically: ``Change`` objects written straight through
``DuckDBStore.write`` in 100k-change batches, **bypassing PostgreSQL** (capture could
not make 10M changes in the time a benchmark has). The table looks like
pgbench_accounts (aid integer key, bid, abalance, filler char(84)): a snapshot of ROWS
rows, then CHANGES changes over 20 days in transactions of 1-5 changes: 90% updates of
abalance, 5% inserts of new keys, 5% deletes (a change that lands on a deleted key
re-inserts it), so the table stays near ROWS live rows. Updated and deleted keys are skewed (rank
= n·u³ mapped through a fixed permutation: the hottest 0.1% of rows get 10% of the
updates, scattered over the key space). The store is built once and kept in
``bench/out/cache``; the write rate, and what a checkpoint adds to the write that takes
it, are figures when it is built.

Each run is a fresh process opening the store read-only, then:

- ``asof`` of the whole table at 99% and at 50% of the history, all rows consumed
  (the first call in the process; the OS page cache is warm);
- ``history`` of ~100 keys drawn uniformly (p50/p99, after 3 warm-up calls);
- ``tx`` of ~100 random transactions (p50/p99);
- ``asof`` again at 5%, 10%, ... 95% of the time span and just before each checkpoint
  (warm): the worst of those.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import BenchResult, Ctx, Figure, child, log, machine, percentile

NAME = "timetravel"
DAY_US = 86_400_000_000
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
FILLER = " " * 84
GENERATOR = 3  # bump when the synthetic history or the store's format changes (3: checkpoints)


def _schema() -> Any:
    from rowback.model import Column, TableSchema

    return TableSchema(
        "postgres",
        "public",
        "pgbench_accounts",
        (
            Column("aid", "integer", True),
            Column("bid", "integer"),
            Column("abalance", "integer"),
            Column("filler", "character(84)"),
        ),
    )


def build(store: str, rows: int, changes: int, seed: int, batch: int = 100_000) -> dict[str, Any]:
    """Write the synthetic history; the seconds spent in ``DuckDBStore.write``."""
    from rowback.model import Change, Op
    from rowback.store.duckdb import DuckDBStore

    rnd = random.Random(seed)
    schema = _schema()
    st = DuckDBStore(store)
    write_s = 0.0
    lsn = 0x1000000
    plain: list[float] = []  # seconds of each change write that took no checkpoint
    with_cp: list[tuple[float, int]] = []  # (seconds, checkpoint rows) of those that did

    def write(items: list[Any]) -> None:
        nonlocal write_s
        before = len(st.table("public.pgbench_accounts").checkpoints) if st.tables() else 0
        t = time.perf_counter()
        st.write(items, "postgres", {"lsn": lsn, "partial": None, "snapshot_lsn": 0x1000000})
        took = time.perf_counter() - t
        write_s += took
        cps = st.table("public.pgbench_accounts").checkpoints
        if len(cps) > before:
            with_cp.append((took, cps[-1].rows))
        elif items and items[0].op != Op.SNAPSHOT:
            plain.append(took)

    items: list[Any] = []
    for aid in range(1, rows + 1):
        row = [str(aid), str((aid - 1) // 100_000 + 1), "0", FILLER]
        items.append(Change(schema, Op.SNAPSHOT, (row[0],), row, None, START_US, 0, lsn, aid))
        if len(items) >= batch:
            write(items)
            items = []
    write(items)
    items = []
    snapshot_s = write_s

    alive = bytearray(b"\x00") + bytearray(b"\x01") * rows + bytearray(changes)
    next_aid = rows + 1
    prime = 999_983  # coprime with the row counts used: rank -> aid is a permutation
    span_us = 20 * DAY_US
    n_tx = changes // 3
    txid, done, tx_no = 1000, 0, 0
    while done < changes:
        size = min(rnd.randint(1, 5), changes - done)
        txid += rnd.randint(1, 3)
        lsn += rnd.randint(200, 800)
        tx_no += 1
        commit_us = START_US + 1_000_000 + span_us * tx_no // n_tx
        for seq in range(1, size + 1):
            u = rnd.random()
            if u < 0.9:
                aid = (int(rows * rnd.random() ** 3) * prime) % rows + 1
            else:
                aid = rnd.randrange(1, next_aid)
            kind = rnd.random()
            if kind < 0.05:  # a new key
                aid, kind = next_aid, 0.0
                next_aid += 1
            if kind < 0.05 or not alive[aid]:  # (a deleted key comes back)
                alive[aid] = 1
                row = [
                    str(aid),
                    str((aid - 1) // 100_000 + 1),
                    str(rnd.randint(-99_999, 99_999)),
                    FILLER,
                ]
                ch = Change(schema, Op.INSERT, (row[0],), row, None, commit_us, txid, lsn, seq)
            elif kind < 0.10:
                alive[aid] = 0
                ch = Change(schema, Op.DELETE, (str(aid),), None, None, commit_us, txid, lsn, seq)
            else:
                row = [
                    str(aid),
                    str((aid - 1) // 100_000 + 1),
                    str(rnd.randint(-99_999, 99_999)),
                    FILLER,
                ]
                ch = Change(schema, Op.UPDATE, (row[0],), row, None, commit_us, txid, lsn, seq)
            items.append(ch)
        done += size
        if len(items) >= batch:
            write(items)
            items = []
    write(items)
    counts = dict(st.sql("SELECT _op, count(*) FROM h_1 GROUP BY _op"))
    checkpoints = [[cp.pos, cp.rows] for cp in st.table("public.pgbench_accounts").checkpoints]
    st.close()
    plain.sort()
    return {
        "write_p50_s": plain[len(plain) // 2] if plain else None,
        "checkpoint_writes": with_cp,
        "checkpoints": checkpoints,
        "snapshot_write_s": snapshot_s,
        "changes_write_s": write_s - snapshot_s,
        "rows": rows,
        "changes": changes,
        "ops": {str(k): v for k, v in counts.items()},
        "live_keys": int(sum(alive)),
    }


def query(store: str, seed: int, samples: int) -> dict[str, Any]:
    """One run of the read benchmarks on a store opened read-only in this process."""
    from rowback.store.duckdb import DuckDBStore
    from rowback.when import AtTime, BeforeTx

    rnd = random.Random(seed)
    t = time.perf_counter()
    st = DuckDBStore(store, read_only=True)
    open_s = time.perf_counter() - t
    lo, hi = st.sql("SELECT min(ts), max(ts) FROM _rb_tx WHERE txid > 0")[0]
    max_aid = st.sql("SELECT max(c0) FROM h_1")[0][0]
    out: dict[str, Any] = {"open_s": open_s}
    for label, frac in (("recent", 0.99), ("middle", 0.5)):
        point = AtTime(lo + (hi - lo) * frac)
        times = []
        for _ in range(2):  # the first call, then once warm
            t = time.perf_counter()
            n = sum(1 for _ in st.asof("public.pgbench_accounts", point).rows)
            times.append(time.perf_counter() - t)
        out[f"asof_{label}_s"] = times[0]
        out[f"asof_{label}_warm_s"] = times[1]
        out[f"asof_{label}_rows"] = n
    keys = [str(rnd.randint(1, max_aid)) for _ in range(samples + 3)]
    hist, versions = [], []
    for i, k in enumerate(keys):
        t = time.perf_counter()
        n = len(list(st.history("public.pgbench_accounts", [k]).rows))
        if i >= 3:
            hist.append(time.perf_counter() - t)
            versions.append(n)
    hot = st.sql("SELECT c0 FROM h_1 GROUP BY c0 ORDER BY count(*) DESC LIMIT 1")[0][0]
    t = time.perf_counter()
    hot_versions = len(list(st.history("public.pgbench_accounts", [str(hot)]).rows))
    hot_s = time.perf_counter() - t
    txids = [
        r[0]
        for r in st.sql(
            f"SELECT txid FROM _rb_tx WHERE txid > 0 "
            f"USING SAMPLE {samples + 3} ROWS (reservoir, {seed})"
        )
    ]
    txs, tx_rows = [], []
    for i, x in enumerate(txids):
        t = time.perf_counter()
        n = len(list(st.tx(int(x)).rows))
        if i >= 3:
            txs.append(time.perf_counter() - t)
            tx_rows.append(n)
    # "any point of history": a sweep, plus just before each checkpoint (where the most
    # history since the previous one has to be folded), all warm
    sweep: list[tuple[str, Any]] = [
        (f"{i * 5}%", AtTime(lo + (hi - lo) * i / 20)) for i in range(1, 20)
    ]
    cps = st.sql(
        "SELECT c.pos, min(t.txid) FROM _rb_checkpoints c JOIN _rb_tx t "
        "ON c.pos BETWEEN t.pos_lo AND t.pos_hi GROUP BY c.pos ORDER BY c.pos"
    )
    sweep += [(f"before checkpoint @{pos:,}", BeforeTx(int(x))) for pos, x in cps]
    worst = ("", 0.0)
    for label, point in sweep:
        t = time.perf_counter()
        sum(1 for _ in st.asof("public.pgbench_accounts", point).rows)
        took = time.perf_counter() - t
        worst = max(worst, (label, took), key=lambda w: w[1])
    st.close()
    out.update(
        history_p50_s=percentile(hist, 50),
        history_p99_s=percentile(hist, 99),
        history_versions_mean=sum(versions) / max(1, len(versions)),
        history_hot_s=hot_s,
        history_hot_versions=hot_versions,
        tx_p50_s=percentile(txs, 50),
        tx_p99_s=percentile(txs, 99),
        tx_rows_mean=sum(tx_rows) / max(1, len(tx_rows)),
        asof_worst_s=worst[1],
        asof_worst_at=worst[0],
        asof_points=len(sweep),
    )
    return out


def _cached_store(
    ctx: Ctx, rows: int, changes: int, seed: int
) -> tuple[Path, dict[str, Any] | None]:
    """The store for these sizes, built now (returning the build's figures) or reused."""
    path = ctx.out / "cache" / f"timetravel-v{GENERATOR}-{rows}-{changes}-{seed}"
    meta = path / "build.json"
    if meta.exists():
        return path, None
    shutil.rmtree(path, ignore_errors=True)
    log(f"{NAME}: building the store ({rows:,} rows, {changes:,} changes) in {path}")
    got = child(f"{__name__}:build", store=str(path), rows=rows, changes=changes, seed=seed)
    got["built"] = datetime.now(UTC).isoformat(timespec="seconds")
    got["commit"] = machine()["commit"]  # a store built by other code may differ in layout
    meta.write_text(json.dumps(got))
    return path, got


def run(ctx: Ctx) -> BenchResult:
    rows = 50_000 if ctx.quick else 1_000_000
    changes = 500_000 if ctx.quick else 10_000_000
    samples = 30 if ctx.quick else 100
    seed = 7
    path, built = _cached_store(ctx, rows, changes, seed)
    meta = json.loads((path / "build.json").read_text())
    res = BenchResult(
        NAME,
        params={
            "rows": rows,
            "changes": changes,
            "store": str(path.relative_to(ctx.out.parent.parent)),
            "store_mb": round((path / "rowback.duckdb").stat().st_size / 2**20, 1),
            "history_ops": meta["ops"],
            "built": meta["built"],
            "checkpoints": meta.get("checkpoints"),
            "samples": samples,
        },
    )
    if built is None:
        res.notes.append(
            f"reused the store built {meta['built']} at commit {meta.get('commit', '?')}; "
            f"delete {path} to rebuild (do so after store-format changes)"
        )
    runs = []
    for k in range(ctx.runs):
        log(f"{NAME}: run {k + 1}/{ctx.runs}")
        runs.append(child(f"{__name__}:query", store=str(path), seed=seed + k, samples=samples))
    if ctx.profile:
        log(f"{NAME}: an extra run under cProfile")
        prof = ctx.out / f"{NAME}.prof"
        child(f"{__name__}:query", profile=prof, store=str(path), seed=seed, samples=samples)
        res.notes.append(
            f"an extra run ran under cProfile (not in the figures): bench/out/{NAME}.txt"
        )
    rss = [r["peak_rss_mb"] for r in runs]
    ms = 1000.0
    res.params["asof_rows"] = {
        "recent": runs[0]["asof_recent_rows"],
        "middle": runs[0]["asof_middle_rows"],
    }
    res.params["history_versions_mean"] = round(runs[0]["history_versions_mean"], 1)
    res.params["history_hot_versions"] = runs[0]["history_hot_versions"]
    res.params["tx_rows_mean"] = round(runs[0]["tx_rows_mean"], 2)
    res.params["warm_asof_s"] = {
        "recent": [round(r["asof_recent_warm_s"], 3) for r in runs],
        "middle": [round(r["asof_middle_warm_s"], 3) for r in runs],
    }
    if built is not None:
        res.figures += [
            Figure(
                "build: store write rate",
                "changes/s",
                [changes / built["changes_write_s"]],
                [built["peak_rss_mb"]],
                note="DuckDBStore.write, 100k-change batches, one table",
            ),
            Figure(
                "build: snapshot write rate",
                "rows/s",
                [rows / built["snapshot_write_s"]],
                [built["peak_rss_mb"]],
            ),
        ]
        if built["checkpoint_writes"] and built["write_p50_s"]:
            extra = [s - built["write_p50_s"] for s, _ in built["checkpoint_writes"]]
            res.figures.append(
                Figure(
                    "build: a checkpoint's cost in its write",
                    "ms",
                    [e * 1000 for e in extra],
                    [built["peak_rss_mb"]],
                    better="lower",
                    shown_runs=1,
                    note=f"{len(extra)} checkpoints of "
                    f"{min(r for _, r in built['checkpoint_writes']):,}–"
                    f"{max(r for _, r in built['checkpoint_writes']):,} rows; write time minus "
                    "the median 100k-change write",
                )
            )
    res.figures += [
        Figure("open store", "ms", [r["open_s"] * ms for r in runs], rss, better="lower"),
        Figure(
            "asof whole table @99%",
            "ms",
            [r["asof_recent_s"] * ms for r in runs],
            rss,
            target=1000,
            better="lower",
        ),
        Figure(
            "asof whole table @50%",
            "ms",
            [r["asof_middle_s"] * ms for r in runs],
            rss,
            target=1000,
            better="lower",
        ),
        Figure(
            "asof whole table, worst point (warm)",
            "ms",
            [r["asof_worst_s"] * ms for r in runs],
            rss,
            target=1000,
            better="lower",
            note=f"{runs[0]['asof_points']} points: 5%..95% of the time span, and just before "
            "each checkpoint; worst at " + ", ".join(r["asof_worst_at"] for r in runs),
        ),
        Figure(
            "history p50 (random key)",
            "ms",
            [r["history_p50_s"] * ms for r in runs],
            rss,
            target=20,
            better="lower",
        ),
        Figure(
            "history p99 (random key)",
            "ms",
            [r["history_p99_s"] * ms for r in runs],
            rss,
            better="lower",
        ),
        Figure(
            "history of hottest key",
            "ms",
            [r["history_hot_s"] * ms for r in runs],
            rss,
            better="lower",
        ),
        Figure("tx p50", "ms", [r["tx_p50_s"] * ms for r in runs], rss, target=20, better="lower"),
        Figure("tx p99", "ms", [r["tx_p99_s"] * ms for r in runs], rss, better="lower"),
    ]
    return res
