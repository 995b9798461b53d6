"""The write paths of the DuckDB store must store the same bytes: vectorized and
row-by-row ``write``, and the columnar ``write_batch``; also across ALTER COLUMN TYPE of
the key and of a value (``retype.py``), after which the table must still be right."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rowback.model import Change, ChangeBatch, Column, Op, TableSchema
from rowback.store.duckdb import DuckDBStore
from rowback.when import AtLsn

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
# ALTER TABLE t ALTER COLUMN k TYPE bigint, ALTER COLUMN n TYPE numeric(10,3)
T2 = TableSchema(
    "s",
    "public",
    "t",
    (Column("k", "bigint", True), T.columns[1], Column("n", "numeric(10,3)"), T.columns[3]),
)


def _scaled(n: str | None, schema: TableSchema) -> str | None:
    """``n`` as PostgreSQL prints it under ``schema``'s numeric scale."""
    return None if n is None else n if schema is T or n == "NaN" else n + "0"


VALUE = st.one_of(st.none(), st.sampled_from(["x", "y", "", "NULL", "ü"]))
STEP = st.tuples(
    st.sampled_from(["ins", "upd", "del", "ins", "upd", "del", "retype"]),
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
    schema = T
    for i, (op, k, a, n, with_before, lie) in enumerate(steps):
        if op == "retype":
            schema = T2 if schema is T else T
            continue
        if changes and changes[-1].table is not schema or not changes and schema is T2:
            # PostgreSQL rewrote every row; the store learns so from this change
            state = {k: [r[0], r[1], _rescale(r[2], schema), r[3]] for k, r in state.items()}
        key = (str(k),)
        old = state.get(k)
        n = _scaled(n, schema)
        if op == "ins":
            row = [str(k), a, n, '{"i": %d}' % i]  # noqa: UP031
            changes.append(Change(schema, Op.INSERT, key, row, None, i, i, i, 1))
            state[k] = row
        elif op == "upd":
            row = [str(k), a, n, old[3] if old else None]
            before = None
            if with_before and old is not None:
                before = [str(k), "lie" if lie else old[1], old[2], old[3]]
            changes.append(Change(schema, Op.UPDATE, key, row, before, i, i, i, 1))
            state[k] = row
        else:
            before = None
            if with_before and old is not None:
                before = [str(k), "lie" if lie else old[1], old[2], old[3]]
            changes.append(Change(schema, Op.DELETE, key, None, before, i, i, i, 1))
            state.pop(k, None)
    parts = []  # writes of ``cut`` changes, split where the table version changes
    for lo in range(0, len(changes), cut):
        for ch in changes[lo : lo + cut]:
            if parts and parts[-1][1][-1].table is ch.table and len(parts[-1][1]) < cut:
                parts[-1][1].append(ch)
            else:
                parts.append((lo, [ch]))
    gaps = []
    for store in (fast, slow, bulk):
        total = 0
        for lo, part in parts:
            if store is bulk:
                total += store.write_batch(batch_of(part), "s", {"at": lo}).gaps
            else:
                total += store.write(part, "s", {"at": lo}).gaps
        gaps.append(total)
    assert gaps[0] == gaps[1] == gaps[2]
    if changes:  # the last state, whatever the retypes, is the table's
        want = sorted((int(r[0] or 0), r[1], r[2]) for r in state.values())
        res = fast.asof("public.t", AtLsn(2**62))
        rows = [dict(zip(res.columns, r, strict=True)) for r in res.rows]
        got = sorted((r["k"], r["a"], None if r["n"] is None else str(r["n"])) for r in rows)
        assert got == want
    if changes:
        hist = "SELECT * EXCLUDE (_ts) FROM h_1 ORDER BY _pos"
        head = "SELECT * EXCLUDE (_pos) FROM s_1 ORDER BY ALL"
        txs = "SELECT * FROM _rb_tx ORDER BY pos_lo"
        cps = "SELECT * FROM _rb_checkpoints ORDER BY ALL"
        for q in (hist, head, txs, cps):
            assert fast.sql(q) == slow.sql(q) == bulk.sql(q)
    for store in (fast, slow, bulk):
        store.close()


def _rescale(n: str | None, schema: TableSchema) -> str | None:
    if n is None or n == "NaN":
        return n
    return n + "0" if schema is T2 else n[:-1]


def batch_of(changes: list[Change]) -> ChangeBatch:
    """The columnar form of changes to one table version; a delete's after row carries
    its key."""

    def column(values: list[object], kind: pa.DataType) -> pa.Array:
        return pa.array(values, kind)

    n = len(changes[0].table.columns)
    after = [list(c.after) if c.after is not None else [*c.key, *[None] * (n - 1)] for c in changes]
    before = [c.before if c.before is not None else [None] * n for c in changes]
    has = [c.before is not None for c in changes]
    return ChangeBatch(
        changes[0].table,
        column([int(c.op) for c in changes], pa.uint8()),
        column([c.txid for c in changes], pa.uint64()),
        column([c.lsn for c in changes], pa.uint64()),
        column([c.seq for c in changes], pa.uint32()),
        column([c.commit_us for c in changes], pa.int64()),
        tuple(column([r[i] for r in after], pa.string()) for i in range(n)),
        tuple(column([r[i] for r in before], pa.string()) for i in range(n)) if any(has) else None,
        column(has, pa.bool_()) if any(has) else None,
    )


def test_heads_without_value_hashes(tmp_path: Path) -> None:
    """A head written before ``_h`` existed gets it on open; a stale ``_h`` only costs the
    exact path: history, head and gaps come out as from a store that always had it."""
    rows = [
        Change(T, Op.INSERT, (str(k),), [str(k), "a", "1.00", None], None, k, k, k, 1)
        for k in range(5)
    ]
    later = [
        Change(
            T,
            Op.UPDATE,
            (str(k),),
            [str(k), "b", "1.00", None],
            [str(k), "a", "1.00", None],
            9,
            9,
            9,
            1,
        )
        for k in range(5)
    ]
    stores = []
    for name, damage in (
        ("kept", None),
        ("old", "ALTER TABLE s_1 DROP COLUMN _h"),
        ("stale", "UPDATE s_1 SET _h = 7"),
    ):
        with DuckDBStore(tmp_path / name) as s:
            s.write_batch(batch_of(rows), "s", {"at": 0})
            if damage:
                s.sql(damage)
        s = DuckDBStore(tmp_path / name)
        assert s.write_batch(batch_of(later), "s", {"at": 1}).gaps == 0
        stores.append(s)
    head = "SELECT _pos, _h, c0, c1, c2, c3 FROM s_1 ORDER BY ALL"  # _h last in an old head
    for q in ("SELECT * EXCLUDE (_ts) FROM h_1 ORDER BY _pos", head):
        assert stores[0].sql(q) == stores[1].sql(q) == stores[2].sql(q)
    for s in stores:
        s.close()


U = TableSchema("s", "public", "u", (Column("id", "bigint", True), Column("v", "text")))


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.booleans(), st.sampled_from(["ins", "upd", "del"]), st.integers(0, 3)),
        min_size=1,
        max_size=40,
    ),
    cut=st.integers(1, 12),
)
def test_a_block_of_two_tables_is_written_as_write_would(
    tmp_path_factory: object, steps: list[tuple[bool, str, int]], cut: int
) -> None:
    """Interleaved changes to two tables, written as one batch per table and block
    (``ChangeBatch.rows``), store what ``write`` of them in order stores: the first
    block creates the tables (through ``write``), the later ones take the bulk path."""
    base = Path(tmp_path_factory.mktemp("block"))  # type: ignore[attr-defined]
    live: dict[tuple[str, int], str] = {}
    changes: list[Change] = []
    for i, (first, op, k) in enumerate(steps):
        schema = T if first else U
        row = [str(k), f"v{i}", None, None] if first else [str(k), f"v{i}"]
        old = live.get((schema.name, k))
        before = None
        if old is not None:
            before = [str(k), old, None, None] if first else [str(k), old]
        if op == "del":
            if old is None:
                continue
            changes.append(Change(schema, Op.DELETE, (str(k),), None, before, i, i // 3, i, 0))
            del live[(schema.name, k)]
            continue
        kind = Op.UPDATE if old is not None else Op.INSERT
        changes.append(Change(schema, kind, (str(k),), row, before, i, i // 3, i, 0))
        live[(schema.name, k)] = f"v{i}"
    rows_store = DuckDBStore(base / "rows")
    block_store = DuckDBStore(base / "blocks")
    for lo in range(0, len(changes), cut):
        part = changes[lo : lo + cut]
        rows_store.write(part, "s", {"at": lo})
        batches = []
        for schema in (T, U):
            mine = [(r, ch) for r, ch in enumerate(part) if ch.table is schema]
            if mine:
                b = batch_of([ch for _, ch in mine])
                rows = pa.array([r for r, _ in mine], pa.uint64())
                batches.append(dataclasses.replace(b, rows=rows))
        batches.sort(key=lambda b: b.rows[0].as_py())
        block_store.write_batch(batches, "s", {"at": lo}, commit=lo % 2 == 0)
    block_store.write([], "s", {"at": len(changes)})  # commits the last block
    queries = [
        "SELECT * FROM _rb_tx ORDER BY pos_lo",
        "SELECT * FROM _rb_tables ORDER BY id",
        "SELECT * FROM _rb_columns ORDER BY ALL",
    ]
    for (tid,) in rows_store.sql("SELECT id FROM _rb_tables"):
        queries += [f"SELECT * EXCLUDE (_ts) FROM h_{tid} ORDER BY _pos"]
        queries += [f"SELECT * EXCLUDE (_pos) FROM s_{tid} ORDER BY ALL"]
    for q in queries:
        assert block_store.sql(q) == rows_store.sql(q), q
    rows_store.close()
    block_store.close()
