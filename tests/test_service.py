"""``rowback run`` end to end: a real PostgreSQL under a running workload, the service in
its own process, real HTTP clients and the real CLI asking it."""

from __future__ import annotations

import os
import random
import signal
import stat
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg2
import pytest
from service_helpers import cli, running, start

SCHEMA = (
    "CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL, note text);"
    "CREATE TABLE item (sku text PRIMARY KEY, qty int, price numeric(10,2));"
    "INSERT INTO acct SELECT g, 100, 'n' || g FROM generate_series(1, 50) g;"
    "INSERT INTO item SELECT 's' || g, g, g * 1.25 FROM generate_series(1, 20) g;"
)


def connect(dsn: str) -> Any:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def pg_rows(cur: Any, table: str) -> list[dict[str, Any]]:
    """The table as the API prints it: numeric as PostgreSQL's text, keys in order."""
    if table == "acct":
        cur.execute("SELECT id, bal, note FROM acct ORDER BY id")
        return [{"id": r[0], "bal": r[1], "note": r[2]} for r in cur.fetchall()]
    cur.execute("SELECT sku, qty, price::text FROM item ORDER BY sku")
    return [{"sku": r[0], "qty": r[1], "price": r[2]} for r in cur.fetchall()]


class Workload(threading.Thread):
    """Small random transactions on both tables; after some, it notes the LSN just past
    its commit and both tables as committed (it is the only writer, so they match)."""

    def __init__(self, dsn: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.conn = connect(dsn)
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.samples: list[tuple[int, dict[str, list[dict[str, Any]]]]] = []
        self.commits = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        cur = self.conn.cursor()
        try:
            while not self.stop.is_set():
                cur.execute("BEGIN")
                for _ in range(self.rng.randint(1, 5)):
                    k = self.rng.randint(1, 80)
                    r = self.rng.random()
                    if r < 0.5:
                        cur.execute("UPDATE acct SET bal = bal + %s WHERE id = %s", [r, k])
                    elif r < 0.7:
                        cur.execute(
                            "INSERT INTO acct VALUES (%s, 0, 'new') ON CONFLICT (id) "
                            "DO UPDATE SET note = 'again'",
                            [k],
                        )
                    elif r < 0.8:
                        cur.execute("DELETE FROM acct WHERE id = %s", [k])
                    else:
                        cur.execute(
                            "UPDATE item SET qty = qty + 1, price = price + 0.01 WHERE sku = %s",
                            [f"s{k % 25}"],
                        )
                cur.execute("COMMIT")
                self.commits += 1
                if self.commits % 25 == 0:
                    cur.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
                    lsn = int(cur.fetchone()[0])
                    state = {t: pg_rows(cur, t) for t in ("acct", "item")}
                    self.samples.append((lsn, state))
                time.sleep(0.002)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def lsn_text(lsn: int) -> str:
    return f"lsn:{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def confirmed(svc: Any) -> int:
    doc = svc.get("/api/v1/status").json()
    pos = doc["sources"][0]["position"]
    hi, lo = pos.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def wait_confirmed(svc: Any, lsn: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while confirmed(svc) < lsn:
        assert time.monotonic() < deadline, f"capture never reached {lsn_text(lsn)}"
        time.sleep(0.05)


@pytest.fixture
def shop(pg_dsn: str) -> str:
    conn = connect(pg_dsn)
    conn.cursor().execute(SCHEMA)
    conn.close()
    return pg_dsn


def test_reads_during_capture_equal_postgres_at_sampled_moments(shop: str, tmp_path: Path) -> None:
    """While the service captures a running workload, as-of over HTTP and through the CLI
    gives what PostgreSQL had at each sampled moment, once capture has confirmed it."""
    store = tmp_path / "store"
    work = Workload(shop, seed=1)
    with running(store, "--source", shop) as svc:
        work.start()
        checked = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline or checked < 6:
            assert work.error is None, work.error
            if len(work.samples) <= checked:
                time.sleep(0.05)
                continue
            lsn, want = work.samples[checked]
            wait_confirmed(svc, lsn)
            for table in ("acct", "item"):
                got = svc.rows(f"/api/v1/tables/{table}/asof", at=lsn_text(lsn))
                assert got == want[table], f"{table} at {lsn_text(lsn)} over HTTP"
            if checked % 3 == 0:  # the CLI is a process per call: sample it less often
                out = cli("asof", "acct", "--at", lsn_text(lsn), "-f", "json", store=store)
                assert [orjson.loads(x) for x in out.stdout.splitlines()] == want["acct"]
            checked += 1
        work.stop.set()
        work.join(10)
        assert work.commits > 50
        # the store directory says where the service is, for its owner only
        mode = stat.S_IMODE(os.stat(store / "service.json").st_mode)
        assert mode == 0o600
        online = {
            args: cli(*args, store=store).stdout
            for args in [
                ("asof", "acct", "--at", lsn_text(work.samples[-1][0]), "-f", "csv"),
                ("asof", "acct", "--at", lsn_text(work.samples[-1][0]), "--where", "bal > 100"),
                ("history", "acct", "--key", "7", "-f", "json"),
                ("changes", "--table", "item", "-f", "json"),
                ("tables",),
                ("tx", _some_txid(svc), "-f", "json"),
            ]
        }
        assert svc.stop() == 0
    assert not (store / "service.json").exists(), "a clean stop removes the service file"
    for args, text in online.items():  # offline, the same bytes
        assert cli(*args, store=store).stdout == text, args


def _some_txid(svc: Any) -> str:
    rows = svc.rows("/api/v1/changes", table="acct")
    return str(next(r["txid"] for r in rows if r["op"] == "update"))


def test_requests_without_the_token_are_refused(shop: str, tmp_path: Path) -> None:
    with running(tmp_path / "store", "--source", shop) as svc:
        for path in ("/api/v1/tables", "/api/v1/status", "/api/v1/openapi.json"):
            bare = httpx.get(svc.url + path)
            assert bare.status_code == 401
            assert bare.headers["content-type"] == "application/problem+json"
            wrong = httpx.get(svc.url + path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert svc.get(path).status_code == 200
        # probes stay open to a supervisor
        assert httpx.get(svc.url + "/healthz").status_code == 200
        assert httpx.get(svc.url + "/readyz").json() == {"status": "ready"}
        spec = svc.get("/api/v1/openapi.json").json()
        assert spec["openapi"].startswith("3.")
        assert "/api/v1/tables/{table}/asof" in spec["paths"]


def test_status_reports_position_lag_slot_tables_and_quarantine(shop: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with running(store, "--source", shop) as svc:
        conn = connect(shop)
        conn.cursor().execute("UPDATE acct SET bal = 1 WHERE id = 1")
        cur = conn.cursor()
        cur.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
        wait_confirmed(svc, int(cur.fetchone()[0]))
        doc = svc.get("/api/v1/status").json()
        assert doc["ready"] is True
        (src,) = doc["sources"]
        assert src["source"] == "postgres" and src["state"] == "streaming"
        assert src["tables"] == {"public.acct": 50, "public.item": 20}
        assert src["rows"] == 70 and src["quarantined"] == 0
        assert src["lag_bytes"] is not None and src["lag_bytes"] >= 0
        assert src["slot_retained_bytes"] is not None and src["slot_retained_bytes"] >= 0
        assert src["last_write"] is not None and src["lag_s"] is not None
        table = cli("status", store=store).stdout
        assert "streaming" in table and "public.acct" in table
        (line,) = cli("status", "-f", "json", store=store).stdout.splitlines()
        assert orjson.loads(line)["tables"] == {"public.acct": 50, "public.item": 20}
        conn.close()
    (line,) = cli("status", "-f", "json", store=store).stdout.splitlines()
    offline = orjson.loads(line)
    assert offline["state"] == "stopped" and offline["lag_bytes"] is None
    assert offline["position"] == src["position"] or offline["position"] > src["position"]


def test_kill9_under_load_then_restart_loses_and_doubles_nothing(shop: str, tmp_path: Path) -> None:
    """kill -9 of the service at random moments while writers commit; after a restart
    every row's history is exactly the versions the writers committed."""
    conn = connect(shop)
    conn.cursor().execute(
        "CREATE TABLE ver (id int PRIMARY KEY, v int NOT NULL);"
        "INSERT INTO ver SELECT g, 0 FROM generate_series(1, 40) g"
    )
    events: dict[int, list[int]] = {k: [0] for k in range(1, 41)}
    stop = threading.Event()
    rng = random.Random(9)

    def write() -> None:
        cur = conn.cursor()
        while not stop.is_set():
            cur.execute("BEGIN")
            ks = rng.sample(range(1, 41), rng.randint(1, 6))
            for k in ks:
                cur.execute("UPDATE ver SET v = v + 1 WHERE id = %s RETURNING v", [k])
                events[k].append(int(cur.fetchone()[0]))
            cur.execute("COMMIT")
            time.sleep(0.003)

    store = tmp_path / "store"
    writer = threading.Thread(target=write, daemon=True)
    svc = start(store, "--source", shop)
    writer.start()
    for _ in range(3):
        time.sleep(rng.uniform(0.3, 1.5))
        svc.stop(signal.SIGKILL)
        time.sleep(rng.uniform(0.0, 0.5))
        svc = start(store, "--source", shop)
    time.sleep(0.5)
    stop.set()
    writer.join(10)
    cur = conn.cursor()
    cur.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
    wait_confirmed(svc, int(cur.fetchone()[0]))
    got: dict[int, list[int]] = defaultdict(list)
    for r in svc.rows("/api/v1/changes", table="ver", format="json"):
        got[int(r["key"]["id"])].append(int(r["changed"]["v"]))
    assert svc.stop() == 0
    assert dict(got) == events
    conn.close()


def test_reads_hammering_the_service_do_not_hold_capture_back(shop: str, tmp_path: Path) -> None:
    """Eight clients read history and as-of as fast as they can while the workload runs;
    every read succeeds and capture still confirms each commit within seconds."""
    store = tmp_path / "store"
    work = Workload(shop, seed=2)
    with running(store, "--source", shop) as svc:
        stop = threading.Event()
        failures: list[str] = []
        reads = [0]

        def hammer(i: int) -> None:
            with httpx.Client(base_url=svc.url, headers=svc.http.headers, timeout=30) as c:
                while not stop.is_set():
                    if i % 2:
                        r = c.get("/api/v1/tables/acct/history", params={"key": str(i)})
                    else:
                        r = c.get("/api/v1/tables/acct/asof", params={"at": "now"})
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    reads[0] += 1

        clients = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(8)]
        work.start()
        for c in clients:
            c.start()
        time.sleep(6)
        lsn, want = work.samples[-1]
        started = time.monotonic()
        wait_confirmed(svc, lsn, timeout=10)
        behind = time.monotonic() - started
        stop.set()
        work.stop.set()
        for c in clients:
            c.join(30)
        work.join(10)
        assert not failures, failures[:3]
        assert reads[0] > 50
        assert behind < 5, f"capture took {behind:.1f} s to confirm a commit under reads"
        assert svc.rows("/api/v1/tables/acct/asof", at=lsn_text(lsn)) == want["acct"]


def test_sigint_stops_cleanly_and_a_non_loopback_address_warns(shop: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    svc = start(store, "--source", shop, "--listen", "0.0.0.0:0")
    assert "warning: listening on 0.0.0.0" in svc.stderr()
    assert svc.get("/api/v1/tables").status_code == 200
    assert svc.stop(signal.SIGINT) == 0
    assert not (store / "service.json").exists()
    # once stopped, the read commands open the store themselves again
    assert "public.acct" in cli("tables", store=store).stdout


def test_a_taken_port_fails_with_one_line(shop: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        got = cli(
            "run",
            "--source",
            shop,
            "--listen",
            f"127.0.0.1:{port}",
            store=tmp_path / "store",
            ok=False,
        )
    assert got.returncode == 1
    assert got.stderr.strip().count("\n") == 0
    assert f"cannot listen on 127.0.0.1:{port}" in got.stderr
