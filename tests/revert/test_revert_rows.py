"""``rowback revert --table T --key K --to WHEN`` and ``--where F --to WHEN`` against a
real PostgreSQL: rows brought back to a point, the other rows of the same transactions
left as they are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pgcap import TableState, capture_once, execute
from reverting import in_tx, run, state
from service_helpers import cli, running

T = "public.products"


def lsn_of(txid: int, store: Path) -> str:
    """The LSN of transaction ``txid`` (its commit), as ``rowback changes`` shows it."""
    got = run("changes", "--txid", str(txid), "-f", "json", store=store)
    lsns = {orjson.loads(x)["lsn"] for x in got.stdout.splitlines()}
    (lsn,) = lsns
    return f"lsn:{lsn}"


def reversions(store: Path) -> list[dict[str, Any]]:
    got = run("reversions", "--format", "json", store=store)
    return [orjson.loads(x) for x in got.stdout.splitlines()]


def test_key_brings_one_row_back_and_leaves_the_others_damaged(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, before = damaged
    args = ("revert", "--table", T, "--key", "5", "--to", f"tx:{bad}", "--target", dsn)
    got = run(*args, "-f", "json", store=store_path)
    (result,) = [orjson.loads(x) for x in got.stdout.splitlines()]
    assert result["rows"] == 1 and result["conflicts"] == 0
    now = state(dsn).rows
    assert now[("5",)] == before.rows[("5",)]
    assert all(now[(str(i),)]["price"] == "0.00" for i in range(1, 21) if i != 5)
    (r,) = reversions(store_path)
    sel = r["selection"]
    assert (sel["table"], sel["key"], sel["to"], sel["txids"]) == (T, ["5"], f"tx:{bad}", [bad])

    # --to reverts every change to the row after WHEN: row 3's later stock edit too
    capture_once(dsn, store_path)
    run(
        "revert", "--table", T, "--key", "3", "--to", f"tx:{bad}", "--target", dsn, store=store_path
    )
    assert state(dsn).rows[("3",)] == before.rows[("3",)]
    assert state(dsn).rows[("4",)]["price"] == "0.00"


def test_where_brings_back_the_rows_that_matched_then(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, before = damaged
    # inserted after WHEN: one matches the filter as inserted (so it goes), one does not
    execute(
        dsn,
        "INSERT INTO products VALUES (21, 'new', 1.00, 10)",
        "INSERT INTO products VALUES (22, 'big', 100.00, 1)",
    )
    capture_once(dsn, store_path)
    # every price is 0 now: matched now, all would be chosen; at WHEN only ids 1-3 match
    args = ("revert", "--table", T, "--where", "price < 4", "--where", "stock >= 10")
    got = run(*args, "--to", f"tx:{bad}", "--dry-run", "-f", "json", store=store_path)
    plan = [orjson.loads(x) for x in got.stdout.splitlines()]
    assert {r["key"]["id"] for r in plan} == {"1", "2", "3", "21"}
    run(*args, "--to", f"tx:{bad}", "--target", dsn, store=store_path)
    now = state(dsn).rows
    for i in (1, 2, 3):
        assert now[(str(i),)] == before.rows[(str(i),)]
    assert ("21",) not in now and now[("22",)]["price"] == "100.00"
    assert all(now[(str(i),)]["price"] == "0.00" for i in range(4, 21))
    (r,) = reversions(store_path)
    assert r["selection"]["where"] == [
        {"column": "price", "op": "lt", "value": "4"},
        {"column": "stock", "op": "ge", "value": "10"},
    ]


def test_a_window_of_a_row_keeps_a_later_edit_of_another_column(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, before = damaged
    # only the bad transaction's change to row 3: the stock edit after it survives
    window = ("--since", f"tx:{bad}", "--until", lsn_of(bad, store_path))
    run("revert", "--table", T, "--key", "3", *window, "--target", dsn, store=store_path)
    row = state(dsn).rows[("3",)]
    assert row["price"] == before.rows[("3",)]["price"] and row["stock"] == "9"
    assert state(dsn).rows[("4",)]["price"] == "0.00"


def test_a_later_write_to_the_same_cell_is_refused_in_nocascade(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, before = damaged
    until = lsn_of(bad, store_path)
    fixer = in_tx(dsn, "UPDATE products SET price = 4.00 WHERE id = 5")
    capture_once(dsn, store_path)
    now = state(dsn).rows
    args = ("revert", "--table", T, "--key", "5", "--since", f"tx:{bad}", "--until", until)
    got = run(*args, "--target", dsn, store=store_path, ok=False)
    assert got.returncode == 1 and "refused" in got.stderr
    assert f"(id)=(5) price: written later by tx {fixer}" in got.stderr
    assert state(dsn).rows == now
    # --to takes the later write in too: the row is back as it was, nothing conflicts
    run(
        "revert", "--table", T, "--key", "5", "--to", f"tx:{bad}", "--target", dsn, store=store_path
    )
    assert state(dsn).rows[("5",)] == before.rows[("5",)]


def test_a_composite_key_names_one_row(pg_dsn: str, store_path: Path) -> None:
    execute(
        pg_dsn,
        "CREATE TABLE lines (o int, sku text, qty int, PRIMARY KEY (o, sku))",
        "INSERT INTO lines VALUES (1, 'a', 1), (1, 'b', 2), (2, 'a', 3)",
    )
    capture_once(pg_dsn, store_path)
    bad = in_tx(pg_dsn, "UPDATE lines SET qty = 0")
    capture_once(pg_dsn, store_path)
    args = ("revert", "--table", "lines", "--key", "1,b", "--to", f"tx:{bad}")
    run(*args, "--target", pg_dsn, store=store_path)
    rows = state(pg_dsn, "public.lines").rows
    assert {k: r["qty"] for k, r in rows.items()} == {
        ("1", "a"): "0",
        ("1", "b"): "2",
        ("2", "a"): "0",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--key", "5", "--to", "tx:BAD"), "--key needs --table T and --to WHEN"),
        (("--table", T, "--key", "5"), "--key needs --table T and --to WHEN"),
        (("--table", T, "--where", "id = 5"), "--where needs --table T and --to WHEN"),
        (("--table", T, "--to", "tx:BAD"), "--to goes with --table T and --key K or --where F"),
        (
            ("--table", "public.nope", "--key", "5", "--to", "tx:BAD"),
            "no captured table 'public.nope' in the store (see `rowback tables`)",
        ),
        (
            ("--table", T, "--key", "999", "--to", "tx:BAD"),
            "public.products has no row (id)=(999) in its history",
        ),
        (
            ("--table", T, "--where", "price > 1000", "--to", "tx:BAD"),
            "no row of public.products matches --where price:gt:1000 at tx:BAD "
            "(nor does a row inserted after it)",
        ),
        (
            ("--table", T, "--key", "5", "--to", "lsn:FF/0"),
            "nothing to revert: the row (id)=(5) of public.products has no change after lsn:FF/0",
        ),
        (
            ("--table", T, "--key", "5", "--where", "id = 5", "--to", "tx:BAD"),
            "give --key or --where, not both",
        ),
    ],
)
def test_bad_row_selections_are_one_line_errors_and_write_nothing(
    damaged: tuple[str, int, TableState],
    store_path: Path,
    args: tuple[str, ...],
    message: str,
) -> None:
    dsn, bad, _ = damaged
    now = state(dsn).rows
    args = tuple(a.replace("BAD", str(bad)) for a in args)
    got = run("revert", *args, "--target", dsn, store=store_path, ok=False)
    assert got.returncode == 1
    assert got.stderr.strip() == "rowback: error: " + message.replace("BAD", str(bad))
    assert state(dsn).rows == now and reversions(store_path) == []


def test_key_revert_through_the_service(pg_dsn: str, tmp_path: Path) -> None:
    execute(
        pg_dsn,
        "CREATE TABLE products (id int PRIMARY KEY, name text, price numeric(10,2), stock int)",
        "INSERT INTO products SELECT g, 'p' || g, g * 1.25, 10 FROM generate_series(1, 20) g",
    )
    store = tmp_path / "store"
    with running(store, "--source", pg_dsn) as svc:
        before = state(pg_dsn)
        bad = in_tx(pg_dsn, "UPDATE products SET price = 0")
        args = ("revert", "--table", T, "--where", "id IN (2, 7)", "--to", f"tx:{bad}")
        dry = cli(*args, "--target", pg_dsn, "--dry-run", "-f", "json", store=store)
        assert {orjson.loads(x)["key"]["id"] for x in dry.stdout.splitlines()} == {"2", "7"}
        got = cli(*args, "--target", pg_dsn, "-f", "json", store=store)
        assert orjson.loads(got.stdout)["rows"] == 2
        now = state(pg_dsn).rows
        assert now[("2",)] == before.rows[("2",)] and now[("7",)] == before.rows[("7",)]
        assert now[("3",)]["price"] == "0.00"
        (r,) = svc.rows("/api/v1/reversions")
        assert r["selection"]["where"] == [{"column": "id", "op": "in", "value": ["2", "7"]}]
        assert r["selection"]["to"] == f"tx:{bad}" and r["who"] == "api"
        args = ("revert", "--table", T, "--key", "999", "--to", f"tx:{bad}", "--dry-run")
        nothing = cli(*args, store=store, ok=False)
        assert nothing.returncode == 1
        assert nothing.stderr.strip() == (
            "rowback: error: public.products has no row (id)=(999) in its history"
        )
        # the API's body takes the same selection, its filters structured
        body = {"table": T, "key": ["4"], "to": f"tx:{bad}", "dry_run": True}
        r = svc.http.post("/api/v1/reversions", json=body)
        assert r.status_code == 200, r.text
        assert [x["key"] for x in r.json()["rows"]] == [{"id": "4"}]
        where = [{"column": "id", "op": "isnull", "value": "1"}]
        r = svc.http.post("/api/v1/reversions", json={**body, "key": [], "where": where})
        assert r.status_code == 400, r.text
        assert [p["name"] for p in r.json()["invalid-params"]] == ["where"]
        assert svc.stop() == 0
