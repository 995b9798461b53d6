"""A simulated shop's change stream with labelled bad writes, to measure detection.

``generate`` plays N days of a four-table shop (customers, products, orders,
order_items): traffic follows a day curve with quieter weekends, transactions touch 1-5
rows, and two legitimate jobs recur from the first night (the 02:00 archive of ~5,000
orders and the 07:00 restock of every product). After a warm-up it injects one incident
of every ``Kind`` (``inject``) and returns them as ``Label``s. Everything flows from one
``random.Random(seed)``, so a seed is a scenario. No I/O here: ``write_debezium``
(``rowback.sources.debezium.export``) writes a stream for ``rowback ingest``.

>>> s = generate(days=1, seed=3, rate=5, orders0=50)
>>> s.labels, s.changes[0].op.label, s.changes == generate(1, 3, 5, orders0=50).changes
([], 'snapshot', True)
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

from rowback.detect.base import Kind
from rowback.model import Change, Column, Op, TableSchema, Text
from rowback.sources.debezium.export import write_debezium

__all__ = ["Label", "Scenario", "generate", "write_debezium"]

SOURCE = "shop"
START_US = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp()) * 1_000_000
"""Midnight UTC of a Monday: the scenario's first day."""
HOUR_US = 3_600 * 1_000_000
DAY_US = 24 * HOUR_US
DAY_CURVE = (
    0.05, 0.03, 0.02, 0.02, 0.03, 0.06, 0.15, 0.3, 0.5, 0.7, 0.85, 1.0,
    0.95, 0.85, 0.8, 0.8, 0.85, 0.9, 1.0, 0.95, 0.8, 0.6, 0.35, 0.15,
)  # fmt: skip
"""Share of the peak rate per hour of the day (UTC)."""
WEEKEND = 0.6
"""Weekend traffic as a share of a weekday's."""
CATEGORIES = ("books", "garden", "kitchen", "toys", "sports", "music", "tools", "beauty")
NOTES = ("", "leave at the door", "gift wrap please", "call before delivery", "fragile")
COUNTRIES = ("FR", "DE", "ES", "IT", "NL", "BE", "PT", "PL")
TS = "timestamp with time zone"


def _table(name: str, *cols: tuple[str, str]) -> TableSchema:
    columns = tuple(Column(n, t, key=n == "id") for n, t in cols)
    return TableSchema(SOURCE, "public", name, columns)


CUSTOMERS = _table(
    "customers",
    ("id", "bigint"),
    ("email", "text"),
    ("name", "text"),
    ("country", "text"),
    ("created_at", TS),
)
PRODUCTS = _table(
    "products",
    ("id", "bigint"),
    ("sku", "text"),
    ("name", "text"),
    ("price", "numeric(10,2)"),
    ("stock", "integer"),
    ("category", "text"),
    ("updated_at", TS),
)
ORDERS = _table(
    "orders",
    ("id", "bigint"),
    ("customer_id", "bigint"),
    ("status", "text"),
    ("total", "numeric(12,2)"),
    ("placed_at", TS),
    ("note", "text"),
)
ITEMS = _table(
    "order_items",
    ("id", "bigint"),
    ("order_id", "bigint"),
    ("product_id", "bigint"),
    ("qty", "integer"),
    ("price", "numeric(10,2)"),
)
TABLES = (CUSTOMERS, PRODUCTS, ORDERS, ITEMS)


@dataclass(frozen=True, slots=True)
class Label:
    """One injected incident: its kind, its transactions, when it began, on which table."""

    kind: Kind
    txids: frozenset[int]
    first_us: int
    table: str


@dataclass(slots=True)
class Scenario:
    """The stream in commit order and the incidents injected into it."""

    changes: list[Change]
    labels: list[Label]
    start_us: int
    end_us: int
    warmup_us: int
    """Commit time before which nothing was injected."""

    @property
    def days(self) -> float:
        return (self.end_us - self.start_us) / DAY_US


def ts_text(us: int) -> str:
    """PostgreSQL's text of a timestamptz in UTC, to the second.

    >>> ts_text(0)
    '1970-01-01 00:00:00+00'
    """
    return datetime.fromtimestamp(us // 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S+00")


def money(cents: int) -> str:
    """Cents as numeric text with two decimals: ``money(-5) == '-0.05'``."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def cents(text: Text) -> int:
    return int(Decimal(text or "0") * 100)


class Pool:
    """Ids with O(1) add, remove and random choice."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.pos: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def add(self, i: int) -> None:
        if i not in self.pos:
            self.pos[i] = len(self.items)
            self.items.append(i)

    def remove(self, i: int) -> None:
        p = self.pos.pop(i, None)
        if p is None:
            return
        last = self.items.pop()
        if last != i:
            self.items[p] = last
            self.pos[last] = p

    def choice(self, rng: random.Random) -> int | None:
        return self.items[rng.randrange(len(self.items))] if self.items else None

    def sample(self, rng: random.Random, n: int) -> list[int]:
        return rng.sample(self.items, min(n, len(self.items)))


@dataclass
class Shop:
    """The shop's rows (text, aligned with each table's columns) and the open transaction."""

    rng: random.Random
    rows: dict[str, dict[int, list[Text]]] = field(default_factory=dict)
    pools: dict[str, Pool] = field(default_factory=dict)
    archivable: deque[int] = field(default_factory=deque)
    next_id: dict[str, int] = field(default_factory=dict)
    ops: list[tuple[TableSchema, Op, int, list[Text] | None, list[Text] | None]] = field(
        default_factory=list
    )
    now_us: int = 0

    def __post_init__(self) -> None:
        for t in TABLES:
            self.rows[t.name] = {}
            self.next_id[t.name] = 1
        for status in ("new", "paid", "shipped", "cancelled", "archived", "items"):
            self.pools[status] = Pool()

    # -- row operations, recorded in the open transaction ------------------------------

    def insert(self, t: TableSchema, values: list[Text], op: Op = Op.INSERT) -> int:
        i = self.next_id[t.name]
        self.next_id[t.name] = i + 1
        row = [str(i), *values]
        self.rows[t.name][i] = row
        self.ops.append((t, op, i, list(row), None))
        if t is ORDERS:
            self._status(i, None, row[2])
        elif t is ITEMS:
            self.pools["items"].add(i)
        return i

    def update(self, t: TableSchema, i: int, **values: Text) -> None:
        row = self.rows[t.name][i]
        before = list(row)
        for name, v in values.items():
            row[_index(t, name)] = v
        if row == before:
            return  # PostgreSQL would send it, but the shop's code skips writing no change
        self.ops.append((t, Op.UPDATE, i, list(row), before))
        if t is ORDERS and before[2] != row[2]:
            self._status(i, before[2], row[2])

    def delete(self, t: TableSchema, i: int) -> None:
        row = self.rows[t.name].pop(i)
        self.ops.append((t, Op.DELETE, i, None, row))
        if t is ORDERS:
            self._status(i, row[2], None)
        elif t is ITEMS:
            self.pools["items"].remove(i)

    def _status(self, i: int, old: Text, new: Text) -> None:
        if old in self.pools:
            self.pools[old].remove(i)
        if new in self.pools:
            self.pools[new].add(i)
        if new in ("shipped", "cancelled"):
            self.archivable.append(i)

    def ids(self, t: TableSchema) -> list[int]:
        return list(self.rows[t.name])

    def row(self, t: TableSchema, i: int) -> list[Text]:
        return self.rows[t.name][i]

    def commit(self, txid: int, lsn: int, at_us: int) -> list[Change]:
        """The open transaction's operations as changes, and a new transaction."""
        out = [
            Change(t, op, (str(i),), after, before, at_us, txid, lsn, seq)
            for seq, (t, op, i, after, before) in enumerate(self.ops)
        ]
        self.ops = []
        return out

    # -- the shop's everyday work ------------------------------------------------------

    def customer(self) -> int:
        r = self.rng
        n = self.next_id["customers"]
        name = f"{r.choice(('Ana', 'Ben', 'Chloé', 'Dan', 'Eva', 'Femi'))} {n}"
        return self.insert(
            CUSTOMERS, [f"c{n}@mail.test", name, r.choice(COUNTRIES), ts_text(self.now_us)]
        )

    def product(self) -> int:
        r = self.rng
        n = self.next_id["products"]
        return self.insert(
            PRODUCTS,
            [
                f"SKU-{n:05d}",
                f"product {n}",
                money(r.randint(199, 19_999)),
                str(r.randint(0, 500)),
                r.choice(CATEGORIES),
                ts_text(self.now_us),
            ],
        )

    def order(self, status: str = "new", items: int = 0, op: Op = Op.INSERT) -> int:
        r = self.rng
        customer = r.randrange(1, self.next_id["customers"])
        note = r.choice(NOTES) if r.random() < 0.5 else "thanks"
        total = r.randint(500, 30_000)
        at = ts_text(self.now_us)
        o = self.insert(ORDERS, [str(customer), status, money(total), at, note], op)
        for _ in range(items):
            p = r.randrange(1, self.next_id["products"])
            price = self.rows["products"][p][3] if p in self.rows["products"] else "9.99"
            self.insert(ITEMS, [str(o), str(p), str(r.randint(1, 3)), price], op)
        return o

    def everyday(self) -> None:
        """One ordinary transaction of 1-5 rows, by the shop's usual mix."""
        r = self.rng
        x = r.random()
        if x < 0.40:
            self.order(items=r.randint(1, 3))
            p = r.randrange(1, self.next_id["products"])
            stock = self.rows["products"][p][4] or "0"
            self.update(PRODUCTS, p, stock=str(max(0, int(stock) - 1)))
        elif x < 0.62:
            self._advance("new", "paid")
        elif x < 0.80:
            self._advance("paid", "shipped")
        elif x < 0.84:
            self._advance("new", "cancelled")
        elif x < 0.92:
            self.customer()
        elif x < 0.95:
            c = r.randrange(1, self.next_id["customers"])
            if c in self.rows["customers"]:
                self.update(CUSTOMERS, c, email=f"c{c}.{r.randint(1, 99)}@mail.test")
        elif x < 0.98:
            p = r.randrange(1, self.next_id["products"])
            price = cents(self.rows["products"][p][3])
            new = max(99, int(price * r.uniform(0.9, 1.1)))
            self.update(PRODUCTS, p, price=money(new), updated_at=ts_text(self.now_us))
        else:
            i = self.pools["items"].choice(r)
            if i is not None:
                self.delete(ITEMS, i)

    def _advance(self, old: str, new: str) -> None:
        o = self.pools[old].choice(self.rng)
        if o is not None:
            self.update(ORDERS, o, status=new)

    def archive(self, limit: int) -> None:
        """The nightly job's batch: shipped and cancelled orders, oldest first."""
        done = 0
        while self.archivable and done < limit:
            o = self.archivable.popleft()
            row = self.rows["orders"].get(o)
            if row is not None and row[2] in ("shipped", "cancelled"):
                self.update(ORDERS, o, status="archived")
                done += 1

    def restock(self) -> None:
        """The morning job: every product's stock topped up."""
        at = ts_text(self.now_us)
        for p, row in self.rows["products"].items():
            stock = int(row[4] or 0) + self.rng.randint(20, 100)
            self.update(PRODUCTS, p, stock=str(stock), updated_at=at)


def _index(t: TableSchema, name: str) -> int:
    return next(i for i, c in enumerate(t.columns) if c.name == name)


Action = Callable[[Shop], None]
Event = tuple[int, int, Action, int | None]
"""(commit time, tie-breaker, what it does, the label it belongs to or None)."""


def _traffic(rng: random.Random, start_us: int, days: int, rate: float) -> Iterable[int]:
    """Commit times of ordinary transactions: a Poisson-like count per hour."""
    for h in range(days * 24):
        at = start_us + h * HOUR_US
        weekday = datetime.fromtimestamp(at // 1_000_000, UTC).weekday()
        lam = rate * DAY_CURVE[h % 24] * (WEEKEND if weekday >= 5 else 1.0)
        n = max(0, round(rng.gauss(lam, math.sqrt(lam)))) if lam > 0 else 0
        yield from (at + rng.randrange(HOUR_US // 1_000) * 1_000 for _ in range(n))


def _jobs(start_us: int, days: int, archive: int) -> Iterable[tuple[int, Action]]:
    batch = 1_000
    for d in range(days):
        night = start_us + d * DAY_US + 2 * HOUR_US
        for b in range(0, archive, batch):
            n = min(batch, archive - b)
            yield night + (b // batch) * 30_000_000, partial(Shop.archive, limit=n)
        yield start_us + d * DAY_US + 7 * HOUR_US, Shop.restock


def generate(
    days: int = 7,
    seed: int = 0,
    rate: float = 60.0,
    *,
    warmup_days: float = 2.0,
    orders0: int = 60_000,
    customers0: int = 3_000,
    products0: int = 400,
    archive: int = 5_000,
) -> Scenario:
    """The shop's stream over ``days`` with ``rate`` transactions an hour at peak.

    The first transaction is a snapshot of the shop's existing rows (``orders0`` orders,
    most shipped or archived, so the nightly archive has work from the first night).
    Incidents are injected only after ``warmup_days`` and only when some days remain.
    """
    from rowback.detect.inject import schedule

    rng = random.Random(seed)
    shop = Shop(rng)
    shop.now_us = START_US - DAY_US
    for _ in range(customers0):
        shop.customer()
    for _ in range(products0):
        shop.product()
    for _ in range(orders0):
        status = rng.choices(("shipped", "cancelled", "archived"), (75, 5, 20))[0]
        shop.order(status, items=1)
    snap = [(t, Op.SNAPSHOT, i, a, b) for t, _, i, a, b in shop.ops]
    shop.ops = snap
    changes = shop.commit(txid=1, lsn=1, at_us=START_US - 1)

    events: list[Event] = [
        (at, n, Shop.everyday, None) for n, at in enumerate(_traffic(rng, START_US, days, rate))
    ]
    for at, job in _jobs(START_US, days, archive):
        events.append((at, len(events), job, None))
    end_us = START_US + days * DAY_US
    warmup_us = START_US + int(warmup_days * DAY_US)
    kinds: list[tuple[Kind, str]] = []
    if end_us - warmup_us >= DAY_US // 2:
        for n, (kind, table, planned) in enumerate(schedule(rng, warmup_us, end_us)):
            kinds.append((kind, table))
            events.extend((at, len(events) + j, act, n) for j, (at, act) in enumerate(planned))
    events.sort(key=lambda e: (e[0], e[1]))

    txids: list[list[int]] = [[] for _ in kinds]
    firsts = [0] * len(kinds)
    txid, last_us = 1, START_US
    for at, _, act, label in events:
        shop.now_us = at = max(at, last_us + 1_000)  # whole ms, as Debezium has them
        act(shop)
        if not shop.ops:
            continue
        txid += 1
        last_us = at
        changes.extend(shop.commit(txid, txid, at))
        if label is not None:
            if not txids[label]:
                firsts[label] = at
            txids[label].append(txid)
    labels = [
        Label(kind, frozenset(ids), firsts[n], f"public.{table}")
        for n, ((kind, table), ids) in enumerate(zip(kinds, txids, strict=True))
        if ids
    ]
    return Scenario(changes, labels, START_US, end_us, warmup_us)
