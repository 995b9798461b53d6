"""The river-style check suite, run against every detector the registry lists."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from detect_helpers import Shop, learn_all

from rowback.detect.base import Detector, Signal
from rowback.detect.features import TxFeatures
from rowback.detect.registry import detectors

NAMES = [d.name for d in detectors(learned=True)]


def fresh(name: str) -> Detector:
    return next(d for d in detectors(learned=True) if d.name == name)


def stream(n: int, seed: int = 3) -> Iterator[TxFeatures]:
    """Normal shop traffic with a damaging write every 97 transactions."""
    shop = Shop(seed)
    for i in range(n):
        if i % 97 == 96:
            ids = shop.open_orders("pending", 30) or [1]
            bad = [
                shop.update_orders(ids, status="lost", created_at="1970-01-01 00:00:00+00"),
                shop.insert_orders(25, customer=None, total="99999"),
                shop.update_products(list(range(2, 40)), price="0.00", name="x"),
            ][(i // 97) % 3]
            yield shop.features(bad)
        else:
            yield shop.features(shop.normal())


def dump(d: Detector) -> str:
    return json.dumps(d.state())


def scores(sigs: list[Signal]) -> list[tuple[str, float]]:
    return [(s.kind.value, s.score) for s in sigs]


@pytest.fixture(scope="module")
def txs() -> list[TxFeatures]:
    return list(stream(1200))


def test_registry_names_are_unique() -> None:
    assert len(NAMES) == len(set(NAMES))


@pytest.mark.parametrize("name", NAMES)
def test_scores_are_in_unit_interval_and_of_declared_kinds(
    name: str, txs: list[TxFeatures]
) -> None:
    d = fresh(name)
    for f in txs:
        for s in d.score_one(f):
            assert 0.0 <= s.score <= 1.0
            assert s.kind in d.kinds
            assert s.normal and s.seen
        d.learn_one(f)


@pytest.mark.parametrize("name", NAMES)
def test_untrained_detector_scores_zero(name: str, txs: list[TxFeatures]) -> None:
    d = fresh(name)
    assert all(s.score == 0.0 for f in txs for s in d.score_one(f))


@pytest.mark.parametrize("name", NAMES)
def test_little_history_scores_zero(name: str, txs: list[TxFeatures]) -> None:
    d = fresh(name)
    for f in txs[:15]:
        d.learn_one(f)
    assert all(s.score == 0.0 for f in txs[15:] for s in d.score_one(f))


@pytest.mark.parametrize("name", NAMES)
def test_same_inputs_give_same_scores(name: str, txs: list[TxFeatures]) -> None:
    a, b = fresh(name), fresh(name)
    for f in txs:
        assert scores(a.score_one(f)) == scores(b.score_one(f))
        a.learn_one(f)
        b.learn_one(f)
    assert dump(a) == dump(b)


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_through_json(name: str, txs: list[TxFeatures]) -> None:
    a = fresh(name)
    for f in txs[:800]:
        a.learn_one(f)
    b = fresh(name)
    b.load(json.loads(json.dumps(a.state())))
    assert dump(b) == dump(a)
    for f in txs[800:]:
        assert b.score_one(f) == a.score_one(f)
        a.learn_one(f)
        b.learn_one(f)
    assert dump(b) == dump(a)


@pytest.mark.parametrize("name", NAMES)
def test_scoring_does_not_learn(name: str, txs: list[TxFeatures]) -> None:
    d = fresh(name)
    for i, f in enumerate(txs):
        if i % 50 == 0:
            before = dump(d)
            d.score_one(f)
            assert dump(d) == before
        d.learn_one(f)


@pytest.mark.parametrize("name", NAMES)
def test_state_stays_small(name: str) -> None:
    d = fresh(name)
    shop = Shop(5)
    for _ in range(3000):
        learn_all([d], shop.features(shop.normal()))
    assert len(dump(d)) < 150_000  # two tables
