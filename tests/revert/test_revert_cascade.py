"""``--mode cascade``: the later writers of the damaged cells are reverted too, and their
own later writers, transitively; later edits of cells nobody selected still survive."""

from __future__ import annotations

from pathlib import Path

import orjson
from pgcap import TableState, capture_once, opened
from reverting import expected_after, in_tx, run, state


def test_cascade_reverts_a_chain_of_later_writers(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, before = damaged
    # B writes a cell the damage wrote (price of 5) and one it did not (name of 5);
    # C writes only B's cell (name of 5) and a row nobody else touched (name of 6)
    b = in_tx(dsn, "UPDATE products SET price = 4.00, name = 'fixed' WHERE id = 5")
    c = in_tx(dsn, "UPDATE products SET name = 'renamed' WHERE id IN (5, 6)")
    capture_once(dsn, store_path)
    now = state(dsn).rows

    refused = run("revert", "--txid", str(bad), "--target", dsn, store=store_path, ok=False)
    assert refused.returncode == 1 and "refused" in refused.stderr
    assert state(dsn).rows == now

    plan = run(
        "revert",
        "--txid",
        str(bad),
        "--mode",
        "cascade",
        "--dry-run",
        "-f",
        "json",
        store=store_path,
    )
    assert f"tx {b} reverted too (cascade)" in plan.stderr
    assert f"tx {c} reverted too (cascade)" in plan.stderr
    assert "0 conflict(s): would apply" in plan.stderr

    got = run(
        "revert",
        "--txid",
        str(bad),
        "--target",
        dsn,
        "--mode",
        "cascade",
        "-f",
        "json",
        store=store_path,
    )
    assert orjson.loads(got.stdout)["conflicts"] == 0
    # every cell the three wrote is back as before the damage; the stock edit survives
    assert state(dsn).rows == expected_after(before)
    with opened(store_path) as s:
        (record,) = [r for r in s.reversions() if r.status == "applied"]
    assert record.mode == "cascade"
    assert set(record.selection["pulled"]) == {str(b), str(c)}
    assert sorted(record.selection["txids"]) == sorted([bad, b, c])


def test_cascade_without_conflicts_is_a_plain_revert(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, before = damaged
    got = run("revert", "--txid", str(bad), "--target", dsn, "--mode", "cascade", store=store_path)
    assert "reverted too" not in got.stderr
    assert state(dsn).rows == expected_after(before)
