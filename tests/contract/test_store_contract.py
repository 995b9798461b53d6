"""The store contract: every backend in the registry must pass these, filtered by capability."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rowback.errors import BadParameter, RowbackError
from rowback.model import Change, Column, Op, Quarantined, TableSchema
from rowback.render import to_json_value
from rowback.store import registry
from rowback.store.base import Image, Reader, Store
from rowback.store.duckdb import DuckDBStore
from rowback.when import AtLsn, BeforeTx

BACKENDS: dict[str, Callable[[Path], Store]] = {
    **registry.BACKENDS,
    # variants of the embedded backend: each write path and the checkpoint planner
    "duckdb-rowwise": lambda path: DuckDBStore(path, vectorized=False),
    # checkpoints after nearly every write, so queries start from them
    "duckdb-checkpoints": lambda path: DuckDBStore(path, checkpoint_every=1),
    "duckdb-rowwise-checkpoints": lambda path: DuckDBStore(
        path, vectorized=False, checkpoint_every=3
    ),
}

T1 = TableSchema(
    "src",
    "public",
    "acct",
    (Column("id", "integer", True), Column("name", "text"), Column("bal", "numeric(12,2)")),
)
T2 = TableSchema(
    "src",
    "shop",
    "item",
    (Column("a", "integer", True), Column("b", "text", True), Column("qty", "bigint")),
)
US = 1_700_000_000_000_000


@pytest.fixture(params=sorted(BACKENDS))
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Store]]:
    opened: list[Store] = []
    paths = [tmp_path / "store-0"]

    def make(reopen: bool = False) -> Store:
        """A fresh store, or (``reopen``) the last one opened again."""
        for s in opened:
            s.close()
        opened.clear()
        if not reopen:
            paths.append(tmp_path / f"store-{len(paths)}")
        s = BACKENDS[request.param](paths[-1])
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def ch(
    t: TableSchema, op: Op, row: list[str | None] | None, tx: int, seq: int, **kw: Any
) -> Change:
    key = kw.pop("key", None)
    if key is None and row is not None:
        key = t.key_of(row)
    return Change(
        t,
        op,
        key,
        row if op not in (Op.DELETE, Op.TRUNCATE) else None,
        kw.pop("before", None),
        US + tx * 1000,
        tx,
        kw.pop("lsn", tx * 100),
        seq,
        **kw,
    )


def rows(store: Reader, table: str, point: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in store.asof(table, point).rows]


def test_asof_history_tx_changes(open_store: Callable[..., Store]) -> None:
    s = open_store()
    s.write(
        [
            ch(T1, Op.INSERT, ["1", "ann", "10.00"], 1, 1),
            ch(T1, Op.INSERT, ["2", "bob", "20.50"], 1, 2),
        ],
        "src",
        {"lsn": 100},
    )
    s.write(
        [
            ch(T1, Op.UPDATE, ["1", "ann", "11.00"], 2, 1),
            ch(T1, Op.DELETE, None, 2, 2, key=("2",)),
        ],
        "src",
        {"lsn": 200},
    )
    assert rows(s, "public.acct", AtLsn(100)) == [
        (1, "ann", Decimal("10.00")),
        (2, "bob", Decimal("20.50")),
    ]
    assert rows(s, "acct", AtLsn(200)) == [(1, "ann", Decimal("11.00"))]
    assert rows(s, "acct", BeforeTx(2)) == rows(s, "acct", AtLsn(100))
    assert rows(s, "acct", AtLsn(99)) == []
    hist = list(s.history("public.acct", ["1"]).rows)
    assert [h[3] for h in hist] == ["insert", "update"]
    assert hist[1][4] == {"id": 1, "name": "ann", "bal": Decimal("10.00")}
    assert hist[1][5] == {"id": 1, "name": "ann", "bal": Decimal("11.00")}
    assert hist[1][6] == ["bal"]
    tx = list(s.tx(2).rows)
    assert [(r[3], r[4]) for r in tx] == [("update", {"id": 1}), ("delete", {"id": 2})]
    assert tx[1][5] == {"id": 2, "name": "bob", "bal": Decimal("20.50")} and tx[1][6] is None
    log = list(s.changes(since=AtLsn(100)).rows)
    assert [(r[4], r[6]) for r in log] == [("update", {"bal": Decimal("11.00")}), ("delete", {})]
    assert s.position("src") == {"lsn": 200}
    with pytest.raises(RowbackError, match="not in the store"):
        s.tx(99)


def test_differential_update_stores_only_changed(open_store: Callable[..., Store]) -> None:
    s = open_store()
    if not s.capabilities.differential:
        pytest.skip("backend stores full images")
    s.write([ch(T1, Op.INSERT, ["1", "x" * 500, "1.00"], 1, 1)], "src", {})
    s.write([ch(T1, Op.UPDATE, ["1", "x" * 500, "2.00"], 2, 1)], "src", {})
    assert [h[6] for h in s.history("acct", ["1"]).rows] == [[], ["bal"]]
    assert rows(s, "acct", AtLsn(200)) == [(1, "x" * 500, Decimal("2.00"))]
    if isinstance(s, DuckDBStore):  # the unchanged 500-byte name is not stored again
        assert s.sql("SELECT count(c1) FROM h_1") == [(1,)]


def test_null_written_differs_from_unchanged(open_store: Callable[..., Store]) -> None:
    s = open_store()
    s.write([ch(T1, Op.INSERT, ["1", "a", "1.00"], 1, 1)], "src", {})
    s.write([ch(T1, Op.UPDATE, ["1", None, "1.00"], 2, 1)], "src", {})
    s.write([ch(T1, Op.UPDATE, ["1", None, "3.00"], 3, 1)], "src", {})
    assert rows(s, "acct", AtLsn(300)) == [(1, None, Decimal("3.00"))]
    assert rows(s, "acct", AtLsn(100)) == [(1, "a", Decimal("1.00"))]


def test_toast_unchanged_filled_from_history(open_store: Callable[..., Store]) -> None:
    s = open_store()
    s.write([ch(T1, Op.INSERT, ["1", "big" * 1000, "1.00"], 1, 1)], "src", {})
    s.write([ch(T1, Op.UPDATE, ["1", None, "2.00"], 2, 1, unchanged=frozenset({1}))], "src", {})
    assert rows(s, "acct", AtLsn(200)) == [(1, "big" * 1000, Decimal("2.00"))]
    stats = s.write(
        [ch(T1, Op.UPDATE, ["7", None, "2.00"], 3, 1, unchanged=frozenset({1}))], "src", {}
    )
    assert stats.gaps == 1  # an unchanged value for a row we never saw is a gap, loudly


def test_before_image_mismatch_is_a_gap(open_store: Callable[..., Store]) -> None:
    s = open_store()
    s.write([ch(T1, Op.INSERT, ["1", "a", "1.00"], 1, 1)], "src", {})
    good = s.write(
        [ch(T1, Op.UPDATE, ["1", "b", "1.00"], 2, 1, before=["1", "a", "1.00"])], "src", {}
    )
    bad = s.write(
        [ch(T1, Op.UPDATE, ["1", "c", "1.00"], 3, 1, before=["1", "zzz", "1.00"])], "src", {}
    )
    assert (good.gaps, bad.gaps) == (0, 1)
    assert "acct" in bad.gap_examples[0]


def test_schema_versions_and_truncate(open_store: Callable[..., Store]) -> None:
    s = open_store()
    s.write([ch(T1, Op.INSERT, ["1", "a", "1.00"], 1, 1)], "src", {})
    v2 = TableSchema(
        "src", "public", "acct", (T1.columns[0], T1.columns[1], Column("n", "integer"))
    )
    s.write(
        [ch(v2, Op.UPDATE, ["1", "a", "5"], 2, 1), ch(v2, Op.INSERT, ["2", "b", "6"], 2, 2)],
        "src",
        {},
    )
    s.write([Change(v2, Op.TRUNCATE, None, None, None, US, 3, 300, 1)], "src", {})
    s.write([ch(v2, Op.INSERT, ["3", "c", "7"], 4, 1)], "src", {})
    first = s.asof("acct", AtLsn(100))
    assert first.columns == ["id", "name", "bal"]
    second = s.asof("acct", AtLsn(200))
    assert second.columns == ["id", "name", "n"]
    assert [tuple(r) for r in second.rows] == [(1, "a", 5), (2, "b", 6)]
    assert rows(s, "acct", AtLsn(300)) == []
    assert rows(s, "acct", AtLsn(400)) == [(3, "c", 7)]
    ops = [h[3] for h in s.history("acct", ["1"]).rows]
    assert ops == ["insert", "update", "truncate"]


def test_failed_write_changes_nothing(open_store: Callable[..., Store]) -> None:
    s = open_store()
    s.write([ch(T1, Op.INSERT, ["1", "a", "1.00"], 1, 1)], "src", {"lsn": 100})
    with pytest.raises(Exception):  # noqa: B017 - the backend's own error type
        s.write(
            [
                ch(T1, Op.INSERT, ["2", "b", "2.00"], 2, 1),
                ch(T1, Op.INSERT, ["3", "c", "nope"], 2, 2),
            ],
            "src",
            {"lsn": 200},
        )
    assert s.position("src") == {"lsn": 100}
    assert rows(s, "acct", AtLsn(10**6)) == [(1, "a", Decimal("1.00"))]
    s.write([ch(T1, Op.INSERT, ["2", "b", "2.00"], 2, 1)], "src", {"lsn": 200})
    assert len(rows(s, "acct", AtLsn(10**6))) == 2


def test_reopen_keeps_everything(open_store: Callable[..., Store]) -> None:
    s = open_store()
    s.write([ch(T2, Op.INSERT, ["1", "x", "5"], 1, 1)], "src", {"lsn": 1})
    s.quarantine([Quarantined("src", "f.json", 3, "bad json", b"{oops\xff")])
    s = open_store(True)
    assert rows(s, "shop.item", AtLsn(100)) == [(1, "x", 5)]
    assert s.position("src") == {"lsn": 1}
    q = list(s.quarantined().rows)
    assert q[0][1:5] == ("src", "f.json", 3, "bad json") and "oops" in q[0][5]
    s.write([ch(T2, Op.UPDATE, ["1", "x", "6"], 2, 1)], "src", {"lsn": 2})
    assert rows(s, "item", AtLsn(200)) == [(1, "x", 6)]


def test_unknown_and_ambiguous_tables(open_store: Callable[..., Store]) -> None:
    s = open_store()
    other = TableSchema("src", "other", "acct", T1.columns)
    s.write(
        [ch(T1, Op.INSERT, ["1", "a", "1"], 1, 1), ch(other, Op.INSERT, ["1", "a", "1"], 1, 2)],
        "src",
        {},
    )
    with pytest.raises(RowbackError, match="ambiguous"):
        s.asof("acct", AtLsn(100))
    with pytest.raises(RowbackError, match="no captured table"):
        s.asof("public.nope", AtLsn(100))
    assert len(rows(s, "other.acct", AtLsn(100))) == 1


OPS = st.lists(
    st.lists(
        st.tuples(st.sampled_from(["ins", "upd", "del"]), st.integers(0, 5), st.integers(0, 3)),
        min_size=1,
        max_size=6,
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(txs=OPS, split=st.integers(1, 4))
def test_property_asof_equals_model_at_every_commit(
    open_store: Callable[..., Store], txs: list[list[tuple[str, int, int]]], split: int
) -> None:
    s = open_store()
    model: dict[int, tuple[str | None, str]] = {}
    expected: list[list[tuple[Any, ...]]] = []
    pending: list[Change] = []
    all_changes: list[Change] = []
    for t, ops in enumerate(txs, start=1):
        seq = 0
        for op, k, v in ops:
            seq += 1
            name = None if v == 0 else f"n{v}"
            bal = f"{v}.{k}0"
            if op == "ins" and k not in model:
                model[k] = (name, bal)
                pending.append(ch(T1, Op.INSERT, [str(k), name, bal], t, seq))
            elif op == "upd" and k in model:
                model[k] = (name, model[k][1])
                pending.append(ch(T1, Op.UPDATE, [str(k), name, model[k][1]], t, seq))
            elif op == "del" and k in model:
                del model[k]
                pending.append(ch(T1, Op.DELETE, None, t, seq, key=(str(k),)))
        expected.append(sorted((k, n, Decimal(b)) for k, (n, b) in model.items()))
        all_changes.extend(c for c in pending if c.txid == t)
        if t % split == 0:
            s.write(pending, "src", {"lsn": t * 100})
            pending = []
    s.write(pending, "src", {"lsn": len(txs) * 100})
    written = all_changes

    def seen_in(t: int, key: int) -> set[int]:
        """Keys changed more than once in tx t: only their first before image is checked."""
        ids = [int(c.key[0]) for c in written if c.txid == t and c.key]
        return {key} if ids.count(key) > 1 else set()

    for t, want in enumerate(expected, start=1):
        got = rows(s, "acct", AtLsn(t * 100)) if s.tables() else []
        assert got == want, f"as of tx {t}"
        if not s.tables() or not any(c.txid == t for c in written):
            continue
        prior = {r[0]: r for r in (expected[t - 2] if t > 1 else [])}
        for change in s.tx(t).rows:  # tx's first before image = the row as of the tx before
            key = change[4]["id"]
            if change[5] is not None and key in prior and key not in seen_in(t, key):
                k, n, b = prior[key]
                assert change[5] == {"id": k, "name": n, "bal": b}, f"tx {t} key {key}"


def test_tx_with_many_keys_has_before_images(open_store: Callable[..., Store]) -> None:
    s = open_store()
    s.write([ch(T1, Op.INSERT, [str(i), f"n{i}", "1.00"], 1, i) for i in range(200)], "src", {})
    s.write([ch(T1, Op.UPDATE, [str(i), f"n{i}", "0.00"], 2, i) for i in range(150)], "src", {})
    got = list(s.tx(2).rows)
    assert len(got) == 150
    assert all(r[5]["bal"] == Decimal("1.00") and r[6]["bal"] == Decimal("0.00") for r in got)
    assert {r[4]["id"] for r in got} == set(range(150))


def test_a_snapshot_sees_one_committed_state_and_never_holds_the_writer(
    open_store: Callable[..., Store],
) -> None:
    """Reads in the capturing process: a snapshot taken before a write does not see it,
    the write commits while the snapshot stays open, a new snapshot sees it."""
    import threading

    s = open_store()
    s.write([ch(T1, Op.INSERT, ["1", "a", "1.00"], tx=1, seq=0)], "src", {"lsn": 100})
    old = s.snapshot()
    try:
        assert rows(old.reader, "acct", AtLsn(2**62)) == [(1, "a", Decimal("1.00"))]
        done = threading.Event()

        def write() -> None:
            s.write([ch(T1, Op.INSERT, ["2", "b", "2.00"], tx=2, seq=0)], "src", {"lsn": 200})
            done.set()

        t = threading.Thread(target=write)
        t.start()
        assert done.wait(30), "the writer waited for an open snapshot"
        t.join()
        assert rows(old.reader, "acct", AtLsn(2**62)) == [(1, "a", Decimal("1.00"))]
        assert len(list(old.reader.changes("acct").rows)) == 1
    finally:
        old.close()
    new = s.snapshot()
    try:
        assert [r[0] for r in rows(new.reader, "acct", AtLsn(2**62))] == [1, 2]
        assert len(list(new.reader.changes("acct").rows)) == 2
        (src,) = new.reader.sources()
        assert src.position == {"lsn": 200} and src.written_at is not None
    finally:
        new.close()


def test_a_snapshot_past_its_time_limit_is_interrupted(open_store: Callable[..., Store]) -> None:
    s = open_store()
    many = [ch(T1, Op.INSERT, [str(i), "x", "1.00"], tx=1, seq=i) for i in range(1, 3000)]
    s.write(many, "src", {"lsn": 100})
    snap = s.snapshot(limit=0.3)
    try:
        with pytest.raises(Exception) as e:  # noqa: B017 - the backend's own interrupt error
            sql = getattr(snap.reader, "sql")  # noqa: B009 - the embedded backend's escape hatch
            sql(
                "SELECT count(*) FROM range(100000000) a, range(1000) b "
                "WHERE (a.range * b.range) % 7 = 3"
            )
        assert snap.expired, e.value
    finally:
        snap.close()


def test_transaction_ids_are_scoped_to_their_source(open_store: Callable[..., Store]) -> None:
    """Two sources may both have a transaction 7 (every Debezium snapshot says 0): tx
    and tx: points ask which, and answer for the one named."""
    from rowback.errors import BadParameter, NotFound

    other = TableSchema("other", "public", "acct", T1.columns)
    s = open_store()
    s.write([ch(T1, Op.INSERT, ["1", "a", "1.00"], tx=7, seq=0)], "src", {"lsn": 700})
    s.write([ch(other, Op.INSERT, ["1", "b", "2.00"], tx=7, seq=0)], "other", {"lsn": 700})
    with pytest.raises(BadParameter, match="more than one source"):
        s.tx(7)
    (row,) = s.tx(7, "other").rows
    assert row[4] == {"id": 1}
    with pytest.raises(NotFound):
        s.tx(7, "nosuch")
    with pytest.raises(BadParameter, match="tx:SOURCE:7"):
        s.asof("src:public.acct", BeforeTx(7))
    assert rows(s, "src:public.acct", BeforeTx(7, "src")) == []
    assert rows(s, "other:public.acct", BeforeTx(7, "other")) == []


def test_asof_before_a_snapshot_is_refused_not_empty(open_store: Callable[..., Store]) -> None:
    """History taken by snapshot says nothing of what was there before it: asking is an
    error that names the snapshot, never "no rows" (a revert would act on that). A table
    created under capture (first seen by an insert) is empty before its creation."""
    s = open_store()
    s.write([ch(T2, Op.INSERT, ["1", "x", "5"], 1, 1)], "src", {"lsn": 100})
    s.write(
        [
            ch(T1, Op.SNAPSHOT, ["1", "ann", "10.00"], 0, 1, lsn=500),
            ch(T1, Op.SNAPSHOT, ["2", "bob", "20.50"], 0, 2, lsn=500),
        ],
        "src",
        {"lsn": 500},
    )
    s.write([ch(T2, Op.UPDATE, ["1", "x", "6"], 7, 1)], "src", {"lsn": 700})
    assert len(rows(s, "acct", AtLsn(700))) == 2
    with pytest.raises(BadParameter, match=r"public\.acct has no history before its snapshot"):
        rows(s, "acct", AtLsn(100))
    assert rows(s, "item", AtLsn(99)) == []  # before its first insert: it did not exist
    assert rows(s, "item", AtLsn(100)) == [(1, "x", 5)]


TYPED = TableSchema(
    "src",
    "public",
    "typed",
    (
        Column("id", "integer", True),
        Column("price", "numeric(12,2)"),
        Column("blob", "bytea"),
        Column("at", "timestamp with time zone"),
        Column("tags", "integer[]"),
        Column("doc", "jsonb"),
    ),
)
# the same table after ``ADD COLUMN fee numeric(12,2) DEFAULT 0.50``: older rows hold it
TYPED_FEE = TableSchema(
    TYPED.source,
    TYPED.schema,
    TYPED.name,
    (*TYPED.columns, Column("fee", "numeric(12,2)", missing="0.50")),
)
TYPED_HINTS = {"price": "numeric", "blob": "bytea", "tags": "pgarray:int", "doc": "json"}


def test_images_are_raw_values_with_their_hints(open_store: Callable[..., Store]) -> None:
    """history, tx and changes return images as the store holds them (a Decimal, bytes, a
    datetime, an array's PostgreSQL text), each with its column's hint: a guarded revert
    builds exact SQL from them, and only the CLI and the API render them as JSON."""
    s = open_store()
    row = ["1", "9.90", "\\x0102ff", "2024-05-01 10:00:00.123456+00", "{1,2,NULL}", '{"a": 1}']
    s.write([ch(TYPED, Op.INSERT, row, 1, 1)], "src", {"lsn": 100})
    s.write([ch(TYPED_FEE, Op.UPDATE, ["1", "11.00", *row[2:], "0.50"], 2, 1)], "src", {})
    at = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    raw = {"id": 1, "price": Decimal("9.90"), "blob": b"\x01\x02\xff", "at": at}
    raw |= {"tags": "{1,2,NULL}", "doc": '{"a": 1}'}

    def assert_raw(image: object, want: dict[str, object], hints: dict[str, str]) -> None:
        assert isinstance(image, Image) and image == want and image.types == hints
        for name, value in want.items():  # Decimal("9.90") == 9.9: the types must match too
            assert type(image[name]) is type(value), name

    (insert, update) = s.history("typed", ["1"]).rows
    assert insert[4] is None
    assert_raw(insert[5], raw, TYPED_HINTS)
    assert_raw(update[4], raw, TYPED_HINTS)
    after = {**raw, "price": Decimal("11.00"), "fee": Decimal("0.50")}  # fee: the missing value
    assert_raw(update[5], after, {**TYPED_HINTS, "fee": "numeric"})
    ((_, _, _, op, key, before, tx_after, _, reversion),) = s.tx(2).rows
    assert op == "update" and reversion is None
    assert_raw(key, {"id": 1}, {})
    assert_raw(before, raw, TYPED_HINTS)
    assert_raw(tx_after, after, {**TYPED_HINTS, "fee": "numeric"})
    log = [(r[5], r[6]) for r in s.changes("typed").rows]
    assert_raw(log[0][0], {"id": 1}, {})
    assert_raw(log[0][1], raw, TYPED_HINTS)
    assert_raw(log[1][1], {"price": Decimal("11.00")}, {"price": "numeric"})
    # and the edge renders them as before
    assert to_json_value(update[5], "row") == {
        "id": 1,
        "price": "11.00",
        "blob": "AQL/",
        "at": "2024-05-01T10:00:00.123456+00:00",
        "tags": [1, 2, None],
        "doc": {"a": 1},
        "fee": "0.50",
    }


def test_reverting_transactions_are_labelled_across_writes(
    open_store: Callable[..., Store],
) -> None:
    s = open_store()
    s.write([ch(T1, Op.INSERT, ["1", "ann", "10.00"], 1, 1)], "src", {"lsn": 100})
    # a revert split across two writes: each labels its part
    s.write(
        [ch(T1, Op.UPDATE, ["1", "ann", "0.00"], 2, 1)], "src", {"lsn": 150}, reverting={2: "7"}
    )
    s.write(
        [ch(T1, Op.INSERT, ["2", "bob", "1.00"], 2, 2), ch(T1, Op.INSERT, ["3", "cy", None], 3, 1)],
        "src",
        {"lsn": 300},
        reverting={2: "7"},
    )
    assert s.reversion_txids() == {2: "7"} and s.reversion_txids("other") == {}
    log = s.changes()
    at = log.columns.index("reversion")
    assert [(r[1], r[at]) for r in log.rows] == [(1, None), (2, "7"), (2, "7"), (3, None)]
    tx = s.tx(2)
    assert {r[tx.columns.index("reversion")] for r in tx.rows} == {"7"}
    hist = s.history("public.acct", ["1"])
    assert [r[hist.columns.index("reversion")] for r in hist.rows] == [None, "7"]
    s = open_store(reopen=True)
    assert s.reversion_txids("src") == {2: "7"}


def test_a_store_from_before_labels_opens_read_only_and_upgrades_for_writing(
    tmp_path: Path,
) -> None:
    s = DuckDBStore(tmp_path)
    s.write([ch(T1, Op.INSERT, ["1", "ann", "10.00"], 1, 1)], "src", {"lsn": 100})
    s.sql("ALTER TABLE _rb_tx DROP COLUMN reversion")
    s.close()
    with DuckDBStore(tmp_path, read_only=True) as old:
        assert old.reversion_txids() == {}
        assert [r[-1] for r in old.changes().rows] == [None]
    with DuckDBStore(tmp_path) as s:
        s.write(
            [ch(T1, Op.UPDATE, ["1", "ann", "0"], 2, 1)], "src", {"lsn": 200}, reverting={2: "1"}
        )
        assert s.reversion_txids() == {2: "1"}
