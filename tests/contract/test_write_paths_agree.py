"""The write paths of the DuckDB store must store the same bytes: vectorized and
row-by-row ``write``, and the columnar ``write_batch``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rowback.model import Change, ChangeBatch, Column, Op, TableSchema
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
    st.sampled_from([None, "1.00", "2.50", "NaN"]),  # NaN widens the DECIMAL column
    st.booleans(),
    st.booleans(),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(STEP, max_size=40), cut=st.integers(1, 7))
def test_paths_agree(tmp_path_factory: object, steps: list[tuple[object, ...]], cut: int) -> None:
    base = Path(tmp_path_factory.mktemp("agree"))  # type: ignore[attr-defined]
    fast = DuckDBStore(base / "fast", checkpoint_every=2)
    slow = DuckDBStore(base / "slow", vectorized=False, checkpoint_every=2)
    bulk = DuckDBStore(base / "bulk", checkpoint_every=2)
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
            before = None
            if with_before and old is not None:
                before = [str(k), "lie" if lie else old[1], old[2], old[3]]
            changes.append(Change(T, Op.DELETE, key, None, before, i, i, i, 1))
            state.pop(k, None)
    gaps = []
    for store in (fast, slow, bulk):
        total = 0
        for lo in range(0, len(changes), cut):
            part = changes[lo : lo + cut]
            if store is bulk:
                total += store.write_batch(batch_of(part), "s", {"at": lo}).gaps
            else:
                total += store.write(part, "s", {"at": lo}).gaps
        gaps.append(total)
    assert gaps[0] == gaps[1] == gaps[2]
    if changes:
        hist = "SELECT * EXCLUDE (_ts) FROM h_1 ORDER BY _pos"
        head = "SELECT * EXCLUDE (_pos) FROM s_1 ORDER BY c0"
        txs = "SELECT * FROM _rb_tx ORDER BY pos_lo"
        cps = "SELECT * FROM _rb_checkpoints ORDER BY ALL"
        for q in (hist, head, txs, cps):
            assert fast.sql(q) == slow.sql(q) == bulk.sql(q)
    for store in (fast, slow, bulk):
        store.close()


def batch_of(changes: list[Change]) -> ChangeBatch:
    """The columnar form of changes to ``T``; a delete's after row carries its key."""

    def column(values: list[object], kind: pa.DataType) -> pa.Array:
        return pa.array(values, kind)

    n = len(T.columns)
    after = [list(c.after) if c.after is not None else [*c.key, *[None] * (n - 1)] for c in changes]
    before = [c.before if c.before is not None else [None] * n for c in changes]
    has = [c.before is not None for c in changes]
    return ChangeBatch(
        T,
        column([int(c.op) for c in changes], pa.uint8()),
        column([c.txid for c in changes], pa.uint64()),
        column([c.lsn for c in changes], pa.uint64()),
        column([c.seq for c in changes], pa.uint32()),
        column([c.commit_us for c in changes], pa.int64()),
        tuple(column([r[i] for r in after], pa.string()) for i in range(n)),
        tuple(column([r[i] for r in before], pa.string()) for i in range(n)) if any(has) else None,
        column(has, pa.bool_()) if any(has) else None,
    )
