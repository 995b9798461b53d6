"""Each kind of damage scores high after a few days of normal shop traffic; normal stays low."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from typing import Any

import pytest
from detect_helpers import (
    ALERT,
    DAY_US,
    HOUR_US,
    START_US,
    Shop,
    engine_step,
    kind_scores,
    learn_all,
)

from rowback.detect.base import Detector, Kind
from rowback.detect.features import TxFeatures
from rowback.detect.registry import default_detectors
from rowback.model import Change

TRAIN_DAYS = 4
MINUTE_US = 60_000_000


@dataclass
class World:
    shop: Shop
    detectors: list[Detector]

    def normal(self, n: int = 1) -> list[dict[Kind, float]]:
        """Run ``n`` normal transactions through the engine; their scores."""
        shop = self.shop
        return [engine_step(self.detectors, shop.features(shop.normal())) for _ in range(n)]

    def judge(self, changes: list[Change]) -> dict[Kind, float]:
        return kind_scores(self.detectors, self.shop.features(changes))

    def step(self, changes: list[Change]) -> dict[Kind, float]:
        return engine_step(self.detectors, self.shop.features(changes))

    def recent_orders(self, n: int) -> list[int]:
        return list(self.shop.orders)[-n:]


def train(shop: Shop, until_us: int) -> list[Detector]:
    dets = default_detectors()
    while shop.now < until_us:
        engine_step(dets, shop.features(shop.normal()))
    return dets


@pytest.fixture(scope="module")
def trained() -> tuple[Shop, list[dict[str, Any]]]:
    shop = Shop()
    dets = train(shop, START_US + TRAIN_DAYS * DAY_US)
    return shop, [json.loads(json.dumps(d.state())) for d in dets]


@pytest.fixture
def world(trained: tuple[Shop, list[dict[str, Any]]]) -> World:
    shop, states = trained
    dets = default_detectors()
    for d, s in zip(dets, states, strict=True):
        d.load(copy.deepcopy(s))
    return World(copy.deepcopy(shop), dets)


def test_fresh_normal_transactions_score_low(world: World) -> None:
    for got in world.normal(300):
        assert max(got.values(), default=0.0) < ALERT, got


def test_never_seen_shape_of_10000_rows_is_oversized(world: World) -> None:
    world.shop.now += MINUTE_US
    got = world.judge(world.shop.delete_orders(1, 10_000))
    assert got[Kind.oversized] >= 0.9
    assert got[Kind.volume] >= 0.8


def test_insert_flood_of_50_times_the_usual_rate(world: World) -> None:
    shop = world.shop
    shop.now = (shop.now // MINUTE_US + 1) * MINUTE_US
    flood = []
    for _ in range(100):  # usually 1–3 inserts a minute; now 100 one-row inserts in one
        shop.now += 500_000
        f = shop.features(shop.insert_orders(1))
        flood.append(kind_scores(world.detectors, f).get(Kind.insert_flood, 0.0))
        learn_all(world.detectors, f)  # the detector's own view: it counts the whole minute
    assert flood[0] < ALERT
    assert flood[-1] >= 0.8


def test_insert_flood_keeps_alarming_when_the_engine_stops_learning(world: World) -> None:
    shop = world.shop
    shop.now = (shop.now // MINUTE_US + 1) * MINUTE_US
    flood = []
    for _ in range(100):
        shop.now += 500_000
        flood.append(world.step(shop.insert_orders(1)).get(Kind.insert_flood, 0.0))
    first = next(i for i, s in enumerate(flood) if s >= ALERT)
    assert first < 20
    assert min(flood[first:]) >= ALERT
    # the unlearned inserts still count in their minute (see_one): the alarm climbs
    assert flood[-1] >= 0.8


def test_many_rows_set_to_one_value_is_constant(world: World) -> None:
    world.shop.now += MINUTE_US
    got = world.judge(world.shop.update_orders(world.recent_orders(200), total="0.00"))
    assert got[Kind.constant] >= 0.8


def test_nulls_where_the_column_is_rarely_empty(world: World) -> None:
    world.shop.now += MINUTE_US
    got = world.judge(world.shop.update_orders(world.recent_orders(30), customer=None))
    assert got[Kind.nulls] >= 0.8


def test_prices_times_100_are_outliers(world: World) -> None:
    shop = world.shop
    shop.now += MINUTE_US
    ids = list(range(10, 15))
    shifted = {i: f"{float(shop.products[i][2] or 0) * 100 + 2000:.2f}" for i in ids}
    changes = [c for i in ids for c in shop.update_products([i], price=shifted[i])]
    got = kind_scores(world.detectors, _one_tx(shop, changes))
    assert got[Kind.outlier] >= 0.8


def test_flipped_signs_in_a_never_negative_column_are_outliers(world: World) -> None:
    shop = world.shop
    shop.now += MINUTE_US
    changes = [
        c
        for i in range(20, 25)
        for c in shop.update_products([i], price="-" + str(shop.products[i][2]))
    ]
    got = kind_scores(world.detectors, _one_tx(shop, changes))
    assert got[Kind.outlier] >= 0.8


def test_shifted_values_dripped_over_an_hour(world: World) -> None:
    shop = world.shop
    drip = []
    end = shop.now + HOUR_US
    while shop.now < end:  # one price ×100 every few minutes, learned as it comes
        world.normal(2)
        i = shop.rng.randint(2, 200)
        price = f"{shop.rng.uniform(20, 500) * 100:.2f}"
        f = shop.features(shop.update_products([i], price=price))
        drip.append(kind_scores(world.detectors, f).get(Kind.drip, 0.0))
        learn_all(world.detectors, f)
    assert drip[-1] >= 0.8


def test_a_few_shifted_values_in_small_transactions_each_score(world: World) -> None:
    shop = world.shop
    seen = []
    for n in [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]:  # two dozen bad rows among normal traffic
        world.normal(10)
        ids = sorted(shop.rng.sample(range(2, 201), n))
        price = f"{shop.rng.uniform(20, 500) * 100:.2f}"
        seen.append(world.step(shop.update_products(ids, price=price)).get(Kind.outlier, 0.0))
    assert min(seen) >= 0.5
    assert max(seen) >= 0.8


def test_a_never_seen_status_is_a_new_category(world: World) -> None:
    world.shop.now += MINUTE_US
    got = world.judge(world.shop.update_orders(world.recent_orders(5), status="lost"))
    assert got[Kind.category] >= 0.8


@pytest.mark.parametrize("when", ["1970-01-01 00:00:00+00", "2099-01-01 00:00:00+00", "infinity"])
def test_timestamps_reset_or_far_in_the_future(world: World, when: str) -> None:
    world.shop.now += MINUTE_US
    got = world.judge(world.shop.insert_orders(20, created_at=when))
    assert got[Kind.timestamp] >= 0.8


def test_a_column_updates_never_change_being_rewritten_is_frozen(world: World) -> None:
    world.shop.now += MINUTE_US
    ids = world.recent_orders(30)
    got = world.judge(world.shop.update_orders(ids, customer="someone@example.com"))
    assert got[Kind.frozen] >= 0.8


@pytest.mark.parametrize("gate", [False, True], ids=["learn-all", "engine-gate"])
def test_the_same_rows_rewritten_again_and_again_is_runaway(world: World, gate: bool) -> None:
    shop = world.shop
    ids = world.recent_orders(4)
    loop = []
    for i in range(10):  # a retry loop flipping the same 4 orders every 20 s
        shop.now += 20_000_000
        f = shop.features(shop.update_orders(ids, status=("paid", "pending")[i % 2]))
        if gate:
            loop.append(engine_step(world.detectors, f).get(Kind.runaway, 0.0))
        else:
            loop.append(kind_scores(world.detectors, f).get(Kind.runaway, 0.0))
            learn_all(world.detectors, f)
    assert max(loop[:3]) < ALERT  # touching rows twice or thrice is a workflow, not a loop
    assert min(loop[5:]) >= ALERT
    if not gate:  # under the gate the alarm holds at its first level: no more is learned
        assert max(loop[5:]) >= 0.8


def test_a_hot_row_rewritten_all_day_is_normal_once_learned() -> None:
    shop = Shop(13)
    world = World(shop, default_detectors())
    hot = []
    while shop.now < START_US + DAY_US:  # a counter row bumped every 20–40 s all day
        world.normal(1)
        for _ in range(shop.rng.randint(1, 4)):
            shop.now += shop.rng.randint(20, 40) * 1_000_000
            hot.append(world.step(shop.update_products([1], stock=str(shop.rng.randint(0, 90)))))
    assert max(g.get(Kind.runaway, 0.0) for g in hot[-500:]) < ALERT
    ids = world.recent_orders(4)
    loop = []
    for i in range(8):  # a loop over a set of rows is still a runaway there
        shop.now += 20_000_000
        loop.append(world.step(shop.update_orders(ids, status=("paid", "pending")[i % 2])))
    assert loop[-1].get(Kind.runaway, 0.0) >= ALERT


def _drip_hour(world: World, gate: bool) -> tuple[list[float], list[float]]:
    """An hour with one empty customer a minute or two among normal traffic: the nulls and
    drip scores of the dripped inserts."""
    shop = world.shop
    nulls, drip = [], []
    end = shop.now + HOUR_US
    while shop.now < end:
        world.normal(1)
        shop.now += MINUTE_US
        f = shop.features(shop.insert_orders(1, customer=""))
        got = engine_step(world.detectors, f) if gate else kind_scores(world.detectors, f)
        if not gate:
            learn_all(world.detectors, f)
        nulls.append(got.get(Kind.nulls, 0.0))
        drip.append(got.get(Kind.drip, 0.0))
    return nulls, drip


def test_empties_dripped_over_an_hour(world: World) -> None:
    nulls, drip = _drip_hour(world, gate=False)
    assert max(nulls) < ALERT  # no single transaction is alarming
    assert drip[-1] >= 0.8


def test_drip_alarms_under_the_engine_learning_gate(world: World) -> None:
    nulls, drip = _drip_hour(world, gate=True)
    assert max(nulls) < ALERT
    assert max(drip) >= ALERT


def _one_tx(shop: Shop, changes: list[Change]) -> TxFeatures:
    """Several statements' changes as one transaction."""
    txid = changes[0].txid
    for c in changes:
        c.txid = txid
    return shop.features(changes)


# --- recurring jobs ----------------------------------------------------------

BATCH = 50_000
RESTOCK = 300


@pytest.fixture(scope="module")
def batch_world() -> tuple[World, TxFeatures]:
    """Six days of traffic with a 50,000-row job at 02:00 and a 300-product restock at
    06:00 on days 1–5 (learned, as the engine does once the job is acknowledged)."""
    shop = Shop(11)
    dets = default_detectors()
    batch = shop.features(shop.batch_ship(1_000_000, BATCH))
    for day in range(5):
        for hour, job in ((2, "batch"), (6, "restock")):
            while shop.now < START_US + day * DAY_US + hour * HOUR_US:
                engine_step(dets, shop.features(shop.normal()))
            if job == "batch":
                learn_all(dets, replace(batch, commit_us=shop.now, txid=batch.txid + day))
            else:
                learn_all(dets, shop.features(shop.insert_products(RESTOCK)))
    while shop.now < START_US + 5 * DAY_US:
        engine_step(dets, shop.features(shop.normal()))
    return World(shop, dets), batch


def _at(world: World, hour: int) -> Shop:
    shop = copy.deepcopy(world.shop)
    while shop.now < START_US + 5 * DAY_US + hour * HOUR_US:
        shop.normal()
    return shop


def test_nightly_batch_is_normal_at_its_hour(batch_world: tuple[World, TxFeatures]) -> None:
    world, batch = batch_world
    shop = _at(world, 2)
    got = kind_scores(world.detectors, replace(batch, commit_us=shop.now))
    assert max(got.values(), default=0.0) < ALERT, got


def test_morning_restock_is_normal_at_its_hour(batch_world: tuple[World, TxFeatures]) -> None:
    world, _ = batch_world
    shop = _at(world, 6)
    got = kind_scores(world.detectors, shop.features(shop.insert_products(RESTOCK)))
    assert max(got.values(), default=0.0) < ALERT, got


def test_the_same_size_at_another_hour_as_a_new_shape_alarms(
    batch_world: tuple[World, TxFeatures],
) -> None:
    world, _ = batch_world
    shop = _at(world, 14)
    got = kind_scores(world.detectors, shop.features(shop.delete_orders(2_000_000, BATCH)))
    assert got[Kind.oversized] >= 0.8
    assert got[Kind.volume] >= 0.8


def test_the_restock_at_another_hour_alarms(
    batch_world: tuple[World, TxFeatures],
) -> None:
    world, _ = batch_world
    shop = _at(world, 15)
    got = kind_scores(world.detectors, shop.features(shop.insert_products(RESTOCK)))
    assert got[Kind.oversized] >= 0.8
