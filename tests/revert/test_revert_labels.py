"""Rowback's own writes: capture labels a revert's transaction with its reversion id."""

from __future__ import annotations

from pathlib import Path

import orjson
from pgcap import TableState, capture_once, opened
from reverting import in_tx, run


def test_a_revert_is_labelled_in_tx_and_changes_and_others_are_not(
    damaged: tuple[str, int, TableState], store_path: Path
) -> None:
    dsn, bad, _ = damaged
    got = run("revert", "--txid", str(bad), "--target", dsn, "--format", "json", store=store_path)
    result = orjson.loads(got.stdout)
    other = in_tx(
        dsn,
        "SELECT pg_logical_emit_message(true, 'someone.else', 'hello')",
        "UPDATE products SET stock = 0 WHERE id = 1",
    )
    capture_once(dsn, store_path)
    rid, txid = str(result["reversion"]), int(result["txid"])
    tx = run("tx", str(txid), "-f", "json", store=store_path).stdout.splitlines()
    assert tx and all(orjson.loads(x)["reversion"] == rid for x in tx)
    changes = [
        orjson.loads(x) for x in run("changes", "-f", "json", store=store_path).stdout.splitlines()
    ]
    by_tx = {int(c["txid"]): c["reversion"] for c in changes}
    assert by_tx[txid] == rid and by_tx[other] is None and by_tx[bad] is None
    with opened(store_path) as s:
        assert s.reversion_txids() == {txid: rid}
