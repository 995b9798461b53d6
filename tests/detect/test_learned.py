"""The learned detectors on realistic traffic; the contract suite covers them as well
(``test_contract`` takes every detector from ``registry.detectors(learned=True)``)."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from detect_helpers import ORDERS, START_US, Shop, engine_step

import rowback.detect
from rowback.detect import nets, registry
from rowback.detect.base import Detector
from rowback.detect.features import TxFeatures, tx_features
from rowback.detect.learned import AutoencoderDetector, RateForecaster
from rowback.errors import RowbackError
from rowback.model import Change, Op

MINUTE_US = 60_000_000


def shop_traffic(n: int, seed: int) -> Iterator[TxFeatures]:
    """Small shop transactions, one every 30 s – 3.5 min (``n`` = 3,000 is ~4 days)."""
    shop = Shop(seed)
    for _ in range(n):
        yield shop.features(shop.normal())


def busy_orders(days: float, seed: int) -> Iterator[TxFeatures]:
    """A busy orders table: a daily cycle of 0.3–2.3 insert transactions a minute, each
    of 1–3 rows, Poisson-distributed."""
    shop = Shop(seed)
    rng = np.random.default_rng(seed)
    for minute in range(int(days * 24 * 60)):
        lam = 1.3 + math.sin(2 * math.pi * minute / 1440)
        for i in range(int(rng.poisson(lam))):
            shop.now = START_US + minute * MINUTE_US + i * 1_000_000
            yield shop.features(shop.insert_orders(int(rng.integers(1, 4))))


def constant_update(rows: int, commit_us: int) -> TxFeatures:
    """One UPDATE without WHERE: every order's status set to 'lost'."""
    changes = []
    for i in range(rows):
        before = [str(i), f"customer{i % 900}@example.com", "pending", "12.50", None]
        before.append("2026-11-23 10:00:00+00")
        after = list(before)
        after[2] = "lost"
        changes.append(Change(ORDERS, Op.UPDATE, (str(i),), after, before, commit_us, 9, i, i))
    (f,) = tx_features(changes)
    return f


@pytest.fixture(scope="module")
def coder() -> tuple[AutoencoderDetector, list[float], TxFeatures]:
    """An autoencoder trained on ~4 days of shop traffic, its scores on the next
    500 normal transactions, and the transaction after them."""
    d = AutoencoderDetector()
    txs = list(shop_traffic(3500, seed=21))
    for f in txs[:3000]:
        engine_step([d], f)
    normal = [max(engine_step([d], f).values(), default=0.0) for f in txs[3000:]]
    return d, normal, txs[-1]


def test_autoencoder_flags_a_constant_update_of_ten_thousand_rows(
    coder: tuple[AutoencoderDetector, list[float], TxFeatures],
) -> None:
    d, _, last = coder
    f = constant_update(10_000, last.commit_us + MINUTE_US)
    (sig,) = d.score_one(f)
    assert sig.score >= 0.8
    assert sig.rows == 10_000
    assert "unlike any learned" in sig.seen and "p50" in sig.normal


def test_autoencoder_leaves_normal_transactions_quiet(
    coder: tuple[AutoencoderDetector, list[float], TxFeatures],
) -> None:
    _, normal, _ = coder
    assert float(np.quantile(normal, 0.95)) < 0.5


@pytest.fixture(scope="module")
def forecaster() -> tuple[RateForecaster, list[float], int]:
    """A forecaster trained on two days of a busy table, its scores on the first write of
    each minute of the third day (as engine_step judges them), and the time after."""
    d = RateForecaster()
    txs = list(busy_orders(3, seed=4))
    cut = len(txs) * 2 // 3
    for f in txs[:cut]:
        engine_step([d], f)
    last_minute = -1
    normal = []
    for f in txs[cut:]:
        got = max(engine_step([d], f).values(), default=0.0)
        if f.commit_us // MINUTE_US != last_minute:
            normal.append(got)
        last_minute = f.commit_us // MINUTE_US
    return d, normal, txs[-1].commit_us + 2 * MINUTE_US


def test_rate_forecaster_leaves_normal_minutes_quiet(
    forecaster: tuple[RateForecaster, list[float], int],
) -> None:
    _, normal, _ = forecaster
    assert float(np.quantile(normal, 0.95)) < 0.5


USUAL_PER_MINUTE = 1.3 * 2
"""``busy_orders``: transactions a minute times rows a transaction, on average."""


@pytest.mark.parametrize("per_tx", [5, 130], ids=["many-small-inserts", "one-bulk-insert"])
def test_rate_forecaster_flags_a_burst_of_fifty_times_the_usual_writes(
    forecaster: tuple[RateForecaster, list[float], int], per_tx: int
) -> None:
    trained, _, now = forecaster
    d = RateForecaster()
    d.load(trained.state())  # each case from the same trained state
    shop = Shop(99, start_us=now)
    burst = []
    for _ in range(int(50 * USUAL_PER_MINUTE) // per_tx):
        f = shop.features(shop.insert_orders(per_tx))
        burst.extend(d.score_one(f))
        d.learn_one(f)  # the detector's own view of the minute: every write counted
        shop.now += 1_000_000
    worst = max(burst, key=lambda s: s.score)
    assert worst.score >= 0.8
    assert worst.kind.value == "insert_flood"
    assert worst.seen == "130 writes this minute" and "forecast" in worst.normal


def test_rate_forecaster_alarms_on_a_flood_under_the_engine_learn_rule(
    forecaster: tuple[RateForecaster, list[float], int],
) -> None:
    """The engine does not learn what alarmed but shows it to ``see_one``: the writes
    counted this minute keep growing, so the alarm climbs as the flood goes on."""
    trained, _, now = forecaster
    d = RateForecaster()
    d.load(trained.state())
    shop = Shop(99, start_us=now)
    got = []
    for _ in range(26):
        got.append(max(engine_step([d], shop.features(shop.insert_orders(5))).values()))
        shop.now += 1_000_000
    assert sum(g >= 0.5 for g in got) >= 20
    assert got[-1] >= 0.8 and got[-1] == max(got)


def test_rate_forecaster_fills_at_most_an_hour_of_an_idle_gap() -> None:
    d = RateForecaster()
    txs = list(busy_orders(0.2, seed=5))
    for f in txs:
        d.learn_one(f)
    seen = d.state()["tables"][0][1]["minute"][3]
    d.learn_one(replace(txs[-1], commit_us=txs[-1].commit_us + 30 * 1440 * MINUTE_US))
    assert d.state()["tables"][0][1]["minute"][3] == seen + 1 + 60  # its minute, 60 idle


@pytest.mark.parametrize("make", [AutoencoderDetector, RateForecaster])
def test_scores_after_load_are_identical(make: type[Detector]) -> None:
    a = make()
    txs = list(shop_traffic(1500, seed=8))
    for f in txs[:1000]:
        a.learn_one(f)
    b = make()
    b.load(json.loads(json.dumps(a.state())))
    for f in txs[1000:]:
        assert b.score_one(f) == a.score_one(f)
        a.learn_one(f)
        b.learn_one(f)
    assert any(a.score_one(f) for f in txs[1000:])


def test_learned_detectors_join_the_defaults_only_when_asked() -> None:
    names = [d.name for d in registry.detectors(learned=True)]
    assert names[-2:] == ["autoencoder", "rate_forecast"]
    assert len(registry.detectors(learned=False)) == len(registry.default_detectors())


def test_a_network_from_another_scikit_learn_version_is_learned_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = RateForecaster()
    for f in busy_orders(0.5, seed=3):
        a.learn_one(f)
    saved = json.loads(json.dumps(a.state()))
    monkeypatch.setattr(nets.sklearn, "__version__", "0.0")
    b = RateForecaster()
    b.load(saved)
    ((table, fresh),) = b.state()["tables"]
    assert table == "public.orders"
    assert fresh["model"] is None and fresh["minute"][3] == 0  # no minutes seen


def test_missing_scikit_learn_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.neural_network", None)
    for module in ("learned", "nets"):  # as if never imported, so the import runs again
        monkeypatch.delitem(sys.modules, f"rowback.detect.{module}")
        monkeypatch.delattr(rowback.detect, module)
    with pytest.raises(RowbackError) as e:
        registry.learned_detectors()
    assert str(e.value) == (
        "the learned detectors need scikit-learn: pip install 'rowback[ml]' "
        "(the statistical detectors run without it)"
    )
