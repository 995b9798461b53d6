"""store_size: bytes per change event in pgbench_accounts' history table, vs Debezium JSON.

A capture of ``public.pgbench_accounts`` only (snapshot of SCALE × 100k rows), then
``pgbench -c 4 -j 2 -t N`` (one accounts UPDATE per transaction: only ``abalance``
changes, the differential layout stores just that column), drained into the store.

Sizes (see :mod:`bench.duck_size` for the method): the history table ``h_N`` copied in
its stored order into a DuckDB file holding only it, after CHECKPOINT, minus the same
file with the table empty. Per event = that / history rows (snapshot rows included, as
in the research); the marginal size of an update event and of a snapshot row come from
copying only those rows. For reference: the whole store file (head table, transaction
log and catalog included) per event, and the same events as Debezium JSON
(:mod:`bench.debezium_json`), counted while capture wrote them.

Sizes are deterministic for given data, so this benchmark builds the data once; its
"runs" column is 1.
"""

from __future__ import annotations

import math
import time
from typing import Any

from bench import pg as pgb
from bench.harness import BenchResult, Ctx, Figure, child, log

NAME = "store_size"
TABLE = "public.pgbench_accounts"


def capture(dsn: str, store: str) -> dict[str, Any]:
    """Capture ``TABLE`` once, counting the Debezium JSON size of what is written."""
    from bench.debezium_json import DebeziumMeter
    from rowback.sources.postgres.capture import Capture, CaptureConfig
    from rowback.store.duckdb import DuckDBStore

    st = DuckDBStore(store)
    meter = DebeziumMeter(st, TABLE)
    cfg = CaptureConfig(dsn, slot="rb_size", publication="rb_size", tables=[TABLE], once=True)
    t = time.perf_counter()
    status = Capture(cfg, meter).run()  # type: ignore[arg-type]
    seconds = time.perf_counter() - t
    st.close()
    return {
        "seconds": seconds,
        "snapshot_rows": status.snapshot_rows,
        "changes": status.changes,
        "events": meter.events,
        "value_bytes": meter.value_bytes,
        "key_bytes": meter.key_bytes,
    }


def measure(store: str) -> dict[str, Any]:
    """Sizes of the accounts history table: alone, snapshot rows only, changes only."""
    from pathlib import Path

    import duckdb

    from bench.duck_size import copy_size, in_place_blocks

    file = Path(store) / "rowback.duckdb"
    con = duckdb.connect(str(file), read_only=True)
    tid = con.execute(
        "SELECT id FROM _rb_tables WHERE schema_name = 'public' AND table_name = 'pgbench_accounts'"
    ).fetchone()[0]
    hist = f"h_{tid}"
    ops = dict(con.execute(f"SELECT _op, count(*) FROM {hist} GROUP BY _op").fetchall())
    in_place = in_place_blocks(con, hist)
    store_used = [r for r in con.execute("PRAGMA database_size").fetchall()][0]
    ckpt = f"k_{tid}"
    cps = con.execute(
        "SELECT count(*), coalesce(sum(rows), 0) FROM _rb_checkpoints WHERE table_id = ?", [tid]
    ).fetchone()
    con.close()
    return {
        "checkpoints": {"count": cps[0], "rows": int(cps[1])},
        "checkpoint_table": copy_size(file, ckpt, order="_cp, c0") if cps[0] else None,
        "table": hist,
        "ops": {str(k): v for k, v in ops.items()},
        "all": copy_size(file, hist),
        "snapshot_only": copy_size(file, hist, "_op = 0"),
        "changes_only": copy_size(file, hist, "_op <> 0"),
        "in_place_block_bytes": in_place,
        "store_used_bytes": int(store_used[2]) * int(store_used[4]),
        "store_file_bytes": file.stat().st_size,
    }


def run(ctx: Ctx) -> BenchResult:
    scale = 1 if ctx.quick else 10
    transactions = 20_000 if ctx.quick else 1_000_000
    per_client = math.ceil(transactions / 4)
    work = ctx.work_dir(NAME)
    store = str(work / "store")
    res = BenchResult(
        NAME,
        params={"scale": scale, "pgbench": f"-c 4 -j 2 -t {per_client}", "table": TABLE},
    )
    pg = pgb.server(fast=True)
    try:
        pgb.pgbench_init(pg, scale)
        log(f"{NAME}: snapshot")
        snap = child(f"{__name__}:capture", dsn=pg.dsn(), store=store)
        log(f"{NAME}: pgbench -c 4 -j 2 -t {per_client}")
        pgb.pgbench(pg, "-c", "4", "-j", "2", "-t", str(per_client))
        log(f"{NAME}: drain")
        drain = child(f"{__name__}:capture", dsn=pg.dsn(), store=store)
    finally:
        pg.stop()
    log(f"{NAME}: measuring")
    m = child(f"{__name__}:measure", store=store)
    events = {k: snap["events"][k] + drain["events"][k] for k in ("snapshot", "change")}
    value = {k: snap["value_bytes"][k] + drain["value_bytes"][k] for k in events}
    key = {k: snap["key_bytes"][k] + drain["key_bytes"][k] for k in events}
    total_events = sum(events.values())
    rows = m["all"]["rows"]
    if rows != total_events:
        res.notes.append(f"history rows {rows} differ from events written {total_events}")
    ours = m["all"]["bytes"] / rows
    deb = (value["snapshot"] + value["change"]) / total_events
    deb_kv = deb + (key["snapshot"] + key["change"]) / total_events
    deb_change = value["change"] / max(1, events["change"])
    ours_change = m["changes_only"]["bytes"] / max(1, m["changes_only"]["rows"])
    rss = [m["peak_rss_mb"]]
    res.params.update(
        events=events,
        history_ops=m["ops"],
        history_bytes=m["all"]["bytes"],
        columns_bytes={c: v["bytes"] for c, v in m["all"]["columns"].items()},
        columns_compression={c: v["compression"] for c, v in m["all"]["columns"].items()},
        change_columns_bytes={c: v["bytes"] for c, v in m["changes_only"]["columns"].items()},
        in_place_block_bytes=m["in_place_block_bytes"],
        checkpoints=m["checkpoints"],
        checkpoint_bytes=(m["checkpoint_table"] or {}).get("bytes"),
        checkpoint_columns_bytes={
            c: v["bytes"] for c, v in (m["checkpoint_table"] or {"columns": {}})["columns"].items()
        },
        store_file_bytes=m["store_file_bytes"],
        capture_rss_mb=[snap["peak_rss_mb"], drain["peak_rss_mb"]],
    )
    res.figures += [
        Figure(
            "history B/event (all events)",
            "B/event",
            [ours],
            rss,
            target=16,
            better="lower",
            peer="Debezium JSON ÷ ours",
            peer_ratio=deb / ours,
            note=f"{rows:,} rows of {m['table']} alone in a new file after CHECKPOINT",
        ),
        Figure(
            "history B/event (updates only)",
            "B/event",
            [ours_change],
            rss,
            target=16,
            better="lower",
            peer="Debezium JSON ÷ ours",
            peer_ratio=deb_change / ours_change,
        ),
        Figure(
            "history B/row (snapshot rows only)",
            "B/row",
            [m["snapshot_only"]["bytes"] / max(1, m["snapshot_only"]["rows"])],
            rss,
            better="lower",
        ),
        Figure(
            "history in place B/event (upper bound)",
            "B/event",
            [m["in_place_block_bytes"] / rows],
            rss,
            better="lower",
            note="distinct 256 KiB blocks h_N occupies in the store's own file",
        ),
        Figure(
            "whole store file B/event",
            "B/event",
            [m["store_file_bytes"] / rows],
            rss,
            better="lower",
            note="includes the head table (current row per key as text), tx log, catalog",
        ),
        Figure(
            "checkpoints B/event (all events)",
            "B/event",
            [(m["checkpoint_table"] or {"bytes": 0})["bytes"] / rows],
            rss,
            better="lower",
            note=f"k_N: {m['checkpoints']['count']} checkpoint(s), "
            f"{m['checkpoints']['rows']:,} rows, beside the history above",
        ),
        Figure(
            "checkpoints B/row (per checkpoint row)",
            "B/row",
            [(m["checkpoint_table"] or {"bytes": 0})["bytes"] / max(1, m["checkpoints"]["rows"])],
            rss,
            better="lower",
        ),
        Figure("Debezium JSON value B/event", "B/event", [deb], better="lower"),
        Figure("Debezium JSON key+value B/event", "B/event", [deb_kv], better="lower"),
    ]
    return res
