"""The evaluation of detection: the simulated shop, its Debezium export, the scoring of
incidents against labels, and the comparison detectors' state."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from rowback.cli import app
from rowback.detect.base import Kind, Signal
from rowback.detect.baselines import SameHourCount
from rowback.detect.engine import GAP_US, Engine
from rowback.detect.evaluate import EvalRules, batches, evaluate
from rowback.detect.features import TxFeatures, tx_features
from rowback.detect.scenario import Label, Scenario, generate, write_debezium
from rowback.model import Change, Column, Op, TableSchema, Text

SRC = Path(__file__).resolve().parents[2] / "src"
MIN = 60 * 1_000_000


@cache
def small(seed: int = 5) -> Scenario:
    """Three days (two of warm-up) at a third of the default rate, a smaller shop."""
    return generate(days=3, seed=seed, rate=20, orders0=3_000, archive=500)


def test_a_seed_is_a_scenario() -> None:
    again = generate(days=3, seed=5, rate=20, orders0=3_000, archive=500)
    assert again.changes == small().changes
    assert again.labels == small().labels
    other = small(6)
    assert other.changes != small().changes
    assert [lab.first_us for lab in other.labels] != [lab.first_us for lab in small().labels]


def test_the_stream_is_in_commit_order() -> None:
    cs = small().changes
    assert all(a.commit_us <= b.commit_us for a, b in zip(cs, cs[1:], strict=False))
    assert all(a.txid <= b.txid and a.lsn <= b.lsn for a, b in zip(cs, cs[1:], strict=False))
    updates = [c for c in cs if c.op == Op.UPDATE]
    assert updates and all(c.before is not None and c.after != c.before for c in updates)


def test_every_kind_is_injected_after_the_warm_up_into_transactions_that_exist() -> None:
    s = small()
    assert {lab.kind for lab in s.labels} == set(Kind)
    assert sum(lab.kind == Kind.outlier for lab in s.labels) == 2, "one statement, one drip"
    at = {c.txid: c.commit_us for c in s.changes}
    for lab in s.labels:
        assert lab.txids and lab.txids <= at.keys()
        assert lab.first_us == min(at[t] for t in lab.txids) >= s.warmup_us
    tables = {c.table.qualified for c in s.changes}
    assert {lab.table for lab in s.labels} <= tables


def test_a_scenario_no_longer_than_its_warm_up_injects_nothing() -> None:
    s = generate(days=2, seed=1, rate=10, orders0=500, archive=100)
    assert s.labels == []
    assert s.changes[0].op == Op.SNAPSHOT


def test_the_recurring_jobs_run_every_day() -> None:
    s = small()
    updates = [c for c in s.changes if c.op == Op.UPDATE and c.after and c.before]
    archived = {
        c.txid
        for c in updates
        if c.table.name == "orders" and c.before[2] != c.after[2] == "archived"  # type: ignore[index]
    }
    restocks = {c.txid for c in updates if c.table.name == "products" and c.seq >= 300}
    assert len(archived) == 3, "one 500-row batch a night"
    assert len(restocks) == 3


def test_the_debezium_export_ingests_without_loss(tmp_path: Path) -> None:
    s = generate(days=1, seed=2, rate=5, orders0=300, archive=100)
    path = tmp_path / "shop.jsonl"
    assert write_debezium(s.changes, path) == len(s.changes)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "rowback", "ingest", str(path), "--store", str(tmp_path / "st")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"ingested {len(s.changes)} events, 0 quarantined" in done.stderr
    assert "gaps" not in done.stderr
    # the same rows, typed: numeric keeps its scale, timestamptz is a timestamp
    final: dict[str, dict[str, list[Text]]] = {}
    for c in s.changes:
        rows = final.setdefault(c.table.qualified, {})
        if c.after is None:
            rows.pop(str(c.key[0]) if c.key else "", None)
        else:
            rows[str(c.after[0])] = c.after
    store = ["--store", str(tmp_path / "st")]
    got = CliRunner().invoke(app, ["tables", *store, "-f", "json"])
    live = {t["table"]: t["live_rows"] for t in map(orjson.loads, got.output.splitlines())}
    assert live == {t: len(rows) for t, rows in final.items()}
    args = ["asof", "public.products", "--at", "2100-01-01T00:00:00Z", *store, "-f", "csv"]
    products = list(csv.reader(io.StringIO(CliRunner().invoke(app, args).output)))[1:]
    assert [(r[0], r[3]) for r in products] == [
        (k, v[3]) for k, v in sorted(final["public.products"].items(), key=lambda kv: int(kv[0]))
    ]
    assert products[0][6].startswith("2026-") and "T" in products[0][6]


# -- scoring incidents against labels ----------------------------------------------------

T = TableSchema("pg", "public", "t", (Column("id", "bigint", key=True), Column("v", "text")))


class Big:
    """Anomalous: 100 rows or more in one transaction."""

    name = "big"
    kinds = frozenset({Kind.oversized})

    def see_one(self, f: TxFeatures) -> None:
        pass

    def learn_one(self, f: TxFeatures) -> None:
        pass

    def score_one(self, f: TxFeatures) -> list[Signal]:
        return [Signal(Kind.oversized, 0.99, rows=f.rows)] if f.rows >= 100 else []

    def state(self) -> dict[str, Any]:
        return {}

    def load(self, state: dict[str, Any]) -> None:
        pass


def tx(txid: int, at_us: int, rows: int) -> list[Change]:
    return [
        Change(T, Op.UPDATE, (str(i),), [str(i), "x"], None, at_us, txid, txid, i)
        for i in range(rows)
    ]


def test_precision_and_recall_of_a_hand_made_case() -> None:
    # label 1 is found (tx 3), label 2 is missed (tx 5 is small), tx 7 is a false alarm
    day = 24 * 60 * MIN
    changes = tx(1, 0, 2) + tx(3, MIN, 150) + tx(5, 3 * GAP_US, 3) + tx(7, day - MIN, 120)
    labels = [
        Label(Kind.oversized, frozenset({3}), MIN - 2_000_000, "public.t"),
        Label(Kind.oversized, frozenset({5}), 3 * GAP_US, "public.t"),
    ]
    r = evaluate(changes, labels, lambda: Engine(lambda: [Big()], EvalRules()), days=1.0)
    assert (r.incidents, r.false_alarms, r.false_alarms_per_week) == (2, 1, 7.0)
    (row,) = r.kinds
    assert row == r.overall.__class__(
        kind="oversized",
        labels=2,
        detected=1,
        precision=0.5,
        recall=0.5,
        f1=0.5,
        latency_p50_s=2.0,
        latency_max_s=2.0,
    )
    assert r.rows()[-1][:6] == ["all", 2, 1, 0.5, 0.5, 0.5]
    assert orjson.loads(r.to_json())["overall"]["recall"] == 0.5
    # a warm-up excludes the false alarms that began in it
    late = evaluate(changes, labels, lambda: Engine(lambda: [Big()], EvalRules()), since_us=day)
    assert late.false_alarms == 0 and late.overall.precision == 1.0


class BigUnlessSeen(Big):
    """Big, until it learned a big transaction (as a dismissal teaches it)."""

    def __init__(self) -> None:
        self.seen_big = False

    def learn_one(self, f: TxFeatures) -> None:
        self.seen_big |= f.rows >= 100

    def score_one(self, f: TxFeatures) -> list[Signal]:
        return [] if self.seen_big else super().score_one(f)


def test_review_dismisses_warm_up_alarms_and_so_teaches_the_recurring_job() -> None:
    day = 24 * 60 * MIN
    # a job that ran at another hour the next day, so only a review can excuse it
    job = tx(1, 0, 2) + tx(2, MIN, 1_000) + tx(3, day + 180 * MIN, 1_000)
    for review, false_alarms in ((False, 1), (True, 0)):
        r = evaluate(
            job,
            [],
            lambda: Engine(lambda: [BigUnlessSeen()], EvalRules()),
            days=2.0,
            since_us=day,
            review=review,
        )
        assert r.false_alarms == false_alarms


def test_batches_end_at_transaction_ends() -> None:
    changes = tx(1, 0, 700) + tx(2, 1, 700) + tx(3, 2, 10)
    assert [len(b) for b in batches(changes, 1_000)] == [1_400, 10]
    assert [len(b) for b in batches(changes, 500)] == [700, 700, 10]


# -- the comparison detectors --------------------------------------------------------------


def _round_trip(make: Any) -> None:
    feats = tx_features(small().changes)
    cut = len(feats) * 2 // 3
    a = make()
    for f in feats[:cut]:
        if not any(s.score > 0.8 for s in a.score_one(f)):
            a.learn_one(f)
    b = make()
    b.load(orjson.loads(orjson.dumps(a.state())))
    scored = 0
    for f in feats[cut:]:
        got = a.score_one(f)
        assert got == b.score_one(f)
        scored += bool(got)
        a.learn_one(f)
        b.learn_one(f)
    assert scored, "the comparison saw trained scores"


def test_same_hour_count_state_round_trip() -> None:
    _round_trip(SameHourCount)


def test_half_space_trees_state_round_trip() -> None:
    pytest.importorskip("river")
    from rowback.detect.baselines import HalfSpaceTreesDetector

    _round_trip(HalfSpaceTreesDetector)


def test_half_space_trees_without_river_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rowback.detect.baselines import HalfSpaceTreesDetector
    from rowback.errors import RowbackError

    monkeypatch.setitem(sys.modules, "river", None)
    with pytest.raises(RowbackError, match=r"pip install 'rowback\[eval\]'"):
        HalfSpaceTreesDetector()


def test_rowback_eval_prints_a_report_per_detector_set() -> None:
    got = CliRunner().invoke(
        app, ["eval", "--days", "3", "--seed", "1", "--detectors", "baseline", "-f", "json"]
    )
    assert got.exit_code == 0, got.output
    (line,) = got.output.splitlines()
    report = orjson.loads(line)
    assert report["name"] == "baseline"
    assert report["overall"]["labels"] == 12
    assert [k["kind"] for k in report["kinds"]] == sorted(k.value for k in Kind)
