"""The command line end to end: a real PostgreSQL, a real store, the real `rowback` binary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg2
import pytest

ROWBACK = [sys.executable, "-m", "rowback.cli"]


def run(*args: str, store: Path | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROWBACK_STORE": str(store)} if store else dict(os.environ)
    env.pop("ROWBACK_DEBUG", None)
    got = subprocess.run([*ROWBACK, *args], capture_output=True, text=True, env=env, timeout=120)
    if ok:
        assert got.returncode == 0, got.stderr
    return got


def jsonl(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def shop(pg_dsn: str) -> str:
    conn = psycopg2.connect(pg_dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE orders (id int PRIMARY KEY, status text, amount numeric(10,2), "
        "data jsonb, raw bytea);"
        "INSERT INTO orders VALUES (1, 'new', 10.50, '{\"a\": [1, 2]}', '\\x00ff'),"
        " (2, 'new', 99.99, null, null);"
        "CREATE TABLE nokey (x int)"
    )
    conn.close()
    return pg_dsn


def _sql(dsn: str, q: str) -> object:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(q)
    got = cur.fetchone() if cur.description else None
    conn.close()
    return got[0] if got else None


def test_capture_then_time_travel(shop: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = run("capture", "--source", shop, "--once", "--format", "json", store=store)
    assert jsonl(first.stdout)[0]["snapshot_rows"] == 2
    conn = psycopg2.connect(shop)
    cur = conn.cursor()
    cur.execute("SELECT txid_current()")
    bad = cur.fetchone()[0]  # type: ignore[index]
    cur.execute("UPDATE orders SET status = 'cancelled'")
    conn.commit()
    cur.execute("DELETE FROM orders WHERE id = 2")
    conn.commit()
    conn.close()
    run("capture", "--source", shop, "--once", store=store)

    now = jsonl(run("asof", "public.orders", "--at", "-0s", "-f", "json", store=store).stdout)
    assert now == [
        {"id": 1, "status": "cancelled", "amount": "10.50", "data": {"a": [1, 2]}, "raw": "AP8="}
    ]
    before = jsonl(run("asof", "orders", "--at", f"tx:{bad}", "-f", "json", store=store).stdout)
    assert [r["status"] for r in before] == ["new", "new"]
    where = run(
        "asof", "orders", "--at", f"tx:{bad}", "--where", "amount > 50", "-f", "csv", store=store
    )
    assert where.stdout.splitlines() == ["id,status,amount,data,raw", "2,new,99.99,,"]

    hist = jsonl(run("history", "public.orders", "--key", "2", "-f", "json", store=store).stdout)
    assert [h["op"] for h in hist] == ["snapshot", "update", "delete"]
    assert hist[1]["changed"] == ["status"] and hist[2]["after"] is None

    tx = jsonl(run("tx", str(bad), "-f", "json", store=store).stdout)
    assert {(r["key"]["id"], r["before"]["status"], r["after"]["status"]) for r in tx} == {  # type: ignore[index]
        (1, "new", "cancelled"),
        (2, "new", "cancelled"),
    }
    log = jsonl(
        run(
            "changes", "--table", "orders", "--since", f"tx:{bad}", "-f", "json", store=store
        ).stdout
    )
    assert [r["op"] for r in log] == ["update", "update", "delete"]
    tables = jsonl(run("tables", "-f", "json", store=store).stdout)
    assert tables[0]["table"] == "public.orders" and tables[0]["live_rows"] == 1
    table_view = run("asof", "orders", "--at", "now", store=store).stdout
    assert "cancelled" in table_view


def test_values_beyond_python_print_as_postgres_text(pg_dsn: str, tmp_path: Path) -> None:
    """Infinite and BC dates and times and numeric NaN print as PostgreSQL does, as JSON
    strings; --where still compares times as times, infinity included."""
    conn = psycopg2.connect(pg_dsn)
    conn.autocommit = True
    conn.cursor().execute(
        "CREATE TABLE ev (id int PRIMARY KEY, ts timestamptz, d date, amount numeric(8,2));"
        "INSERT INTO ev VALUES (1, 'infinity', '9999-12-31', 'NaN'),"
        " (2, '-infinity', '0044-03-15 BC', 1.50), (3, '2024-05-06 07:08:09+00', 'infinity', 2)"
    )
    conn.close()
    store = tmp_path / "store"
    run("capture", "--source", pg_dsn, "--once", store=store)
    rows = jsonl(run("asof", "ev", "--at", "now", "-f", "json", store=store).stdout)
    assert rows == [
        {"id": 1, "ts": "infinity", "d": "9999-12-31", "amount": "NaN"},
        {"id": 2, "ts": "-infinity", "d": "0044-03-15 BC", "amount": "1.50"},
        {"id": 3, "ts": "2024-05-06T07:08:09+00:00", "d": "infinity", "amount": "2.00"},
    ]
    later = run(
        "asof", "ev", "--at", "now", "--where", "ts > '2020-01-01'", "-f", "csv", store=store
    )
    assert later.stdout.splitlines()[1:] == [
        "1,infinity,9999-12-31,NaN",
        "3,2024-05-06T07:08:09+00:00,infinity,2.00",
    ]
    assert "-infinity" in run("asof", "ev", "--at", "now", store=store).stdout
    hist = jsonl(run("history", "ev", "--key", "2", "-f", "json", store=store).stdout)
    assert hist[0]["after"] == {"id": 2, "ts": "-infinity", "d": "0044-03-15 BC", "amount": "1.50"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["asof", "orders", "--at", "yesterday-ish"], "yesterday-ish"),
        (["asof", "orders", "--at", "2026-01-01 10:00"], "time zone"),
        (["asof", "nosuch", "--at", "now"], "no captured table"),
        (["history", "orders", "--key", "1", "--key", "2"], "give 1 value"),
        (["history", "orders", "--key", "abc"], "--key abc"),
        (["tx", "424242"], "not in the store"),
        (["asof", "orders", "--at", "now", "--where", "nosuchcol = 1"], "--where"),
    ],
)
def test_bad_input_one_line_error(shop: str, tmp_path: Path, args: list[str], message: str) -> None:
    store = tmp_path / "store"
    run("capture", "--source", shop, "--once", store=store)
    got = run(*args, store=store, ok=False)
    assert got.returncode == 1
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rowback: error:"), got.stderr
    assert message in lines[0]
    assert "Traceback" not in got.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    got = run("asof", "orders", store=tmp_path, ok=False)
    assert got.returncode == 2 and "--at" in got.stderr
    assert run("--help").stdout.count("capture") >= 1


def test_missing_store_and_bad_source(tmp_path: Path) -> None:
    got = run("asof", "t", "--at", "now", store=tmp_path / "none", ok=False)
    assert got.returncode == 1 and "no store" in got.stderr
    bad = run(
        "capture",
        "--source",
        "host=127.0.0.1 port=1 dbname=x connect_timeout=2",
        "--once",
        store=tmp_path / "s",
        ok=False,
    )
    assert bad.returncode == 1 and "cannot connect" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_capture_rejects_unqualified_or_keyless_tables(shop: str, tmp_path: Path) -> None:
    got = run("capture", "--source", shop, "--once", "--tables", "orders", store=tmp_path, ok=False)
    assert got.returncode == 1 and "schema-qualified" in got.stderr
    got = run(
        "capture", "--source", shop, "--once", "--tables", "public.nokey", store=tmp_path, ok=False
    )
    assert got.returncode == 1 and "no primary key" in got.stderr


def test_store_in_use_is_a_clear_error(shop: str, tmp_path: Path) -> None:
    from rowback.store.duckdb import DuckDBStore

    store = tmp_path / "store"
    run("capture", "--source", shop, "--once", store=store)
    holder = DuckDBStore(store)  # another process is writing
    try:
        got = run("asof", "orders", "--at", "now", store=store, ok=False)
    finally:
        holder.close()
    assert got.returncode == 1 and "in use by another process" in got.stderr


def test_doctor_reports_and_fixes(shop: str) -> None:
    got = run(
        "doctor", "--source", shop, "--tables", "public.orders,public.nokey", "-f", "json", ok=False
    )
    assert got.returncode == 1  # the keyless table fails
    checks = {c["check"]: c for c in jsonl(got.stdout)}
    assert checks["wal_level"]["status"] == "ok"
    assert checks["table public.orders"]["status"] == "ok"
    assert "REPLICA IDENTITY DEFAULT" in str(checks["table public.orders"]["detail"])
    assert checks["table public.nokey"]["status"] == "fail"
    assert "ADD PRIMARY KEY" in str(checks["table public.nokey"]["fix"])
    ok = run("doctor", "--source", shop, "--tables", "public.orders", "-f", "json")
    assert all(c["status"] in ("ok", "warn") for c in jsonl(ok.stdout))


def test_doctor_lists_every_table_capture_skips(shop: str) -> None:
    """Default capture leaves out tables without a primary key: each is named, with a fix
    (by its unique index when it has one)."""
    _sql(shop, "CREATE TABLE keyed_by_index (code text NOT NULL, n int)")
    _sql(shop, "CREATE UNIQUE INDEX keyed_code ON keyed_by_index (code)")
    checks = {c["check"]: c for c in jsonl(run("doctor", "--source", shop, "-f", "json").stdout)}
    nokey = checks["table public.nokey"]
    assert nokey["status"] == "warn" and "skips" in str(nokey["detail"])
    assert nokey["fix"] == "ALTER TABLE public.nokey ADD PRIMARY KEY (<columns>);"
    by_index = checks["table public.keyed_by_index"]
    assert by_index["fix"] == (
        "ALTER TABLE public.keyed_by_index ADD CONSTRAINT keyed_by_index_pkey "
        "PRIMARY KEY USING INDEX keyed_code;"
    )
    assert checks["table public.orders"]["status"] == "ok"
    assert checks["new tables"]["status"] == "ok"  # a superuser: capture installs the trigger


@pytest.fixture
def capture_role(shop: str) -> Iterator[str]:
    """A DSN for a role that may replicate and create the publication, but is neither a
    superuser nor granted SELECT on the shop's tables."""
    role = f"rb_cap_{os.urandom(4).hex()}"
    _sql(shop, f"CREATE ROLE {role} LOGIN REPLICATION")
    dbname = _sql(shop, "SELECT current_database()")
    _sql(shop, f'GRANT CREATE ON DATABASE "{dbname}" TO {role}')
    yield f"{shop} user={role}"
    _sql(shop, f'REVOKE ALL ON DATABASE "{dbname}" FROM {role}')
    _sql(shop, f"DROP ROLE {role}")


def test_doctor_fixes_name_the_capture_role(capture_role: str) -> None:
    role = capture_role.rsplit("user=", 1)[1]
    got = run("doctor", "--source", capture_role, "-f", "json", ok=False)
    checks = {c["check"]: c for c in jsonl(got.stdout)}
    orders = checks["table public.orders"]
    assert orders["status"] == "fail"
    assert orders["fix"] == f"GRANT SELECT ON public.orders TO {role};"
    # not a superuser: the window that remains for new tables is named, with the SQL an
    # administrator runs to close it
    new = checks["new tables"]
    assert new["status"] == "warn"
    assert "not a superuser" in str(new["detail"]) and "next rescan" in str(new["detail"])
    assert "CREATE EVENT TRIGGER" in str(new["fix"])


def test_doctor_prints_fixes_whole_in_a_narrow_terminal(capture_role: str) -> None:
    """On a 60-column terminal every fix is printed whole, on lines of its own."""
    import pty

    role = capture_role.rsplit("user=", 1)[1]
    primary, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "60", "LINES": "40"}
    env.pop("ROWBACK_DEBUG", None)
    proc = subprocess.Popen(
        [*ROWBACK, "doctor", "--source", capture_role],
        stdout=secondary,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert proc.wait(60) == 1
    out = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode().replace("\r\n", "\n"))
    lines = out.splitlines()
    assert f"GRANT SELECT ON public.orders TO {role};" in lines
    assert any(line.startswith("CREATE EVENT TRIGGER") and line.endswith("();") for line in lines)
    assert "…" not in out.split("fix for", 1)[1]
    table = out.split("fix for", 1)[0]
    assert max(len(line) for line in table.splitlines()) <= 60, table


def test_doctor_sees_a_lagging_inactive_slot(shop: str, tmp_path: Path) -> None:
    run("capture", "--source", shop, "--once", "--tables", "public.orders", store=tmp_path / "s")
    _sql(shop, "INSERT INTO orders SELECT g, 'x', 1, null, null FROM generate_series(10, 500) g")
    checks = jsonl(run("doctor", "--source", shop, "-f", "json").stdout)
    slot = next(c for c in checks if str(c["check"]).startswith("slot"))
    assert "inactive" in str(slot["detail"]) and "bytes behind" in str(slot["detail"])
