"""Detection inside ``rowback run`` against a real PostgreSQL: a damaging statement is
caught, explained and handled by policy (reverted at once, or held for a person, or
expired), alerts reach a real webhook, and kill -9 neither loses nor repeats an incident.

Detection learns only from what capture streams, so each test first runs ordinary
traffic through the running service (the initial snapshot teaches nothing)."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pgcap import execute, pg_connect
from reverting import in_tx
from service_helpers import Service, cli, running, start

ROWS = 10_000


@pytest.fixture
def bank(pg_dsn: str) -> str:
    execute(
        pg_dsn,
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric(12,2)"
        " NOT NULL, kind text NOT NULL)",
        f"INSERT INTO accounts SELECT g, 'owner ' || g, (g % 997) * 3.25 + 10, "
        f"(ARRAY['checking','savings','business'])[1 + g % 3] FROM generate_series(1, {ROWS}) g",
        "CREATE TABLE tellers (id serial PRIMARY KEY, account int NOT NULL, amount numeric(12,2)"
        " NOT NULL)",
    )
    return pg_dsn


def traffic(dsn: str, n: int, seed: int = 1) -> None:
    """Ordinary work: small balance moves of one or two accounts, and teller rows."""
    rng = random.Random(seed)
    conn = pg_connect(dsn, autocommit=False)
    with conn.cursor() as cur:
        for _ in range(n):
            for _ in range(rng.randint(1, 2)):
                cur.execute(
                    "UPDATE accounts SET balance = balance + %s WHERE id = %s",
                    [round(rng.uniform(-20, 20), 2), rng.randint(1, ROWS)],
                )
            cur.execute(
                "INSERT INTO tellers (account, amount) VALUES (%s, %s)",
                [rng.randint(1, ROWS), round(rng.uniform(1, 90), 2)],
            )
            conn.commit()
    conn.close()


class Writer(threading.Thread):
    """Concurrent traffic on other rows (teller inserts) while a revert runs: every one
    it committed must be there afterwards."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.done, self.ids = dsn, threading.Event(), list[int]()

    def run(self) -> None:
        rng = random.Random(9)
        conn = pg_connect(self.dsn)
        with conn.cursor() as cur:
            while not self.done.is_set():
                cur.execute(
                    "INSERT INTO tellers (account, amount) VALUES (%s, %s) RETURNING id",
                    [rng.randint(1, ROWS), round(rng.uniform(1, 90), 2)],
                )
                row = cur.fetchone()
                assert row is not None
                self.ids.append(int(row[0]))
                time.sleep(0.005)
        conn.close()


def incidents(store: Path) -> list[dict[str, Any]]:
    out = cli("incidents", "--format", "json", store=store).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait(cond: Callable[[], Any], timeout: float = 60.0, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError("timed out")


def balances(dsn: str) -> dict[str, str]:
    conn = pg_connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT id, balance FROM accounts")
        got = {str(r[0]): str(r[1]) for r in cur.fetchall()}
    conn.close()
    return got


def caught_up(svc: Service, dsn: str) -> None:
    """Wait until the service stored everything PostgreSQL committed so far."""
    conn = pg_connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_lsn()::text")
        row = cur.fetchone()
    conn.close()
    assert row is not None
    hi, lo = str(row[0]).split("/")
    want = (int(hi, 16) << 32) | int(lo, 16)

    def held() -> bool:
        for s in svc.get("/api/v1/status").json()["sources"]:
            hi, lo = str(s["position"]).split("/")
            if ((int(hi, 16) << 32) | int(lo, 16)) >= want:
                return True
        return False

    wait(held, 60, 0.1)


def policy(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "rowback.toml"
    p.write_text(body)
    return p


def test_auto_revert_of_an_update_without_where_while_traffic_goes_on(
    bank: str, store_path: Path, tmp_path: Path
) -> None:
    cfg = policy(tmp_path, '[tables."public.accounts"]\naction = "auto_revert"\n')
    with running(store_path, "--source", bank, "--config", str(cfg)) as svc:
        traffic(bank, 300)
        caught_up(svc, bank)
        assert incidents(store_path) == [], "ordinary traffic raised an incident"
        before = balances(bank)
        writer = Writer(bank)
        writer.start()
        t0 = time.monotonic()
        bad = in_tx(bank, "UPDATE accounts SET balance = 0")  # no WHERE
        done = wait(lambda: [i for i in incidents(store_path) if i["status"] == "reverted"])
        took = time.monotonic() - t0
        writer.done.set()
        writer.join()
        (inc,) = done
        assert inc["txids"] == [bad] and inc["tables"] == ["public.accounts"]
        assert inc["action"] == "auto_revert" and inc["rows_affected"] == ROWS
        assert 0.8 < inc["score"] <= 1.0
        assert "balance" in inc["explanation"]
        assert balances(bank) == before, "every balance is back"
        conn = pg_connect(bank)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM tellers WHERE id = ANY(%s)", [writer.ids])
            row = cur.fetchone()
        conn.close()
        assert writer.ids and row is not None and int(row[0]) == len(writer.ids)  # none lost
        caught_up(svc, bank)
        (rev,) = [
            json.loads(x)
            for x in cli("reversions", "--format", "json", store=store_path).stdout.splitlines()
        ]
        assert (rev["who"], rev["status"], rev["rows"]) == ("policy", "applied", ROWS)
        # Rowback's own revert is never an incident
        assert [i["id"] for i in incidents(store_path)] == [inc["id"]], incidents(store_path)
    assert took < 30, f"reverted after {took:.1f} s"


REQUIRED = {
    "id",
    "tables",
    "kind",
    "score",
    "severity",
    "status",
    "first_ts",
    "last_ts",
    "detected_at",
    "txids",
    "rows_affected",
    "action",
    "explanation",
}


def test_confirm_shows_impact_then_approve_reverts(
    bank: str, store_path: Path, tmp_path: Path
) -> None:
    cfg = policy(tmp_path, '[tables."public.accounts"]\naction = "confirm"\n')
    with running(store_path, "--source", bank, "--config", str(cfg)) as svc:
        traffic(bank, 300)
        before = balances(bank)
        bad = in_tx(bank, "UPDATE accounts SET balance = balance * 100 WHERE id <= 500")
        execute(bank, "UPDATE accounts SET owner = 'later' WHERE id = 7")  # another column
        caught_up(svc, bank)
        (inc,) = wait(lambda: incidents(store_path))
        assert REQUIRED <= inc.keys()
        assert inc["status"] == "pending_confirmation" and inc["action"] == "confirm"
        assert inc["txids"] == [bad] and inc["rows_affected"] == 500
        assert inc["detected_at"] >= inc["first_ts"]
        shown = json.loads(
            cli("incidents", "show", str(inc["id"]), "--format", "json", store=store_path).stdout
        )
        im = shown["impact"]
        (t,) = im["tables"]
        assert (t["table"], t["rows"], t["updated"]) == ("public.accounts", 500, 500)
        assert t["share"] == pytest.approx(0.05, abs=0.001)
        assert im["numeric"]["public.accounts.balance"]["cells"] == 500
        assert im["numeric"]["public.accounts.balance"]["delta_max"] > 0
        assert shown["detail"]["signals"], "signals say what is normal and what was seen"
        table = cli("incidents", "show", str(inc["id"]), store=store_path).stdout
        assert "impact" in table and "public.accounts: 500 rows" in table
        # a person approves: the revert runs through the service
        got = cli("incidents", "approve", str(inc["id"]), store=store_path)
        assert "reverted by reversion" in got.stderr
        assert balances(bank) == before, "every damaged balance is back, the rest untouched"
        conn = pg_connect(bank)
        with conn.cursor() as cur:
            cur.execute("SELECT owner FROM accounts WHERE id = 7")
            assert cur.fetchone() == ("later",), "a later edit of another column is kept"
        conn.close()
        (now,) = incidents(store_path)
        assert now["status"] == "reverted" and now["reversion"] is not None
        # an approved incident cannot be approved twice
        again = cli("incidents", "approve", str(inc["id"]), store=store_path, ok=False)
        assert again.returncode == 1 and "reverted" in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1


class Hooks(BaseHTTPRequestHandler):
    got: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hooks.got.append((dict(self.headers), body))
        self.send_response(503 if len(Hooks.got) == 1 else 200)  # the first one fails
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_url() -> Iterator[str]:
    Hooks.got = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/rowback"
    server.shutdown()


def test_alerts_reach_a_signed_webhook_and_confirmations_expire(
    bank: str, store_path: Path, tmp_path: Path, hook_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    cfg = policy(
        tmp_path,
        '[defaults]\naction = "confirm"\nconfirm_expires = "3s"\n'
        f'[[webhooks]]\nurl = "{hook_url}"\nsecret_env = "HOOK_SECRET"\n',
    )
    with running(store_path, "--source", bank, "--config", str(cfg)):
        traffic(bank, 300)
        in_tx(bank, "UPDATE accounts SET kind = 'closed'")
        (inc,) = wait(lambda: [i for i in incidents(store_path) if i["status"] == "expired"])
        wait(lambda: len(Hooks.got) >= 3)  # pending (failed once, retried), then expired
    headers, body = Hooks.got[1]
    doc = json.loads(body)
    assert doc["event"] == "incident.pending_confirmation"
    assert doc["incident"]["id"] == inc["id"] and doc["incident"]["impact"]["tables"]
    assert doc["approve"]["command"] == f"rowback incidents approve {inc['id']}"
    stamp = headers["X-Rowback-Timestamp"]
    want = hmac.new(b"s3cret", f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["X-Rowback-Signature"] == f"sha256={want}"
    assert Hooks.got[0][0]["X-Rowback-Delivery"] == headers["X-Rowback-Delivery"]
    assert json.loads(Hooks.got[2][1])["event"] == "incident.expired"


def test_kill_9_during_detection_loses_and_repeats_no_incident(
    bank: str, store_path: Path, tmp_path: Path
) -> None:
    cfg = policy(tmp_path, '[defaults]\naction = "alert_only"\n')
    svc = start(store_path, "--source", bank, "--config", str(cfg))
    traffic(bank, 300)
    caught_up(svc, bank)
    bad = []
    for n in range(3):
        bad.append(in_tx(bank, f"UPDATE accounts SET owner = 'x{n}' WHERE id <= 2000"))
        time.sleep(0.05 * n)  # kill at different moments of its capture and detection
        svc.stop(signal.SIGKILL)
        svc = start(store_path, "--source", bank, "--config", str(cfg))
    caught_up(svc, bank)
    got = incidents(store_path)
    svc.stop()
    found = sorted(t for i in got for t in i["txids"])
    assert found == sorted(bad), got


def test_revert_incident_offline_after_capture_detected_it(
    bank: str, store_path: Path, tmp_path: Path
) -> None:
    """``rowback capture`` detects too; with no service, ``revert --incident`` reverts it."""
    cfg = policy(tmp_path, '[tables."public.accounts"]\naction = "auto_revert"\n')
    cli("capture", "--source", bank, "--once", "--config", str(cfg), store=store_path)
    traffic(bank, 300)
    cli("capture", "--source", bank, "--once", "--config", str(cfg), store=store_path)
    before = balances(bank)
    # asked first, whatif says what detection and the policy would make of it
    statement = "UPDATE accounts SET balance = -balance WHERE id % 2 = 0"
    ask = cli(
        "whatif",
        "--target",
        bank,
        "--sql",
        statement,
        "--config",
        str(cfg),
        "--format",
        "json",
        store=store_path,
    )
    summary = json.loads(ask.stdout.splitlines()[-1])
    assert summary["updated"] == ROWS // 2
    seen = summary["detection"]
    assert seen["score"] > 0.8 and seen["action"] == "auto_revert", seen
    assert "balance" in seen["explanation"]
    assert balances(bank) == before and incidents(store_path) == []  # nothing ran, learned
    calm = cli(
        "whatif",
        "--target",
        bank,
        "--sql",
        "UPDATE accounts SET balance = balance + 1 WHERE id = 5",
        "--config",
        str(cfg),
        store=store_path,
    )
    assert "detection: score" in calm.stderr and "no action" in calm.stderr, calm.stderr
    bad = in_tx(bank, statement)
    cli("capture", "--source", bank, "--once", "--config", str(cfg), store=store_path)
    (inc,) = incidents(store_path)
    # no responder in `capture`: auto_revert waits for a person, as in replay
    assert (inc["txids"], inc["status"]) == ([bad], "pending_confirmation")
    cli("revert", "--incident", str(inc["id"]), "--target", bank, store=store_path)
    assert balances(bank) == before
    (done,) = incidents(store_path)
    assert done["status"] == "reverted"
    rev = json.loads(cli("reversions", "--format", "json", store=store_path).stdout)
    assert rev["selection"]["incident"] == inc["id"]
    again = cli(
        "revert", "--incident", str(inc["id"]), "--target", bank, store=store_path, ok=False
    )
    assert again.returncode == 1 and "is reverted" in again.stderr
    missing = cli("revert", "--incident", "99", "--target", bank, store=store_path, ok=False)
    assert missing.returncode == 1 and "incident 99 is not in the store" in missing.stderr


def _waiting(dsn: str, timeout: float = 30) -> int:
    """The backend of the automatic revert, once it waits on the table lock."""
    conn = pg_connect(dsn)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'UPDATE %%accounts%%'"
                )
                row = cur.fetchone()
            if row is not None:
                return int(row[0])
            time.sleep(0.01)
    finally:
        conn.close()
    raise AssertionError("the automatic revert never waited on the lock")


def test_kill_9_during_an_automatic_revert_then_it_completes_once(
    bank: str, store_path: Path, tmp_path: Path
) -> None:
    cfg = policy(tmp_path, '[tables."public.accounts"]\naction = "auto_revert"\n')
    svc = start(store_path, "--source", bank, "--config", str(cfg))
    traffic(bank, 300)
    caught_up(svc, bank)
    before = balances(bank)
    blocker = pg_connect(bank, autocommit=False)
    conn = pg_connect(bank, autocommit=False)
    with conn.cursor() as cur:
        cur.execute("UPDATE accounts SET balance = 0 WHERE id <= 3000")
    conn.commit()
    conn.close()
    with blocker.cursor() as cur:  # the revert will wait here, inside its transaction
        cur.execute("LOCK TABLE accounts IN SHARE MODE")
    _waiting(bank)
    svc.stop(signal.SIGKILL)  # mid-apply: some rows written in its open transaction
    blocker.rollback()
    blocker.close()
    svc = start(store_path, "--source", bank, "--config", str(cfg))
    try:
        (inc,) = wait(lambda: [i for i in incidents(store_path) if i["status"] == "reverted"])
        assert balances(bank) == before
        revs = [
            json.loads(x)
            for x in cli("reversions", "--format", "json", store=store_path).stdout.splitlines()
        ]
        # the killed one failed (PostgreSQL rolled it back), the next one applied
        assert [(r["status"], r["selection"]["incident"]) for r in revs] == [
            ("failed", inc["id"]),
            ("applied", inc["id"]),
        ]
        assert inc["reversion"] == revs[1]["id"]
    finally:
        svc.stop()


def test_a_big_update_captured_in_pieces_is_judged_once_whole(bank: str, store_path: Path) -> None:
    """Capture writes a 10,000-row transaction in pieces of 1,000 (``--batch``): detection
    judges it once, whole, with its real size, not ten times a 1,000-row piece."""
    cli("capture", "--source", bank, "--once", store=store_path)
    traffic(bank, 300)
    cli("capture", "--source", bank, "--once", store=store_path)
    bad = in_tx(bank, "UPDATE accounts SET kind = 'closed'")
    cli("capture", "--source", bank, "--once", "--batch", "1000", store=store_path)
    (inc,) = incidents(store_path)
    assert (inc["txids"], inc["rows_affected"]) == ([bad], ROWS), inc
    assert f"{ROWS:,} rows this transaction" in inc["explanation"], inc["explanation"]
