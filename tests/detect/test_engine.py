"""The engine: grouping anomalous transactions into incidents, learning only from what
looked normal, and persisting both inside the store's write transaction.

The detector here is a deliberately simple one written for these tests (a transaction of
100 rows or more is anomalous): the engine's grouping and persistence must not depend on
what a real detector finds, and the real detectors have their own contract suite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rowback.detect.base import Kind, Signal
from rowback.detect.engine import GAP_US, Engine
from rowback.detect.features import TxFeatures
from rowback.model import Change, Column, Op, TableSchema
from rowback.store.duckdb import DuckDBStore

ORDERS = TableSchema(
    "pg", "public", "orders", (Column("id", "int", key=True), Column("price", "numeric"))
)
ITEMS = TableSchema("pg", "public", "items", (Column("id", "int", key=True), Column("qty", "int")))
MIN = 60 * 1_000_000


class BigTx:
    """Anomalous: 100 rows or more in one transaction. Counts what it learned."""

    name = "bigtx"
    kinds = frozenset({Kind.oversized})

    def __init__(self) -> None:
        self.learned = 0
        self.seen = 0

    def learn_one(self, f: TxFeatures) -> None:
        self.learned += 1

    def see_one(self, f: TxFeatures) -> None:
        self.seen += 1

    def score_one(self, f: TxFeatures) -> list[Signal]:
        if f.rows < 100:
            return []
        return [Signal(Kind.oversized, 0.95, (), "under 100 rows", f"{f.rows} rows", f.rows)]

    def state(self) -> dict[str, Any]:
        return {"learned": self.learned}

    def load(self, state: dict[str, Any]) -> None:
        self.learned = int(state["learned"])


class Rules:
    def __init__(self, maintenance: str | None = None) -> None:
        self.maintenance = maintenance

    def threshold(self, table: str) -> float:
        return 0.8

    def critical(self, table: str) -> bool:
        return table == "public.items"

    def in_maintenance(self, table: str, at_us: int) -> bool:
        return table == self.maintenance

    def decide(self, table: str, score: float, severity: str) -> tuple[str, str, str]:
        return "alert_only", "open", f"{score} on {table}"


def engine(rules: Rules | None = None) -> Engine:
    return Engine(lambda: [BigTx()], rules or Rules())


def tx(txid: int, at_us: int, rows: int, table: TableSchema = ORDERS, lo: int = 0) -> list[Change]:
    return [
        Change(table, Op.UPDATE, (str(i),), [str(i), "0"], None, at_us, txid, txid, i)
        for i in range(lo, lo + rows)
    ]


def learned(e: Engine) -> int:
    d = e.detectors[0]
    assert isinstance(d, BigTx)
    return d.learned


def test_a_statement_is_one_incident_and_a_job_of_many_statements_too() -> None:
    e = engine()
    assert e.observe(tx(1, 0, 3) + tx(2, MIN, 2), "pg", {}) == []
    assert learned(e) == 2
    # one bad transaction over two tables, then the same damage four more times
    first = e.observe(tx(3, 2 * MIN, 500) + tx(3, 2 * MIN, 200, ITEMS), "pg", {})
    assert [(i.id, sorted(i.tables), i.txids, i.rows_affected) for i in first] == [
        (1, ["public.items", "public.orders"], [3], 700)
    ]
    for n in range(4):
        (grown,) = e.observe(tx(10 + n, (3 + n) * MIN, 150), "pg", {})
        assert grown.id == 1
    assert grown.txids == [3, 10, 11, 12, 13]
    assert grown.rows_affected == 700 + 4 * 150
    assert (grown.first_us, grown.last_us, grown.detected_us) == (2 * MIN, 6 * MIN, 2 * MIN)
    assert learned(e) == 2, "anomalous transactions are never learned from"
    # long after, the same damage is a new incident
    (later,) = e.observe(tx(20, 6 * MIN + GAP_US + 1, 150), "pg", {})
    assert later.id == 2


DAY = 24 * 60 * MIN


def test_a_job_that_alarmed_yesterday_at_this_hour_and_size_is_routine() -> None:
    e = engine()
    (first,) = e.observe(tx(1, 2 * 60 * MIN, 500), "pg", {})  # day 0, 02:00: alarms once
    assert learned(e) == 0
    # day 1, 02:30, 1.5x the rows: the same job, learned from, no incident
    assert e.observe(tx(2, DAY + 150 * MIN, 750), "pg", {}) == []
    assert learned(e) == 1
    # day 1 at 02:40 again but 10x the rows, or at 14:00: not excused by the job
    (big,) = e.observe(tx(3, DAY + 160 * MIN + GAP_US, 5_000), "pg", {})
    (noon,) = e.observe(tx(4, DAY + 14 * 60 * MIN, 500), "pg", {})
    assert big.id != first.id and noon.id not in (first.id, big.id)
    # damage that was reverted is never a job: the same write the next day alarms again
    first.status = "reverted"
    e.changed(first)
    (again,) = e.observe(tx(5, 2 * DAY + 2 * 60 * MIN, 500), "pg", {})
    assert again.txids == [5]


def test_severity_uses_rows_share_and_criticality() -> None:
    e = engine()
    e.observe(tx(1, 0, 200, lo=0) + tx(1, 0, 200, lo=200)[:0], "pg", {})  # 200 rows
    inc = e.observe(tx(2, MIN, 1_000), "pg", {})[0]
    assert inc.severity == "high"  # 1,000 rows
    crit = e.observe(tx(3, 2 * MIN, 120, ITEMS), "pg", {})[0]
    assert crit.severity == "high", "a critical table is at least high"
    assert "critical" not in crit.explanation
    assert "oversized on public.items: 120 rows (normal: under 100 rows)" in crit.explanation


def test_reverts_and_maintenance_are_neither_judged_nor_learned() -> None:
    e = engine(Rules(maintenance="public.items"))
    assert e.observe(tx(5, 0, 500), "pg", {5: "7"}) == []
    assert e.observe(tx(6, 0, 500, ITEMS), "pg", {}) == []
    assert learned(e) == 0


def test_state_round_trip_keeps_learning_and_open_incidents() -> None:
    e = engine()
    e.observe(tx(1, 0, 3), "pg", {})
    e.observe(tx(2, MIN, 300), "pg", {})
    again = engine()
    again.restore(e.state())
    assert learned(again) == 1
    (grown,) = again.observe(tx(3, 2 * MIN, 300), "pg", {})
    assert (grown.id, grown.txids) == (1, [2, 3])
    assert orjson.loads(again.state())["next_id"] == 2
    fresh = engine()
    fresh.restore(None)
    assert learned(fresh) == 0


def _write(s: DuckDBStore, changes: list[Change], lsn: int) -> None:
    s.write(changes, "pg", {"lsn": lsn})


def test_incidents_and_state_commit_with_the_changes(tmp_path: Path) -> None:
    s = DuckDBStore(tmp_path)
    s.watch(engine())
    _write(s, tx(1, 0, 3), 1)
    _write(s, tx(2, MIN, 300), 2)
    assert [(i.id, i.txids, i.status) for i in s.incidents()] == [(1, [2], "open")]
    s.close()
    # reopened (as after kill -9: nothing but what committed): the same state
    s = DuckDBStore(tmp_path)
    e = engine()
    s.watch(e)
    assert learned(e) == 1
    (inc,) = s.incidents()
    assert inc.detail["signals"][0]["seen"] == "300 rows"
    s.close()


def test_a_failed_write_forgets_what_it_observed(tmp_path: Path) -> None:
    s = DuckDBStore(tmp_path)
    e = engine()
    s.watch(e)
    _write(s, tx(1, 0, 3), 1)
    _write(s, tx(2, MIN, 2), 2)
    assert learned(e) == 2
    # the position cannot be recorded: the write fails after detection saw it
    with pytest.raises(TypeError):
        s.write(tx(4, MIN, 300) + tx(5, MIN, 1), "pg", {"lsn": 4, "bad": object()})
    assert s.incidents() == []
    assert learned(e) == 2, "what the failed write taught is forgotten"
    _write(s, tx(3, 2 * MIN, 300), 3)
    assert [i.txids for i in s.incidents()] == [[3]]
    s.close()


def test_a_dismissal_teaches_the_detectors_its_pattern(tmp_path: Path) -> None:
    s = DuckDBStore(tmp_path)
    e = engine()
    s.watch(e)
    _write(s, tx(1, 0, 300), 1)
    _write(s, tx(2, MIN, 300), 2)
    (inc,) = s.incidents()
    assert learned(e) == 0
    done = s.update_incident(inc.id, "dismissed", reason="the nightly job")
    assert (done.status, done.reason) == ("dismissed", "the nightly job")
    assert learned(e) == 2, "both held transactions were learned"
    # a dismissed incident does not grow: the next one is new
    _write(s, tx(3, 2 * MIN, 300), 3)
    assert [(i.id, i.status) for i in s.incidents()] == [(1, "dismissed"), (2, "open")]
    s.close()


@given(st.lists(st.integers(1, 400), min_size=1, max_size=6))
@settings(max_examples=40, deadline=None)
def test_a_replay_is_judged_the_same_wherever_its_writes_cut_it(cuts: list[int]) -> None:
    """Debezium blocks may cut a transaction in two: with ``hold_tail`` each write's last
    transaction waits for the next, so the incidents do not depend on where writes end."""
    stream = tx(1, 0, 3) + tx(2, MIN, 150) + tx(3, 2 * MIN, 2) + tx(4, 3 * MIN, 120, ITEMS)

    def judged(points: list[int]) -> list[tuple[int, list[int], int, str]]:
        e = Engine(lambda: [BigTx()], Rules(), hold_tail=True)
        got: dict[int, Any] = {}
        at = 0
        for p in [*sorted(set(points)), len(stream)]:
            for inc in e.observe(stream[at:p], "pg", {}):
                got[inc.id] = inc
            restored = Engine(lambda: [BigTx()], Rules(), hold_tail=True)
            restored.restore(e.state())  # as after a crash: only what was persisted
            e, at = restored, p
        for inc in e.observe([], "pg", {}):  # the stream ended
            got[inc.id] = inc
        return [(i.id, i.txids, i.rows_affected, i.severity) for i in got.values()]

    whole = judged([])
    assert [w[1] for w in whole] == [[2], [4]]
    assert judged([min(c, len(stream)) for c in cuts]) == whole


@given(st.lists(st.integers(1, 399), min_size=1, max_size=6))
@settings(max_examples=40, deadline=None)
def test_a_live_transaction_cut_by_partial_writes_is_judged_once_whole(cuts: list[int]) -> None:
    """Live capture writes a big transaction in pieces (``partial``): it is judged once,
    whole, when its last piece arrives, with its real size in the explanation (and the
    small transactions around it, complete in each write, are judged at once)."""
    big = tx(2, MIN, 400)
    e = Engine(lambda: [BigTx()], Rules())
    assert e.observe(tx(1, 0, 3), "pg", {}) == []
    points = [*sorted(set(cuts)), len(big)]
    at, got = 0, []
    for p in points:
        got += e.observe(big[at:p], "pg", {}, partial=p < len(big))
        restored = Engine(lambda: [BigTx()], Rules())
        restored.restore(e.state())
        e, at = restored, p
        if p < len(big):
            assert got == []  # nothing judged from a piece
    (inc,) = got
    assert (inc.txids, inc.rows_affected) == ([2], 400)
    assert "400 rows" in inc.explanation
    assert e.observe(tx(3, 2 * MIN, 2), "pg", {}) == [] and learned(e) == 2
