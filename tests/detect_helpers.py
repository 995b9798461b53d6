"""A small, deterministic shop workload for detector tests, and the engine's learn rule.

``Shop`` writes realistic transactions to ``public.orders`` and ``public.products``
(1–5 rows each, prices 1–500, a few statuses, ``created_at`` timestamps, one hot stock
row) as ``Change`` objects, summarised with ``tx_features`` exactly as capture would.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from rowback.detect.base import Detector, Kind
from rowback.detect.features import TxFeatures, tx_features
from rowback.model import Change, Column, Op, TableSchema, Text

ORDERS = TableSchema(
    "pg",
    "public",
    "orders",
    (
        Column("id", "integer", key=True),
        Column("customer", "text"),
        Column("status", "text"),
        Column("total", "numeric(12,2)"),
        Column("note", "text"),
        Column("created_at", "timestamp with time zone"),
    ),
)
PRODUCTS = TableSchema(
    "pg",
    "public",
    "products",
    (
        Column("id", "integer", key=True),
        Column("name", "text"),
        Column("price", "numeric(12,2)"),
        Column("stock", "integer"),
        Column("category", "text"),
    ),
)
START_US = int(datetime(2026, 11, 23, tzinfo=UTC).timestamp() * 1_000_000)  # a Monday
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
CATEGORIES = ("books", "games", "garden", "kitchen", "toys")
NOTES = ("gift", "leave at door", "call first")
ALERT = 0.5
"""The engine's alert threshold in these tests: it learns only what scored below it."""


def ts_text(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S+00")


class Shop:
    """One deterministic stream of shop transactions, each a list of ``Change``."""

    def __init__(self, seed: int = 7, start_us: int = START_US) -> None:
        self.rng = random.Random(seed)
        self.now = start_us
        self.txid = 1000
        self.lsn = 0
        self.orders: dict[int, list[Text]] = {}
        self.products: dict[int, list[Text]] = {}
        for i in range(1, 201):
            self.products[i] = self._product_row(i)
        self.next_order = 1

    # rows ---------------------------------------------------------------------------

    def _price(self) -> str:
        return f"{self.rng.uniform(1, 500):.2f}"

    def _product_row(self, i: int) -> list[Text]:
        cat = self.rng.choice(CATEGORIES)
        return [str(i), f"product {i}", self._price(), str(self.rng.randint(0, 90)), cat]

    def _order_row(self, i: int) -> list[Text]:
        r = self.rng.random()
        customer = "" if r < 0.01 else f"customer{self.rng.randint(1, 900)}@example.com"
        note = self.rng.choice(NOTES) if self.rng.random() < 0.2 else None
        return [str(i), customer, "pending", self._price(), note, ts_text(self.now)]

    # changes -----------------------------------------------------------------------

    def tx(
        self, rows: Iterable[tuple[TableSchema, Op, list[Text] | None, list[Text]]]
    ) -> list[Change]:
        """Changes of one transaction at ``now`` from (table, op, before, after) rows."""
        self.txid += 1
        out = []
        for seq, (table, op, before, after) in enumerate(rows):
            self.lsn += 1
            key = table.key_of(after)
            row = None if op == Op.DELETE else after
            out.append(Change(table, op, key, row, before, self.now, self.txid, self.lsn, seq))
        return out

    def insert_orders(self, n: int, **override: Text) -> list[Change]:
        rows = []
        for _ in range(n):
            i = self.next_order
            self.next_order += 1
            row = self._order_row(i)
            for name, v in override.items():
                row[_index(ORDERS, name)] = v
            self.orders[i] = row
            rows.append((ORDERS, Op.INSERT, None, row))
        if len(self.orders) > 2000:
            for i in list(self.orders)[:500]:
                del self.orders[i]
        return self.tx(rows)

    def update_orders(self, ids: Sequence[int], **values: Text) -> list[Change]:
        rows = []
        for i in ids:
            before = self.orders[i]
            after = list(before)
            for name, v in values.items():
                after[_index(ORDERS, name)] = v
            self.orders[i] = after
            rows.append((ORDERS, Op.UPDATE, before, after))
        return self.tx(rows)

    def insert_products(self, n: int) -> list[Change]:
        """A restock: ``n`` new products in one statement."""
        rows = []
        for _ in range(n):
            i = len(self.products) + 1
            self.products[i] = self._product_row(i)
            rows.append((PRODUCTS, Op.INSERT, None, self.products[i]))
        return self.tx(rows)

    def update_products(self, ids: Sequence[int], **values: Text) -> list[Change]:
        rows = []
        for i in ids:
            before = self.products[i]
            after = list(before)
            for name, v in values.items():
                after[_index(PRODUCTS, name)] = v
            self.products[i] = after
            rows.append((PRODUCTS, Op.UPDATE, before, after))
        return self.tx(rows)

    def delete_orders(self, first: int, n: int) -> list[Change]:
        """Delete ``n`` orders with ids from ``first`` (rows synthesised when not tracked)."""
        rows = []
        for i in range(first, first + n):
            row = self.orders.pop(i, None) or [str(i), "c@example.com", "paid", "5.00", None, None]
            rows.append((ORDERS, Op.DELETE, None, row))
        return self.tx(rows)

    def batch_ship(self, first: int, n: int) -> list[Change]:
        """The nightly job: ``n`` paid orders from ``first`` marked shipped in one statement."""
        rows = []
        for i in range(first, first + n):
            before = [str(i), "c@example.com", "paid", "5.00", None, "2026-11-01 00:00:00+00"]
            after = list(before)
            after[2] = "shipped"
            rows.append((ORDERS, Op.UPDATE, before, after))
        return self.tx(rows)

    def open_orders(self, status: str, n: int) -> list[int]:
        ids = [i for i, r in reversed(self.orders.items()) if r[2] == status][: n * 4]
        return sorted(self.rng.sample(ids, min(n, len(ids))))

    def normal(self) -> list[Change]:
        """One ordinary transaction; the clock moves 30 s – 3.5 min first."""
        self.now += self.rng.randint(30, 210) * 1_000_000
        r = self.rng.random()
        if r < 0.40:
            return self.insert_orders(self.rng.randint(1, 3))
        if r < 0.70:
            status = self.rng.choice(("pending", "paid"))
            ids = self.open_orders(status, self.rng.randint(1, 3))
            if ids:
                nxt = "paid" if status == "pending" else self.rng.choice(("shipped", "cancelled"))
                return self.update_orders(ids, status=nxt)
            return self.insert_orders(1)
        if r < 0.85:
            ids = sorted(self.rng.sample(range(2, 201), self.rng.randint(1, 5)))
            return self.update_products(ids, price=self._price())
        stock = str(self.rng.randint(0, 90))
        return self.update_products([1], stock=stock)  # one hot row, updated all day

    def features(self, changes: list[Change]) -> TxFeatures:
        (f,) = tx_features(changes)
        return f


def _index(table: TableSchema, name: str) -> int:
    return next(i for i, c in enumerate(table.columns) if c.name == name)


def kind_scores(detectors: Iterable[Detector], f: TxFeatures) -> dict[Kind, float]:
    """The highest score per kind over all detectors."""
    out: dict[Kind, float] = {}
    for d in detectors:
        for s in d.score_one(f):
            out[s.kind] = max(out.get(s.kind, 0.0), s.score)
    return out


def engine_step(detectors: Sequence[Detector], f: TxFeatures) -> dict[Kind, float]:
    """Score ``f``, then learn it unless something alarmed (so bad writes stay out)."""
    got = kind_scores(detectors, f)
    if max(got.values(), default=0.0) < ALERT:
        for d in detectors:
            d.learn_one(f)
    else:
        for d in detectors:
            d.see_one(f)
    return got


def learn_all(detectors: Sequence[Detector], f: TxFeatures) -> None:
    for d in detectors:
        d.learn_one(f)
