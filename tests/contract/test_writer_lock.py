"""The store's one writer connection shared by two threads, as in ``rowback run``:
capture writing changes while the API records reversions. Each write keeps its own
transaction, and nothing is lost."""

from __future__ import annotations

import threading
from pathlib import Path

from rowback.model import Change, Column, Op, TableSchema
from rowback.store.base import Reversion
from rowback.store.duckdb import DuckDBStore

ACCT = TableSchema("src", "public", "acct", (Column("id", "integer", True), Column("n", "text")))
US = 1_700_000_000_000_000


def test_reversion_records_and_capture_writes_take_turns(tmp_path: Path) -> None:
    s = DuckDBStore(tmp_path / "store")
    failed: list[BaseException] = []

    def capture() -> None:
        try:
            for tx in range(1, 201):
                ch = Change(
                    ACCT, Op.INSERT, (str(tx),), [str(tx), f"n{tx}"], None, US + tx, tx, tx * 100, 1
                )
                s.write([ch], "src", {"lsn": tx * 100})
        except BaseException as e:  # noqa: BLE001 - reported below
            failed.append(e)

    def records() -> None:
        try:
            for i in range(50):
                rid = s.record_reversion(
                    Reversion(0, None, "api", None, {"txids": [i]}, "force", "started")
                )
                s.update_reversion(rid, "applied", rows=1, txid=i)
        except BaseException as e:  # noqa: BLE001 - reported below
            failed.append(e)

    threads = [threading.Thread(target=capture), threading.Thread(target=records)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failed == []
    assert len(list(s.changes("public.acct", None, None).rows)) == 200
    got = s.reversions()
    assert [r.id for r in got] == list(range(1, 51))
    assert {r.status for r in got} == {"applied"}
    assert s.position("src") == {"lsn": 20000}
    s.close()
