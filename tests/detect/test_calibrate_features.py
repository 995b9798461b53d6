"""The shared score scale and the per-transaction features detectors read."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rowback.detect.calibrate import poisson_z, score
from rowback.detect.features import tx_features
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
