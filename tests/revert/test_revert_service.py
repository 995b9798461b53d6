"""``rowback revert`` through a running ``rowback run``: the CLI asks the service, which
plans from a snapshot, applies to PostgreSQL and records the reversion while capture
keeps writing the same store."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pgcap import TableState, execute, pg_connect
from reverting import expected_after, in_tx, state
from service_helpers import Service, cli, running


@pytest.fixture
def shop(pg_dsn: str) -> str:
    execute(
        pg_dsn,
        "CREATE TABLE products (id int PRIMARY KEY, name text, price numeric(10,2), stock int)",
        "INSERT INTO products SELECT g, 'p' || g, g * 1.25, 10 FROM generate_series(1, 20) g",
        "CREATE TABLE orders (id int PRIMARY KEY, qty int)",
        "INSERT INTO orders SELECT g, 0 FROM generate_series(1, 10) g",
    )
    return pg_dsn


def damage(dsn: str) -> tuple[int, TableState]:
    """The bad deploy, then a later edit of another column of a damaged row."""
    before = state(dsn)
    bad = in_tx(dsn, "UPDATE products SET price = 0")
    execute(dsn, "UPDATE products SET stock = stock - 1 WHERE id = 3")
    return bad, before


class Orders(threading.Thread):
    """Other traffic while the revert runs: capture keeps writing the store."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.stop, self.commits = dsn, threading.Event(), 0

    def run(self) -> None:
        conn = pg_connect(self.dsn)
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute(
                        "UPDATE orders SET qty = qty + 1 WHERE id = %s", [self.commits % 10 + 1]
                    )
                    self.commits += 1
                    time.sleep(0.005)
        finally:
            conn.close()


def lines(text: str) -> list[Any]:
    return [orjson.loads(x) for x in text.splitlines()]


def test_cli_reverts_through_the_service_while_it_captures(shop: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with running(store, "--source", shop) as svc:
        bad, before = damage(shop)
        plan_args = ("revert", "--txid", str(bad), "--target", shop, "--dry-run")
        online = {f: cli(*plan_args, "-f", f, store=store) for f in ("table", "json")}
        assert len(lines(online["json"].stdout)) == 20
        sql = tmp_path / "revert.sql"
        wrote = cli("revert", "--txid", str(bad), "--target", shop, "--sql", str(sql), store=store)
        assert "wrote 20 guarded statement(s)" in wrote.stderr
        assert sql.read_text().count("UPDATE ") == 20
        assert svc.stop() == 0
    for f, got in online.items():  # offline, the same plan, byte for byte
        offline = cli(*plan_args, "-f", f, store=store)
        assert (offline.stdout, offline.stderr) == (got.stdout, got.stderr), f

    orders = Orders(shop)
    with running(store, "--source", shop) as svc:
        orders.start()
        try:
            args = ("--txid", str(bad), "--target", shop, "--reason", "bad deploy")
            got = cli("revert", *args, "-f", "json", store=store)
        finally:
            orders.stop.set()
            orders.join(10)
        assert orders.commits > 0
        (result,) = lines(got.stdout)
        assert result["rows"] == 20 and result["missed"] == 0 and result["conflicts"] == 0
        assert state(shop).rows == expected_after(before)
        listed = svc.rows("/api/v1/reversions")
        assert [(r["id"], r["status"], r["who"], r["reason"]) for r in listed] == [
            (result["reversion"], "applied", "api", "bad deploy")
        ]
        assert listed[0]["txid"] == result["txid"] and listed[0]["selection"]["txids"] == [bad]
        online_list = {f: cli("reversions", "-f", f, store=store).stdout for f in ("json", "table")}
        assert lines(online_list["json"]) == listed
        # the undo goes through the service too, and marks the first one undone
        first = str(result["reversion"])
        (undo,) = lines(
            cli("revert", "--reversion", first, "--target", shop, "-f", "json", store=store).stdout
        )
        assert undo["rows"] == 20
        assert state(shop).rows[("3",)]["price"] == "0.00"  # the damage is back
        statuses = {r["id"]: (r["status"], r["undoes"]) for r in svc.rows("/api/v1/reversions")}
        assert statuses == {
            result["reversion"]: ("undone", None),
            undo["reversion"]: ("applied", result["reversion"]),
        }
        online_list = {f: cli("reversions", "-f", f, store=store).stdout for f in ("json", "table")}
        assert svc.stop() == 0
    for f, text in online_list.items():
        assert cli("reversions", "-f", f, store=store).stdout == text, f


def post(svc: Service, body: dict[str, Any]) -> httpx.Response:
    return svc.http.post("/api/v1/reversions", json=body)


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = r.json()
    return doc


def test_http_dry_run_writes_nothing_and_bad_bodies_name_the_field(
    shop: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    with running(store, "--source", shop) as svc:
        bad, _ = damage(shop)
        now = state(shop).rows
        r = post(svc, {"txids": [bad], "target": shop, "dry_run": True})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["writes"] == 20 and doc["conflicts"] == [] and doc["refused"] is False
        three = next(x for x in doc["rows"] if x["key"] == {"id": "3"})
        assert (three["current"], three["expected"], three["target"]) == ("0.00", "0.00", "3.75")
        assert state(shop).rows == now
        assert svc.rows("/api/v1/reversions") == []

        for body, status, name in [
            ({"txids": "x", "target": shop}, 400, "txids"),
            ({"txids": [bad], "mode": "bogus", "target": shop}, 400, "mode"),
            ({"txids": [bad], "target": shop, "colour": "red"}, 400, "colour"),
            ({"txids": [bad], "max_rows": 0, "target": shop}, 400, "max_rows"),
            ({"txids": [bad]}, 422, "target"),
            ({"txids": [bad], "since": "yesterday-ish", "dry_run": True}, 400, "since"),
        ]:
            doc = problem(post(svc, body), status)
            assert [p["name"] for p in doc["invalid-params"]] == [name], body

        # a later write to a damaged cell: nocascade refuses, names it, records it
        execute(shop, "UPDATE products SET price = 9.99 WHERE id = 5")
        doc = problem(post(svc, {"txids": [bad], "target": shop}), 409)
        assert len(doc["conflicts"]) == 1 and "(5)" in doc["conflicts"][0]
        (refused,) = svc.rows("/api/v1/reversions")
        assert (refused["id"], refused["status"]) == (doc["reversion"], "refused")
        now[("5",)]["price"] = "9.99"
        assert state(shop).rows == now

        for method, path in [("POST", "/api/v1/reversions"), ("GET", "/api/v1/reversions")]:
            bare = httpx.request(method, svc.url + path, json={"txids": [bad], "target": shop})
            assert bare.status_code == 401
            assert bare.headers["content-type"] == "application/problem+json"
        assert state(shop).rows == now
