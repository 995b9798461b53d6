"""The vectorized and row-by-row write paths of the DuckDB store must store the same bytes."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rowback.model import Change, Column, Op, TableSchema
from rowback.store.duckdb import DuckDBStore

T = TableSchema(
    "s",
    "public",
    "t",
    (
        Column("k", "integer", True),
        Column("a", "text"),
        Column("n", "numeric(8,2)"),
        Column("j", "jsonb"),
    ),
)
VALUE = st.one_of(st.none(), st.sampled_from(["x", "y", "", "NULL", "ü"]))
STEP = st.tuples(
    st.sampled_from(["ins", "upd", "del"]),
    st.integers(0, 4),
    VALUE,
    st.sampled_from([None, "1.00", "2.50"]),
    st.booleans(),
    st.booleans(),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(STEP, max_size=40), cut=st.integers(1, 7))
def test_paths_agree(tmp_path_factory: object, steps: list[tuple[object, ...]], cut: int) -> None:
    base = Path(tmp_path_factory.mktemp("agree"))  # type: ignore[attr-defined]
    fast = DuckDBStore(base / "fast")
    slow = DuckDBStore(base / "slow", vectorized=False)
    state: dict[int, list[str | None]] = {}
    changes: list[Change] = []
    for i, (op, k, a, n, with_before, lie) in enumerate(steps):
        key = (str(k),)
        old = state.get(k)
        if op == "ins":
            row = [str(k), a, n, '{"i": %d}' % i]  # noqa: UP031
            changes.append(Change(T, Op.INSERT, key, row, None, i, i, i, 1))
            state[k] = row
        elif op == "upd":
            row = [str(k), a, n, old[3] if old else None]
            before = None
            if with_before and old is not None:
                before = [str(k), "lie" if lie else old[1], old[2], old[3]]
            changes.append(Change(T, Op.UPDATE, key, row, before, i, i, i, 1))
            state[k] = row
        else:
            changes.append(Change(T, Op.DELETE, key, None, None, i, i, i, 1))
            state.pop(k, None)
    gaps = []
    for store in (fast, slow):
        total = 0
        for lo in range(0, len(changes), cut):
            total += store.write(changes[lo : lo + cut], "s", {"at": lo}).gaps
        gaps.append(total)
    assert gaps[0] == gaps[1]
    if changes:
        hist = "SELECT * EXCLUDE (_ts) FROM h_1 ORDER BY _pos"
        head = "SELECT * EXCLUDE (_pos) FROM s_1 ORDER BY c0"
        assert fast.sql(hist) == slow.sql(hist)
        assert fast.sql(head) == slow.sql(head)
    fast.close()
    slow.close()
