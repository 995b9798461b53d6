"""Checkpoints of the DuckDB store: every plan that answers a point gives the replayed state.

Checkpoints are forced every 1-3 changes, so bounds fall before, on and between them, across
TRUNCATEs and schema versions, over both write paths.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rowback.errors import RowbackError
from rowback.model import Change, Column, Op, TableSchema
from rowback.store.duckdb import DuckDBStore, queries
from rowback.store.duckdb.store import FILE_NAME
from rowback.when import AtLsn, BeforeTx

ID, NAME, BAL, N = (
    Column("id", "integer", True),
    Column("name", "text"),
    Column("bal", "numeric(12,2)"),
    Column("n", "integer", missing="5"),  # rows older than it read 5 (ADD ... DEFAULT 5)
)
# cycling through these adds a column, drops one, then re-adds the dropped one (a new
# physical column) and drops the added one
VERSIONS = [
    TableSchema("src", "public", "acct", (ID, NAME, BAL)),
    TableSchema("src", "public", "acct", (ID, NAME, BAL, N)),
    TableSchema("src", "public", "acct", (ID, BAL, N)),
]
PLANS = ("fold", "checkpoint", "head")
US = 1_700_000_000_000_000

Model = dict[int, dict[str, str | None]]


def typed(col: str, v: str | None) -> object:
    if v is None:
        return None
    return {"id": int, "bal": Decimal, "n": int}.get(col, str)(v)


def change(
    v: TableSchema, op: Op, row: dict[str, str | None] | None, tx: int, seq: int, key: int
) -> Change:
    after = [row[c.name] for c in v.columns] if row is not None else None
    return Change(v, op, (str(key),), after, None, US + tx * 1000, tx, tx * 100, seq)


def snapshot(model: Model, v: TableSchema) -> list[dict[str, object]]:
    names = [c.name for c in v.columns]
    return [{n: typed(n, model[k].get(n)) for n in names} for k in sorted(model)]


def as_dicts(res: Any) -> list[dict[str, object]]:
    return [dict(zip(res.columns, r, strict=True)) for r in res.rows]


def plans_agree(
    s: DuckDBStore, point: Any, plans: set[str] | None = None
) -> list[dict[str, object]]:
    """asof by every plan that can answer ``point`` (``plans``, when given); they must
    agree, and with ``s.asof``."""
    t = s.table("acct")
    got = {}
    for plan in PLANS:
        try:
            got[plan] = as_dicts(queries.asof(s._con, t, point, plan=plan))
        except RowbackError as e:
            assert "cannot answer" in str(e)
    assert "fold" in got
    if plans is not None:
        assert set(got) == plans, point
    chosen = as_dicts(s.asof("acct", point))
    for plan, rows in got.items():
        assert rows == chosen, f"plan {plan} at {point}"
    return chosen


STEP = st.tuples(
    st.sampled_from(["ins", "upd", "upd", "del", "schema", "truncate"]),
    st.integers(0, 5),
    st.integers(0, 3),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    txs=st.lists(st.lists(STEP, min_size=1, max_size=5), min_size=1, max_size=14),
    every=st.integers(1, 3),
    split=st.integers(1, 3),
    vectorized=st.booleans(),
)
def test_every_plan_equals_replay_at_every_commit(
    tmp_path_factory: pytest.TempPathFactory,
    txs: list[list[tuple[str, int, int]]],
    every: int,
    split: int,
    vectorized: bool,
) -> None:
    s = DuckDBStore(tmp_path_factory.mktemp("cp"), vectorized=vectorized, checkpoint_every=every)
    model: Model = {}
    version = 0
    expected: list[list[dict[str, object]]] = []
    pending: list[Change] = []
    for tx, steps in enumerate(txs, start=1):
        for seq, (op, k, val) in enumerate(steps, start=1):
            v = VERSIONS[version]
            if op == "truncate":
                model.clear()
                pending.append(Change(v, Op.TRUNCATE, None, None, None, US, tx, tx * 100, seq))
                continue
            if op == "schema":  # the new version arrives with an upsert of key k
                version = (version + 1) % len(VERSIONS)
                v = VERSIONS[version]
                names = {c.name for c in v.columns}
                missing = {c.name: c.missing for c in v.columns}
                for row in model.values():
                    for gone in set(row) - names:
                        del row[gone]
                    for new in names - set(row):
                        row[new] = missing[new]
                op = "upd" if k in model else "ins"
            row = {"id": str(k), "name": f"n{val}" if val else None, "bal": f"{val}.{k}0"}
            row["n"] = str(val * 10 + k)
            row = {c.name: row[c.name] for c in v.columns}
            if op == "ins" and k not in model:
                model[k] = row
                pending.append(change(v, Op.INSERT, row, tx, seq, k))
            elif op == "upd" and k in model:
                model[k] = row
                pending.append(change(v, Op.UPDATE, row, tx, seq, k))
            elif op == "del" and k in model:
                del model[k]
                pending.append(change(v, Op.DELETE, None, tx, seq, k))
        expected.append(snapshot(model, VERSIONS[version]))
        if tx % split == 0:
            s.write(pending, "src", {"lsn": tx * 100})
            pending = []
    s.write(pending, "src", {"lsn": len(txs) * 100})
    if not s.tables():
        return
    written = {r[0] for r in s.sql("SELECT DISTINCT _txid FROM h_1")}
    for tx, want in enumerate(expected, start=1):
        assert plans_agree(s, AtLsn(tx * 100)) == want, f"as of tx {tx}"
        if tx not in written:
            continue
        prior = s.asof("acct", BeforeTx(tx))
        prior_rows = {r["id"]: r for r in as_dicts(prior)}  # tx's images are as raw
        seen = set()
        for r in s.tx(tx).rows:  # the first before image of each key = the row before the tx
            if r[3] == "truncate" or r[4]["id"] in seen:
                continue
            seen.add(r[4]["id"])
            if r[3] != "insert":
                assert r[5] == prior_rows.get(r[4]["id"]), f"tx {tx} key {r[4]}"
    s.close()


def write_tx(
    s: DuckDBStore, v: TableSchema, tx: int, *changes: tuple[Op, int, list[str | None]]
) -> None:
    out = []
    for seq, (op, k, row) in enumerate(changes, start=1):
        if op is Op.TRUNCATE:
            out.append(Change(v, op, None, None, None, US, tx, tx * 100, seq))
        else:
            after = None if op is Op.DELETE else row
            out.append(Change(v, op, (str(k),), after, None, US + tx, tx, tx * 100, seq))
    s.write(out, "src", {"lsn": tx * 100})


@pytest.fixture(params=[True, False], ids=["vectorized", "rowwise"])
def vectorized(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_truncate_after_checkpoint(tmp_path: Path, vectorized: bool) -> None:
    s, v = DuckDBStore(tmp_path, vectorized=vectorized, checkpoint_every=3), VERSIONS[0]
    write_tx(s, v, 1, (Op.INSERT, 1, ["1", "a", "1.00"]), (Op.INSERT, 2, ["2", "b", "2.00"]))
    write_tx(s, v, 2, (Op.UPDATE, 1, ["1", "a", "3.00"]))  # checkpoint as of position 3
    write_tx(s, v, 3, (Op.TRUNCATE, 0, []), (Op.INSERT, 3, ["3", "c", "4.00"]))
    write_tx(s, v, 4, (Op.UPDATE, 3, ["3", "c", "5.00"]))  # checkpoint as of position 6
    t = s.table("acct")
    assert [cp.pos for cp in t.checkpoints] == [3, 6] and t.truncates == [4]
    assert plans_agree(s, AtLsn(200), {"fold", "checkpoint"}) == [
        {"id": 1, "name": "a", "bal": Decimal("3.00")},
        {"id": 2, "name": "b", "bal": Decimal("2.00")},
    ]
    # after the TRUNCATE, the checkpoint from before it cannot be used; the next one can
    assert plans_agree(s, AtLsn(300), {"fold", "head"}) == [
        {"id": 3, "name": "c", "bal": Decimal("4.00")}
    ]
    assert plans_agree(s, AtLsn(400), {"fold", "checkpoint", "head"}) == [
        {"id": 3, "name": "c", "bal": Decimal("5.00")}
    ]
    # the head cannot go back across the TRUNCATE, and no checkpoint is that old
    assert plans_agree(s, AtLsn(150), {"fold"}) == [
        {"id": 1, "name": "a", "bal": Decimal("1.00")},
        {"id": 2, "name": "b", "bal": Decimal("2.00")},
    ]
    tx4 = list(s.tx(4).rows)
    assert tx4[0][5] == {"id": 3, "name": "c", "bal": Decimal("4.00")}
    s.close()


def plain(v: TableSchema) -> TableSchema:
    """``v`` with no column having a missing value (added columns start NULL)."""
    cols = tuple(Column(c.name, c.type, c.key) for c in v.columns)
    return TableSchema(v.source, v.schema, v.name, cols)


def test_columns_added_and_dropped_after_checkpoint(tmp_path: Path, vectorized: bool) -> None:
    s = DuckDBStore(tmp_path, vectorized=vectorized, checkpoint_every=3)
    a, b, c = (plain(v) for v in VERSIONS)
    write_tx(
        s,
        a,
        1,
        (Op.INSERT, 1, ["1", "x", "1.00"]),
        (Op.INSERT, 2, ["2", "y", "2.00"]),
        (Op.INSERT, 3, ["3", "z", "3.00"]),
    )  # checkpoint as of position 3
    write_tx(s, b, 2, (Op.UPDATE, 1, ["1", "x", "1.00", "7"]))  # n added; 2, 3 keep NULL
    write_tx(s, c, 3, (Op.UPDATE, 2, ["2", "3.00", "8"]))  # name dropped
    assert [cp.pos for cp in s.table("acct").checkpoints] == [3]
    assert plans_agree(s, AtLsn(300), {"fold", "checkpoint", "head"}) == [
        {"id": 1, "bal": Decimal("1.00"), "n": 7},
        {"id": 2, "bal": Decimal("3.00"), "n": 8},
        {"id": 3, "bal": Decimal("3.00"), "n": None},
    ]
    assert plans_agree(s, AtLsn(200), {"fold", "checkpoint", "head"}) == [
        {"id": 1, "name": "x", "bal": Decimal("1.00"), "n": 7},
        {"id": 2, "name": "y", "bal": Decimal("2.00"), "n": None},
        {"id": 3, "name": "z", "bal": Decimal("3.00"), "n": None},
    ]
    assert list(s.tx(3).rows)[0][5] == {"id": 2, "name": "y", "bal": Decimal("2.00"), "n": None}
    write_tx(s, a, 4, (Op.UPDATE, 3, ["3", "w", "4.00"]))  # name is back (a new column)
    assert [cp.pos for cp in s.table("acct").checkpoints] == [3, 6]
    assert plans_agree(s, AtLsn(400), {"fold", "checkpoint", "head"}) == [
        {"id": 1, "name": None, "bal": Decimal("1.00")},
        {"id": 2, "name": None, "bal": Decimal("3.00")},
        {"id": 3, "name": "w", "bal": Decimal("4.00")},
    ]
    s.close()


def test_added_column_with_a_missing_value(tmp_path: Path, vectorized: bool) -> None:
    """Rows that existed when ``n`` was added read its missing value (5) until a version
    writes it, through every plan, ``history`` and ``tx``; a written NULL stays NULL."""
    s = DuckDBStore(tmp_path, vectorized=vectorized, checkpoint_every=3)
    a, b, c = VERSIONS
    write_tx(s, a, 1, *[(Op.INSERT, k, [str(k), "x", f"{k}.00"]) for k in (1, 2, 3, 4)])
    write_tx(
        s, b, 2, (Op.UPDATE, 1, ["1", "x", "1.00", "7"]), (Op.INSERT, 9, ["9", "q", "9.00", None])
    )
    write_tx(
        s, b, 3, (Op.UPDATE, 2, ["2", "y", "2.00", "5"]), (Op.UPDATE, 3, ["3", "x", "3.00", None])
    )
    write_tx(s, c, 4, (Op.UPDATE, 4, ["4", "4.50", "5"]))  # name dropped; n unchanged
    ns = {r["id"]: r["n"] for r in plans_agree(s, AtLsn(400))}
    assert ns == {1: 7, 2: 5, 3: None, 4: 5, 9: None}
    assert {r["id"]: r["n"] for r in plans_agree(s, AtLsn(200))} == {
        1: 7,
        2: 5,
        3: 5,
        4: 5,
        9: None,
    }
    assert "n" not in plans_agree(s, AtLsn(100))[0]
    last = list(s.history("acct", ["4"]).rows)[-1]
    assert last[5] == {"id": 4, "bal": Decimal("4.50"), "n": 5}
    assert list(s.tx(3).rows)[1][5] == {"id": 3, "name": "x", "bal": Decimal("3.00"), "n": 5}
    s.close()
    with DuckDBStore(tmp_path, read_only=True) as ro:  # the value survives a reopen
        assert {r["id"]: r["n"] for r in as_dicts(ro.asof("acct", AtLsn(400)))}[4] == 5


def test_store_without_checkpoint_tables_opens_and_answers(tmp_path: Path) -> None:
    """A store written before checkpoints existed: no ``_rb_checkpoints``, no ``k_<id>``."""
    v = VERSIONS[0]
    s = DuckDBStore(tmp_path, checkpoint_every=1)
    write_tx(s, v, 1, (Op.INSERT, 1, ["1", "a", "1.00"]), (Op.INSERT, 2, ["2", "b", "2.00"]))
    write_tx(s, v, 2, (Op.UPDATE, 1, ["1", "a", "3.00"]), (Op.TRUNCATE, 0, []))
    write_tx(s, v, 3, (Op.INSERT, 2, ["2", "c", "4.00"]))
    s.close()
    con = duckdb.connect(str(tmp_path / FILE_NAME))
    con.execute("DROP TABLE k_1")
    con.execute("DROP TABLE _rb_checkpoints")
    con.close()
    at1 = [
        {"id": 1, "name": "a", "bal": Decimal("1.00")},
        {"id": 2, "name": "b", "bal": Decimal("2.00")},
    ]
    with DuckDBStore(tmp_path, read_only=True) as old:
        assert old.table("acct").checkpoints == [] and old.table("acct").truncates == [4]
        assert plans_agree(old, AtLsn(100)) == at1
        assert plans_agree(old, AtLsn(200)) == []
        assert list(old.tx(2).rows)[0][5] == {"id": 1, "name": "a", "bal": Decimal("1.00")}
    with DuckDBStore(tmp_path, checkpoint_every=2) as s:  # writable: the catalog is completed
        write_tx(s, v, 4, (Op.UPDATE, 2, ["2", "c", "5.00"]))  # 6 changes, none checkpointed
        assert [cp.pos for cp in s.table("acct").checkpoints] == [6]
        assert plans_agree(s, AtLsn(100)) == at1
        assert plans_agree(s, AtLsn(400)) == [{"id": 2, "name": "c", "bal": Decimal("5.00")}]


def test_default_threshold_skips_snapshot_and_small_tables(tmp_path: Path) -> None:
    v = VERSIONS[0]
    with DuckDBStore(tmp_path) as s:
        s.write(
            [
                Change(v, Op.SNAPSHOT, (str(k),), [str(k), "s", "0.00"], None, US, 0, 1, k)
                for k in range(50)
            ],
            "src",
            {},
        )
        for tx in range(1, 20):
            write_tx(s, v, tx, (Op.UPDATE, tx, [str(tx), "u", "1.00"]))
        t = s.table("acct")
        assert t.checkpoints == [] and t.since_checkpoint == 19


def test_reset_table_drops_its_checkpoints(tmp_path: Path) -> None:
    v = VERSIONS[0]
    with DuckDBStore(tmp_path, checkpoint_every=1) as s:
        write_tx(s, v, 1, (Op.INSERT, 1, ["1", "old", "1.00"]))
        write_tx(s, v, 2, (Op.UPDATE, 1, ["1", "old", "2.00"]))
        s.reset_tables("src", ["public.acct"])
        write_tx(s, v, 3, (Op.INSERT, 5, ["5", "new", "9.00"]))  # the same table id again
        assert s.table("acct").id == 1
        assert plans_agree(s, AtLsn(300)) == [{"id": 5, "name": "new", "bal": Decimal("9.00")}]
        assert s.sql("SELECT count(*) FROM k_1 WHERE c1 = 'old'") == [(0,)]


def test_failed_write_takes_no_checkpoint(tmp_path: Path, vectorized: bool) -> None:
    s, v = DuckDBStore(tmp_path, vectorized=vectorized, checkpoint_every=1), VERSIONS[0]
    write_tx(s, v, 1, (Op.INSERT, 1, ["1", "a", "1.00"]))
    with pytest.raises(duckdb.Error):
        write_tx(s, v, 2, (Op.INSERT, 2, ["2", "b", "2.00"]), (Op.INSERT, 3, ["3", "c", "x"]))
    assert [cp.pos for cp in s.table("acct").checkpoints] == [1]
    assert s.sql("SELECT DISTINCT _cp FROM k_1") == [(1,)]
    write_tx(s, v, 2, (Op.INSERT, 2, ["2", "b", "2.00"]))
    assert plans_agree(s, AtLsn(200)) == [
        {"id": 1, "name": "a", "bal": Decimal("1.00")},
        {"id": 2, "name": "b", "bal": Decimal("2.00")},
    ]
    s.close()
