"""``rowback revert`` against a real PostgreSQL: capture, damage, later edits, revert."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import orjson
import pytest
from pgcap import (
    TableState,
    capture_once,
    execute,
    fresh_database,
    opened,
)
from reverting import PSQL, expected_after, in_tx, run, state

from rowback.errors import RowbackError
from rowback.pgserver import PgServer
from rowback.revert import Mode, plan_rows, prepare
from rowback.revert import sql as rsql
from rowback.revert.apply import apply, live_values


def test_revert_restores_the_damaged_cells_and_keeps_the_later_edit(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, before = damaged
    got = run("revert", "--txid", str(bad), "--target", dsn, "--format", "json", store=store_path)
    (result,) = [orjson.loads(x) for x in got.stdout.splitlines()]
    assert result["rows"] == 20 and result["missed"] == 0 and result["conflicts"] == 0
    assert state(dsn).rows == expected_after(before)
    # the reverting transaction is marked and captured like any other
    capture_once(dsn, store_path)
    with opened(store_path) as s:
        assert s.tx(int(result["txid"])).rows


def test_dry_run_prints_the_plan_and_writes_nothing(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, before = damaged
    now = state(dsn).rows
    got = run("revert", "--txid", str(bad), "--dry-run", "-f", "json", store=store_path)
    rows = [orjson.loads(x) for x in got.stdout.splitlines()]
    assert len(rows) == 20
    three = next(r for r in rows if r["key"] == {"id": "3"})
    assert (three["column"], three["expected"], three["target"]) == ("price", "0.00", "3.75")
    assert three["current"] is None  # no target: nothing live to show
    execute(dsn, "UPDATE products SET price = 1.00 WHERE id = 3")  # lands after capture
    with opened(store_path) as s:
        plan = prepare(s, [bad], Mode.nocascade)
    live = {r[1]["id"]: r[4] for r in plan_rows(plan, lambda rows: live_values(dsn, rows))}
    assert live["3"] == "1.00" and live["4"] == "0.00"
    assert "20 row(s) to change" in got.stderr
    now[("3",)]["price"] = "1.00"
    assert state(dsn).rows == now


def test_nocascade_refuses_a_same_cell_conflict_and_names_the_writer(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, before = damaged
    fixer = in_tx(dsn, "UPDATE products SET price = 4.00 WHERE id = 5")
    capture_once(dsn, store_path)
    now = state(dsn).rows
    got = run("revert", "--txid", str(bad), "--target", dsn, store=store_path, ok=False)
    assert got.returncode == 1
    assert f"(id)=(5) price: written later by tx {fixer}" in got.stderr
    assert "refused" in got.stderr
    assert state(dsn).rows == now

    # nonconflict reverts the rest and reports the kept cell
    got = run(
        "revert",
        "--txid",
        str(bad),
        "--target",
        dsn,
        "--mode",
        "nonconflict",
        "-f",
        "json",
        store=store_path,
    )
    assert orjson.loads(got.stdout)["rows"] == 19
    assert f"written later by tx {fixer}" in got.stderr
    want = expected_after(before)
    want[("5",)]["price"] = "4.00"
    assert state(dsn).rows == want


def test_the_sql_file_applied_by_psql_equals_the_apply(
    damaged: tuple[str, int, TableState], store_path: Path, tmp_path: Path
) -> None:
    dsn, bad, before = damaged
    path = tmp_path / "revert.sql"
    run("revert", "--txid", str(bad), "--sql", str(path), store=store_path)
    text = path.read_text()
    assert text.count("IS NOT DISTINCT FROM '0.00'::numeric(10,2)") == 20
    subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path), dsn], check=True)
    assert state(dsn).rows == expected_after(before)


def test_a_write_between_plan_and_apply_is_not_overwritten(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, before = damaged
    with opened(store_path) as s:
        plan = prepare(s, [bad], Mode.nocascade)
        nonconflict = prepare(s, [bad], Mode.nonconflict)
    execute(dsn, "UPDATE products SET price = 7.77 WHERE id = 8")
    now = state(dsn).rows
    with pytest.raises(RowbackError, match=r"\(id\)=\(8\) changed after the plan"):
        apply(plan, dsn, "t1")
    assert state(dsn).rows == now  # rolled back whole
    done = apply(nonconflict, dsn, "t2")
    assert done.rows == 19 and [m.row.key for m in done.missed] == [("8",)]
    want = expected_after(before)
    want[("8",)]["price"] = "7.77"
    assert state(dsn).rows == want


def test_a_shadow_behind_the_target_stops_the_revert(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, _ = damaged
    execute(dsn, "UPDATE products SET name = 'late' WHERE id = 1")
    now = state(dsn).rows
    got = run("revert", "--txid", str(bad), "--target", dsn, store=store_path, ok=False)
    assert got.returncode == 1 and "behind the target" in got.stderr
    assert "1 committed transaction(s)" in got.stderr
    assert state(dsn).rows == now


def test_bad_selections_are_one_line_errors(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, _, _ = damaged
    got = run("revert", "--txid", "4242424", "--target", dsn, store=store_path, ok=False)
    assert got.returncode == 1
    assert got.stderr.strip() == "rowback: error: transaction 4242424 is not in the store"
    got = run("revert", "--target", dsn, store=store_path, ok=False)
    assert got.returncode == 1 and "--txid" in got.stderr


def reversions(store: Path) -> list[dict[str, object]]:
    got = run("reversions", "--format", "json", store=store)
    return [orjson.loads(x) for x in got.stdout.splitlines()]


def test_reversions_are_recorded_and_an_undo_can_be_undone(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, before = damaged
    damaged_rows = state(dsn).rows
    run("revert", "--txid", str(bad), "--target", dsn, "--reason", "bad deploy", store=store_path)
    (first,) = reversions(store_path)
    assert first["id"] == 1 and first["status"] == "applied" and first["rows"] == 20
    assert first["reason"] == "bad deploy" and first["undoes"] is None
    assert first["mode"] == "nocascade" and first["who"] and first["created_at"]
    assert first["selection"] == {"txids": [bad], "source": None, "reversion": None}
    assert first["plan"] == {"rows": 20, "conflicts": []}
    assert state(dsn).rows == expected_after(before)

    # the revert's own transaction must be in the shadow before it can be undone
    got = run("revert", "--reversion", "1", "--target", dsn, store=store_path, ok=False)
    assert got.returncode == 1 and "behind the target" in got.stderr
    capture_once(dsn, store_path)
    run("revert", "--reversion", "1", "--target", dsn, store=store_path)
    assert state(dsn).rows == damaged_rows
    one, two = reversions(store_path)
    assert one["status"] == "undone"
    assert two["status"] == "applied" and two["undoes"] == 1 and two["txid"] != one["txid"]

    capture_once(dsn, store_path)
    run("revert", "--reversion", "2", "--target", dsn, store=store_path)
    assert state(dsn).rows == expected_after(before)
    assert [r["status"] for r in reversions(store_path)] == ["undone", "undone", "applied"]

    got = run("revert", "--reversion", "2", "--target", dsn, store=store_path, ok=False)
    assert "reversion 2 is undone: only an applied one can be undone" in got.stderr


def test_a_refused_revert_is_recorded(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, _ = damaged
    in_tx(dsn, "UPDATE products SET price = 4.00 WHERE id = 5")
    capture_once(dsn, store_path)
    run("revert", "--txid", str(bad), "--target", dsn, store=store_path, ok=False)
    (r,) = reversions(store_path)
    assert r["status"] == "refused" and r["rows"] == 0 and r["txid"] is None


def test_max_rows_refuses_a_larger_revert(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, _ = damaged
    now = state(dsn).rows
    got = run(
        "revert",
        "--txid",
        str(bad),
        "--target",
        dsn,
        "--max-rows",
        "5",
        store=store_path,
        ok=False,
    )
    assert got.returncode == 1 and "more than --max-rows 5" in got.stderr
    assert state(dsn).rows == now and reversions(store_path) == []


def test_a_target_that_is_not_the_captured_database_is_refused(
    damaged: tuple[str, int, TableState], store_path: Path, pg_server: PgServer
) -> None:
    dsn, bad, _ = damaged
    with fresh_database(pg_server) as other:
        execute(other, "CREATE TABLE products (id int PRIMARY KEY, price numeric(10,2))")
        got = run("revert", "--txid", str(bad), "--target", other, store=store_path, ok=False)
    assert got.returncode == 1
    assert "is not the captured database: system identifier" in got.stderr


def test_a_window_reverts_every_transaction_in_it(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, before = damaged
    args = ("revert", "--since", f"tx:{bad}", "--table", "public.products", "--target", dsn)
    got = run(*args, "-f", "json", store=store_path)
    assert orjson.loads(got.stdout)["rows"] == 20
    assert state(dsn).rows == before.rows  # the later stock edit is in the window too
    (r,) = reversions(store_path)
    assert r["selection"]["since"] == f"tx:{bad}" and len(r["selection"]["txids"]) == 2

    got = run("revert", "--since", "lsn:FF/0", "--dry-run", store=store_path, ok=False)
    assert got.returncode == 1 and "nothing to revert: no change --since lsn:FF/0" in got.stderr


def test_a_truncate_is_refused_with_one_line(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, _, _ = damaged
    cut = in_tx(dsn, "TRUNCATE products")
    capture_once(dsn, store_path)
    got = run("revert", "--txid", str(cut), "--dry-run", store=store_path, ok=False)
    assert got.returncode == 1
    assert "truncated public.products: reverting a TRUNCATE is not built yet" in got.stderr


ODD = 'tab\there, line\nbreak, back\\slash, it\'s "quoted", ünïcode'


@pytest.mark.parametrize("temp", [True, False], ids=["copy", "no-temp-privilege"])
def test_a_batched_update_restores_awkward_values_exactly(
    pg_dsn: str, store_path: Path, temp: bool
) -> None:
    """The set-based update sends its values by COPY (or, for a role that may not
    create temporary tables, as literals): text with tabs, newlines and backslashes,
    NULLs, json and a two-column key come back exactly."""
    execute(
        pg_dsn,
        "CREATE TABLE notes (a int, b text, note text, doc json, n numeric(8,3), "
        "PRIMARY KEY (a, b))",
        f"INSERT INTO notes SELECT g, 'k' || g, CASE WHEN g % 3 = 0 THEN NULL "
        f'ELSE $t${ODD}$t$ || g END, (\'{{"g": \' || g || \', "s": "a\\\\tb"}}\')::json, '
        "g / 7.0 FROM generate_series(1, 30) g",
    )
    capture_once(pg_dsn, store_path)
    before = state(pg_dsn, "public.notes").rows
    bad = in_tx(pg_dsn, "UPDATE notes SET note = 'x', doc = '[]', n = NULL")
    capture_once(pg_dsn, store_path)
    dsn, role = pg_dsn, f"notemp_{secrets.token_hex(4)}"
    if not temp:
        database = pg_dsn.rsplit("dbname=", 1)[1].split()[0]
        execute(
            pg_dsn,
            f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC",
            f"CREATE ROLE {role} LOGIN",
            f"GRANT SELECT, UPDATE ON notes TO {role}",
        )
        dsn = pg_dsn.replace("user=postgres", f"user={role}")
    try:
        with opened(store_path) as s:
            plan = prepare(s, [bad], Mode.nocascade)
        done = apply(plan, dsn, "1")
        assert done.rows == 30 and not done.missed
        assert state(pg_dsn, "public.notes").rows == before
    finally:
        if not temp:
            execute(pg_dsn, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


def test_batched_deletes_and_inserts_restore_exactly_and_miss_what_changed(
    pg_dsn: str, store_path: Path
) -> None:
    """A DELETE without WHERE and a bulk INSERT are reverted as one guarded set-based
    INSERT and DELETE each (values by COPY, awkward text and json included); a row
    re-inserted, and one edited, between plan and apply are left as they are
    (nonconflict) or fail the revert whole (nocascade)."""
    execute(
        pg_dsn,
        "CREATE TABLE notes (a int, b text, note text, doc json, PRIMARY KEY (a, b))",
        f"INSERT INTO notes SELECT g, 'k' || g, CASE WHEN g % 3 = 0 THEN NULL "
        f"ELSE $t${ODD}$t$ || g END, ('{{\"g\": ' || g || '}}')::json "
        "FROM generate_series(1, 40) g",
    )
    capture_once(pg_dsn, store_path)
    before = state(pg_dsn, "public.notes").rows
    bad = in_tx(
        pg_dsn,
        "DELETE FROM notes WHERE a <= 30",
        "INSERT INTO notes SELECT g, 'n' || g, $t$"
        + ODD
        + "$t$, '[]' FROM generate_series(100, 119) g",
    )
    capture_once(pg_dsn, store_path)
    with opened(store_path) as s:
        strict = prepare(s, [bad], Mode.nocascade)
        lenient = prepare(s, [bad], Mode.nonconflict)
    units = list(rsql.batched(rsql.statements(lenient)))
    assert [(u.action.value, len(u.rows)) for u in units if isinstance(u, rsql.Batch)] == [
        ("insert", 30),
        ("delete", 20),
    ]
    execute(
        pg_dsn,
        "INSERT INTO notes VALUES (5, 'k5', 'back already', NULL)",
        "UPDATE notes SET note = 'edited' WHERE a = 105",
    )
    now = state(pg_dsn, "public.notes").rows
    with pytest.raises(RowbackError, match="changed after the plan"):
        apply(strict, pg_dsn, "s1")
    assert state(pg_dsn, "public.notes").rows == now  # rolled back whole
    done = apply(lenient, pg_dsn, "s2")
    assert done.rows == 48
    assert sorted(m.row.key for m in done.missed) == [("105", "n105"), ("5", "k5")]
    want = dict(before)
    want[("5", "k5")] = now[("5", "k5")]
    want[("105", "n105")] = now[("105", "n105")]
    assert state(pg_dsn, "public.notes").rows == want
