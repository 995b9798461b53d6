"""The shared score scale and the per-transaction features detectors read."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from rowback.detect.calibrate import poisson_z, score
from rowback.detect.features import MAX_DISTINCT, TxSummary, tx_features
from rowback.model import Change, Column, Op, TableSchema

T = TableSchema(
    "pg", "public", "orders", (Column("id", "int", key=True), Column("price", "numeric"))
)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_score_is_always_in_unit_interval(z: float) -> None:
    assert 0.0 <= score(z) <= 1.0


@given(st.integers(0, 10_000), st.floats(0, 1e6))
def test_poisson_z_is_never_negative(k: int, lam: float) -> None:
    assert poisson_z(k, lam) >= 0.0


def test_one_update_of_many_rows_is_one_observation() -> None:
    changes = [
        Change(T, Op.UPDATE, (str(i),), [str(i), "0"], [str(i), "9.5"], 1_000, 7, 1, i)
        for i in range(1000)
    ]
    (f,) = tx_features(changes)
    assert (f.table, f.txid, f.updates, f.rows) == ("public.orders", 7, 1000, 1000)
    price = f.columns[1]
    assert (price.changed, price.top) == (1000, ("0", 1000))
    assert f.columns[0].written == 0  # the key did not change
    assert f.shape == "update(price)"


W = TableSchema(
    "pg",
    "public",
    "events",
    (
        Column("id", "int", key=True),
        Column("kind", "text"),
        Column("at", "timestamp with time zone"),
        Column("amount", "numeric"),
    ),
)
_VALUES = st.one_of(st.none(), st.sampled_from(["", " ", "a", "b", "1.5", "-3", "1970-01-01"]))


@st.composite
def _transaction(draw: st.DrawFn) -> list[Change]:
    """One transaction's inserts, updates (with or without a before image, some columns
    unsent) and deletes, with repeated keys and values."""
    out = []
    for seq in range(draw(st.integers(1, 40))):
        key = str(draw(st.integers(0, 8)))
        op = draw(st.sampled_from([Op.INSERT, Op.UPDATE, Op.DELETE]))
        row = [key] + [draw(_VALUES) for _ in range(3)]
        before = None
        if op == Op.UPDATE and draw(st.booleans()):
            before = [key] + [draw(_VALUES) for _ in range(3)]
        unsent = (
            frozenset(draw(st.sets(st.integers(1, 3), max_size=2)))
            if op == Op.UPDATE
            else frozenset()
        )
        after = None if op == Op.DELETE else row
        out.append(Change(W, op, (key,), after, before, 1_000 + seq, 9, 5, seq, unsent))
    return out


@given(_transaction(), st.lists(st.integers(0, 40), max_size=4))
def test_a_transaction_summarised_in_pieces_has_the_features_of_the_whole(
    changes: list[Change], cuts: list[int]
) -> None:
    """A transaction several writes cut into pieces (and whose summary was saved and
    restored between them, as after a restart) is summarised as if it came whole."""
    (whole,) = tx_features(changes)
    acc: TxSummary | None = None
    at = 0
    for p in [*sorted(set(min(c, len(changes)) for c in cuts)), len(changes)]:
        acc = TxSummary.from_state(acc.state()) if acc is not None else TxSummary(W.qualified, 9)
        for c in changes[at:p]:
            acc.add(c)
        at = p
    assert acc is not None
    assert acc.finish() == whole


def test_a_huge_transaction_is_summarised_in_bounded_space() -> None:
    """Distinct values are counted up to ``MAX_DISTINCT``; the counts of the frequent
    ones stay exact and the summary's saved size stays small."""
    acc = TxSummary(T.qualified, 3)
    for i in range(50_000):
        price = "0" if i % 2 else f"p{i}"
        acc.add(Change(T, Op.UPDATE, (str(i),), [str(i), price], None, 5, 3, 1, i))
    f = acc.finish()
    assert f.updates == 50_000 and f.columns[1].top == ("0", 25_000)
    assert f.columns[1].distinct >= 25_001  # an upper bound past the cap, never less
    assert len(orjson.dumps(acc.state())) < 400_000
    assert len(acc.state()["columns"][0][3]) <= MAX_DISTINCT
