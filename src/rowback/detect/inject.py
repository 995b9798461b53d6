"""The bad writes a scenario injects: one plan per ``Kind``, each a list of timed actions.

Each plan is what a real mistake looks like in the stream: one bad statement is one big
transaction, a bad loop or job is many small ones. Rows are picked when the action runs,
from the shop as it is then, so before-images stay consistent with history.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from rowback.detect.base import Kind
from rowback.detect.scenario import (
    CUSTOMERS,
    HOUR_US,
    ITEMS,
    ORDERS,
    PRODUCTS,
    Action,
    Shop,
    cents,
    money,
)

SEC = 1_000_000
MIN = 60 * SEC
Planned = list[tuple[int, Action]]
Plan = Callable[[random.Random, int], Planned]


def _orders(s: Shop, n: int) -> list[int]:
    return s.rng.sample(s.ids(ORDERS), min(n, len(s.rows["orders"])))


def _products(s: Shop, n: int) -> list[int]:
    return s.rng.sample(s.ids(PRODUCTS), min(n, len(s.rows["products"])))


def _each(fn: Callable[[Shop, int], None], rows: Callable[[Shop], list[int]]) -> Action:
    def act(s: Shop) -> None:
        for i in rows(s):
            fn(s, i)

    return act


def volume(rng: random.Random, at: int) -> Planned:
    """A script rewriting notes five orders at a time, 20 transactions a minute."""
    act = _each(lambda s, o: s.update(ORDERS, o, note="updated by sync"), lambda s: _orders(s, 5))
    return [(at + k * 3 * SEC, act) for k in range(60)]


def oversized(rng: random.Random, at: int) -> Planned:
    """A DELETE with a forgotten WHERE, stopped by a limit: 1,500 order items at once."""

    def act(s: Shop) -> None:
        for i in s.pools["items"].sample(s.rng, 1_500):
            s.delete(ITEMS, i)

    return [(at, act)]


def constant(rng: random.Random, at: int) -> Planned:
    """``UPDATE products SET price = 1.00`` on a whole category's worth of rows."""
    act = _each(lambda s, p: s.update(PRODUCTS, p, price="1.00"), lambda s: _products(s, 250))
    return [(at, act)]


def nulls(rng: random.Random, at: int) -> Planned:
    """A migration that wiped 400 orders' notes."""
    act = _each(lambda s, o: s.update(ORDERS, o, note=None), lambda s: _orders(s, 400))
    return [(at, act)]


def _times100(s: Shop, t: str, i: int) -> None:
    table = PRODUCTS if t == "products" else ORDERS
    col = "price" if t == "products" else "total"
    old = s.row(table, i)[3]
    s.update(table, i, **{col: money(cents(old) * 100)})


def outlier(rng: random.Random, at: int) -> Planned:
    """Prices in cents written as euros: 150 products ×100 in one statement."""
    return [(at, _each(lambda s, p: _times100(s, "products", p), lambda s: _products(s, 150)))]


def corruption(rng: random.Random, at: int) -> Planned:
    """Low-volume value corruption: six small transactions, 36 order totals ×100."""
    act = _each(lambda s, o: _times100(s, "orders", o), lambda s: _orders(s, 6))
    return [(at + k * 5 * MIN, act) for k in range(6)]


def category(rng: random.Random, at: int) -> Planned:
    """A status no code path writes: 120 orders set to 'refunded'."""
    act = _each(lambda s, o: s.update(ORDERS, o, status="refunded"), lambda s: _orders(s, 120))
    return [(at, act)]


def timestamp(rng: random.Random, at: int) -> Planned:
    """Order dates reset to the epoch on 300 orders."""
    epoch = "1970-01-01 00:00:00+00"
    act = _each(lambda s, o: s.update(ORDERS, o, placed_at=epoch), lambda s: _orders(s, 300))
    return [(at, act)]


def frozen(rng: random.Random, at: int) -> Planned:
    """80 orders moved to other customers: ``customer_id`` is never updated otherwise."""

    def move(s: Shop, o: int) -> None:
        s.update(ORDERS, o, customer_id=str(s.rng.randrange(1, s.next_id["customers"])))

    return [(at, _each(move, lambda s: _orders(s, 80)))]


def runaway(rng: random.Random, at: int) -> Planned:
    """A retry loop rewriting the same 15 products' stock every 10 s for 15 minutes."""
    chosen: list[int] = []

    def act(s: Shop) -> None:
        if not chosen:
            chosen.extend(_products(s, 15))
        for p in chosen:
            s.update(PRODUCTS, p, stock=str(s.rng.randint(0, 500)))

    return [(at + k * 10 * SEC, act) for k in range(90)]


def insert_flood(rng: random.Random, at: int) -> Planned:
    """Bot sign-ups: 2,000 customers in five minutes, five per transaction."""

    def act(s: Shop) -> None:
        for _ in range(5):
            s.customer()

    return [(at + k * 750_000, act) for k in range(400)]


def drip(rng: random.Random, at: int) -> Planned:
    """A cleanup gone wrong: 1-3 customers deleted every 15 minutes for six hours."""

    def act(s: Shop) -> None:
        for c in s.rng.sample(s.ids(CUSTOMERS), s.rng.randint(1, 3)):
            s.delete(CUSTOMERS, c)

    return [(at + k * 15 * MIN, act) for k in range(24)]


PLANS: tuple[tuple[Kind, str, Plan, int], ...] = (
    (Kind.volume, "orders", volume, 3 * MIN),
    (Kind.oversized, "order_items", oversized, 0),
    (Kind.constant, "products", constant, 0),
    (Kind.nulls, "orders", nulls, 0),
    (Kind.outlier, "products", outlier, 0),
    (Kind.outlier, "orders", corruption, 25 * MIN),
    (Kind.category, "orders", category, 0),
    (Kind.timestamp, "orders", timestamp, 0),
    (Kind.frozen, "orders", frozen, 0),
    (Kind.runaway, "products", runaway, 15 * MIN),
    (Kind.insert_flood, "customers", insert_flood, 5 * MIN),
    (Kind.drip, "customers", drip, 6 * HOUR_US),
)
"""Every kind (value corruption twice: one statement, and a few small ones), with the
table it damages and how long it lasts."""


def schedule(rng: random.Random, from_us: int, to_us: int) -> list[tuple[Kind, str, Planned]]:
    """The plans in a shuffled order, one per equal slot of ``[from_us, to_us)``, each at a
    random time in its slot (whole seconds) that leaves it room to finish."""
    order = list(PLANS)
    rng.shuffle(order)
    slot = (to_us - from_us) // len(order)
    out = []
    for n, (kind, table, plan, lasts) in enumerate(order):
        room = max(SEC, slot - lasts - HOUR_US)
        at = from_us + n * slot + rng.randrange(room // SEC) * SEC
        planned = plan(rng, at)
        if lasts > slot:  # a short scenario: keep only what fits in the slot
            planned = [(t, a) for t, a in planned if t < from_us + (n + 1) * slot]
        out.append((kind, table, planned))
    return out
