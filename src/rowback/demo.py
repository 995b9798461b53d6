"""``rowback demo``: a throwaway PostgreSQL, a small shop under load, and time travel.

The story: capture runs, with detection, while customers order; halfway through, a bad
deploy zeroes every product's price (an UPDATE without WHERE). Detection catches it within
a second and explains it; the policy says a person confirms reverts of products. Later a
runaway job cancels every order: orders revert automatically, while the shop goes on.
Rowback then shows the catalogue as it was just before the deploy, one product's history,
everything the bad transaction did and its impact, and on confirmation reverts it in
PostgreSQL: the prices come back, the orders placed since stay.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from rowback.detect.watch import attach
from rowback.pgserver import PgServer
from rowback.policy import parse_policy
from rowback.render import to_json_value, write_rows
from rowback.sources.postgres.capture import Capture, CaptureConfig
from rowback.store.base import Result
from rowback.store.duckdb import DuckDBStore
from rowback.when import AtTime, BeforeTx

SCHEMA = """
CREATE TABLE customers (
    id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL,
    country char(2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE products (
    id serial PRIMARY KEY, sku text NOT NULL UNIQUE, name text NOT NULL,
    price numeric(10,2) NOT NULL, stock integer NOT NULL, tags text[] NOT NULL DEFAULT '{}');
CREATE TABLE orders (
    id bigserial PRIMARY KEY, customer_id integer NOT NULL REFERENCES customers,
    status text NOT NULL DEFAULT 'new', total numeric(12,2) NOT NULL DEFAULT 0,
    placed_at timestamptz NOT NULL DEFAULT now(), meta jsonb NOT NULL DEFAULT '{}');
CREATE TABLE order_items (
    order_id bigint NOT NULL REFERENCES orders ON DELETE CASCADE,
    line integer NOT NULL, product_id integer NOT NULL REFERENCES products,
    qty integer NOT NULL, price numeric(10,2) NOT NULL, PRIMARY KEY (order_id, line));
INSERT INTO customers (name, email, country)
SELECT 'Customer ' || g, 'c' || g || '@example.com', (ARRAY['DE','FR','US','JP','BR'])[1 + g % 5]
FROM generate_series(1, 500) g;
INSERT INTO products (sku, name, price, stock, tags)
SELECT 'SKU-' || lpad(g::text, 4, '0'), 'Product ' || g, round((5 + g * 1.37)::numeric, 2),
       100 + g, ARRAY['shop', CASE WHEN g % 3 = 0 THEN 'sale' ELSE 'regular' END]
FROM generate_series(1, 40) g;
"""

POLICY = """
[defaults]
action = "alert_only"

[tables."public.products"]
action = "confirm"

[tables."public.orders"]
action = "auto_revert"
"""
"""The demo's rowback.toml: a person confirms reverts of products; orders revert at once."""


def _order(cur: psycopg2.extensions.cursor, rng: random.Random) -> None:
    cur.execute(
        "INSERT INTO orders (customer_id, meta) VALUES (%s, %s) RETURNING id",
        [rng.randint(1, 500), json.dumps({"channel": rng.choice(["web", "app", "phone"])})],
    )
    row = cur.fetchone()
    assert row is not None
    for line in range(1, rng.randint(2, 4)):
        pid, qty = rng.randint(1, 40), rng.randint(1, 3)
        cur.execute(
            "INSERT INTO order_items SELECT %s, %s, id, %s, price FROM products WHERE id = %s",
            [row[0], line, qty, pid],
        )
        cur.execute("UPDATE products SET stock = stock - %s WHERE id = %s", [qty, pid])
    cur.execute(
        "UPDATE orders SET total = (SELECT sum(qty * price) FROM order_items "
        "WHERE order_id = %s) WHERE id = %s",
        [row[0], row[0]],
    )


def _workload(
    dsn: str, seconds: float, progress: Progress, seen: Callable[[], None]
) -> tuple[int, datetime]:
    """Run the shop; return the bad transaction's id and a moment well before it.
    ``seen``: tells what detection found so far (called as the shop runs)."""
    rng = random.Random(7)
    conn = psycopg2.connect(dsn)
    cur = conn.cursor()
    task = progress.add_task("shop workload", total=seconds)
    start = time.monotonic()
    bad_txid = 0
    runaway = False
    earlier = datetime.now(UTC)
    while (elapsed := time.monotonic() - start) < seconds:
        _order(cur, rng)
        if rng.random() < 0.3:
            cur.execute(
                "UPDATE orders SET status = 'shipped' WHERE id = "
                "(SELECT id FROM orders WHERE status = 'new' ORDER BY random() LIMIT 1)"
            )
        if rng.random() < 0.15:
            cur.execute(
                "UPDATE products SET price = round(price * 1.05, 2) WHERE id = %s",
                [rng.randint(1, 40)],
            )
        conn.commit()
        if not bad_txid and elapsed > seconds * 0.6:
            earlier = datetime.now(UTC) - timedelta(seconds=seconds * 0.3)
            cur.execute("SELECT txid_current()")
            got = cur.fetchone()
            assert got is not None
            bad_txid = int(got[0])
            cur.execute("UPDATE products SET price = 0")  # the bad deploy: no WHERE
            conn.commit()
            progress.console.print(
                f"[bold red]bad deploy:[/] transaction {bad_txid} ran "
                "UPDATE products SET price = 0 -- no WHERE"
            )
        if bad_txid and not runaway and elapsed > seconds * 0.8:
            runaway = True
            cur.execute("UPDATE orders SET status = 'cancelled'")  # a runaway job
            conn.commit()
            progress.console.print(
                "[bold red]runaway job:[/] UPDATE orders SET status = 'cancelled' -- every order"
            )
        seen()
        progress.update(task, completed=min(elapsed, seconds))
        time.sleep(0.01)
    conn.close()
    return bad_txid, earlier


def _show(console: Console, title: str, result: Result, limit: int = 8) -> None:
    console.rule(f"[bold]{title}")
    rows = list(result.rows)
    write_rows(sys.stdout, "table", result.columns, rows[:limit], result.types)
    if len(rows) > limit:
        console.print(f"[dim]… {len(rows) - limit} more rows[/]")


def _diff(before: object, after: object, changed: object) -> str:
    """``price: 6.37 → 0.00`` for the columns a version changed, values as JSON shows them."""
    if not isinstance(after, dict):
        return "(row deleted)"
    if not isinstance(before, dict):
        return "(row created)"
    before, after = to_json_value(before, "row"), to_json_value(after, "row")
    assert isinstance(before, dict) and isinstance(after, dict)
    names = changed if isinstance(changed, list) else []
    return "; ".join(f"{n}: {before.get(n)} → {after.get(n)}" for n in names)


def _as_diffs(result: Result, keep: list[str], around: int | None = None) -> Result:
    """A compact view of history/tx results: chosen columns plus a readable diff."""
    idx = {c: i for i, c in enumerate(result.columns)}
    rows = [
        (*(r[idx[c]] for c in keep), _diff(r[idx["before"]], r[idx["after"]], r[idx["changed"]]))
        for r in result.rows
    ]
    if around is not None:  # a few versions either side of that transaction
        at = next((i for i, r in enumerate(rows) if r[keep.index("txid")] == around), 0)
        rows = rows[max(0, at - 3) : at + 3]
    return Result([*keep, "change"], rows, {k: v for k, v in result.types.items() if k in keep})


@contextmanager
def _served(
    store: DuckDBStore, dsn: str, console: Console
) -> Iterator[Callable[[str, dict[str, str]], list[Any]]]:
    """The REST API over ``store`` on a free loopback port, as ``rowback run`` serves it,
    and the policy acting on incidents beside it; yields a function that GETs a path and
    returns its rows."""
    import secrets

    import httpx

    from rowback.api import create_app
    from rowback.api.context import ServiceContext
    from rowback.policy import parse_policy
    from rowback.respond import Responder
    from rowback.service import bind, serving

    token = secrets.token_urlsafe(16)
    sock = bind("127.0.0.1", 0)
    host, port = sock.getsockname()[:2]
    ctx = ServiceContext(store, token, source_dsn=dsn)
    responder = Responder(
        ctx, parse_policy(POLICY, "demo"), lambda m: console.print(f"[bold]policy:[/] {m}")
    )
    responder.start()
    try:
        with (
            serving(create_app(ctx), sock),
            httpx.Client(
                base_url=f"http://{host}:{port}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            ) as client,
        ):

            def ask(path: str, params: dict[str, str]) -> list[Any]:
                r = client.get(path, params=params)
                r.raise_for_status()
                return list(r.json()["rows"])

            yield ask
    finally:
        responder.stop()
        sock.close()


def _cancelled(dsn: str) -> int:
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM orders WHERE status = 'cancelled'")
        got = cur.fetchone()
        return int(got[0]) if got else 0
    finally:
        conn.close()


def _shop_state(dsn: str) -> tuple[int, int, int]:
    """(products at 0.00, orders, sum of stock): what the revert must fix and must keep."""
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT (SELECT count(*) FROM products WHERE price = 0), "
            "(SELECT count(*) FROM orders), (SELECT sum(stock) FROM products)"
        )
        got = cur.fetchone()
        assert got is not None
        return int(got[0]), int(got[1]), int(got[2])
    finally:
        conn.close()


def _settled(store: DuckDBStore, wait: float = 20.0) -> None:
    """Give the policy a moment to finish what it started (the automatic revert)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not any(i.status == "reverting" for i in store.incidents()):
            return
        time.sleep(0.2)


def _incidents(console: Console, store: DuckDBStore) -> None:
    """What detection found, and the impact of the deploy's incident."""
    from rowback.views import incident_doc, incidents_result

    got = incidents_result(store)
    keep = ["id", "tables", "kind", "score", "severity", "status", "rows_affected", "action"]
    idx = [got.columns.index(c) for c in keep]
    rows = [tuple(r[i] for i in idx) for r in got.rows]
    _show(console, "rowback incidents", Result(keep, rows, {"tables": "row"}))
    deploy = _deploy_incident(store)
    if deploy is None:
        console.print("[bold red]detection missed the bad deploy[/]")
        return
    doc = incident_doc(store, deploy.id)
    console.print(f"[bold]rowback incidents show {deploy.id}[/]: {deploy.explanation}")
    from rowback.cli import _impact_lines

    for line in _impact_lines(doc["impact"]):
        console.print(f"  impact: {line}")


def _deploy_incident(store: DuckDBStore) -> Any:
    return next(
        (i for i in store.incidents() if "public.products" in i.tables and i.rows_affected >= 40),
        None,
    )


def _undo(console: Console, store: DuckDBStore, dsn: str, bad_txid: int) -> None:
    """The end of the story: a person approves the deploy's incident, which reverts it in
    PostgreSQL cell by cell, keeping the orders (and the stock they moved) that ran since."""
    from rowback import incidents as ops
    from rowback.revert.plan import Mode
    from rowback.revert.run import Refused, Request, apply_recorded, plan_for

    zeroed, orders, stock = _shop_state(dsn)
    inc = _deploy_incident(store)
    if inc is not None and bad_txid in inc.txids and inc.status == "pending_confirmation":
        console.print(f"[bold]rowback incidents approve {inc.id}[/] (a person confirms)")
        try:
            done = ops.approve(store, inc, dsn).outcome
        except Refused as e:  # a later write to a zeroed price: revert the rest
            console.print(f"  {e}")
            done = ops.approve(store, inc, dsn, Mode.nonconflict).outcome
    else:
        req = Request(txids=[bad_txid], target=dsn, reason="demo: the bad deploy")
        plan = plan_for(store, req)
        console.print(f"[bold]rowback revert --txid {bad_txid}[/] ({plan.n_writes} rows)")
        if plan.refused:
            req = Request(txids=[bad_txid], target=dsn, mode=Mode.nonconflict, reason=req.reason)
            plan = plan_for(store, req)
        done = apply_recorded(store, req, plan)
    after = _shop_state(dsn)
    console.print(
        f"reverted in PostgreSQL by transaction {done.applied.txid} (reversion {done.id}): "
        f"{zeroed} → {after[0]} products at 0.00; orders {orders} → {after[1]}, "
        f"stock {stock} → {after[2]} (the traffic since is intact)"
    )


def _preview(console: Console, dsn: str, store: DuckDBStore) -> None:
    """Next time, ask first: what the deploy's statement would do, rolled back, and what
    detection and the policy would make of it."""
    from rowback.detect.verdict import verdict, verdict_line
    from rowback.whatif import diff, run

    got = run.whatif(dsn, "UPDATE products SET price = 0")
    line = diff.summary_line(diff.summary(got, len(got.changes)))
    judged = verdict_line(verdict(store, got.changes, parse_policy(POLICY, "demo")))
    console.print(
        'next time, ask first: rowback whatif --sql "UPDATE products SET price = 0"\n  '
        + line
        + "\n  "
        + judged
    )


def run_demo(keep: Path | None = None, seconds: float = 12.0) -> None:
    """Run the whole demo; leaves nothing running (the store stays only with ``keep``)."""
    console = Console()
    store_dir = keep or Path(tempfile.mkdtemp(prefix="rowback-demo-"))
    if keep is not None and (keep / "rowback.duckdb").exists():
        raise SystemExit(f"rowback: error: {keep} already holds a store; pick a new directory")
    t0 = time.monotonic()
    with console.status("starting a throwaway PostgreSQL…"):
        server = PgServer(fast=True).start()
    try:
        dsn = server.create_database("shop")
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        conn.cursor().execute(SCHEMA)
        conn.close()
        console.print(f"PostgreSQL on port {server.port}; store in {store_dir}")
        store = DuckDBStore(store_dir)
        attach(store, parse_policy(POLICY, "demo"))
        cap = Capture(CaptureConfig(dsn, flush_interval=0.2), store)
        thread = threading.Thread(target=cap.run, name="capture", daemon=True)
        thread.start()
        with _served(store, dsn, console) as ask:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TimeRemainingColumn(),
                console=console,
            ) as progress:
                bad_txid, earlier = _workload(dsn, seconds, progress, lambda: None)
            _settled(store)
            console.print(f"orders still cancelled after the automatic revert: {_cancelled(dsn)}")
            # the shadow is live: ask the API while capture keeps writing
            live = ask("/api/v1/tables/products/asof", {"at": "now", "filter": "price:eq:0"})
            console.print(
                f"while capturing, over the REST API: {len(live)} products now cost 0.00 "
                f"(GET /api/v1/tables/products/asof?at=now&filter=price:eq:0)"
            )
        cap.stop()
        thread.join()
        with console.status("catching up…"):
            status = Capture(CaptureConfig(dsn, once=True), store).run()
        total = store.sql("SELECT count(*) FROM _rb_tx")[0][0]
        console.print(
            f"captured {len(status.tables)} tables; {total:,} transactions in the shadow; "
            f"{status.gaps} gaps"
        )
        ago = int((datetime.now(UTC) - earlier).total_seconds())
        _show(
            console,
            "products right now (after the bad deploy)",
            store.asof("products", AtTime(datetime.now(UTC))),
        )
        _show(
            console,
            f"products as of tx:{bad_txid} (just before the bad deploy)",
            store.asof("products", BeforeTx(bad_txid)),
        )
        _show(
            console,
            f"orders as of {ago} seconds ago (--at -{ago}s)",
            store.asof("orders", AtTime(earlier)),
            5,
        )
        hist = _as_diffs(store.history("products", ["1"]), ["time", "txid", "op"], bad_txid)
        _show(console, f"history of product 1 around tx {bad_txid}", hist)
        did = _as_diffs(store.tx(bad_txid), ["table", "op", "key"])
        _show(console, f"transaction {bad_txid}: everything it did", did, 5)
        _incidents(console, store)
        _undo(console, store, dsn, bad_txid)
        _preview(console, dsn, store)
        store.close()
        console.rule()
        where = f"--store {store_dir}"
        console.print(f"done in {time.monotonic() - t0:.1f} s.")
        if keep is not None:
            console.print(
                "Try it yourself:\n"
                f"  rowback asof public.products --at tx:{bad_txid} {where}\n"
                f"  rowback history public.products --key 1 {where}\n"
                f"  rowback tx {bad_txid} {where} --format json\n"
                f"  rowback reversions {where}"
            )
    finally:
        server.stop()
        if keep is None:
            shutil.rmtree(store_dir, ignore_errors=True)
