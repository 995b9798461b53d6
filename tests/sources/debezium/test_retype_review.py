"""Review: a Debezium stream whose Connect schema changes a field's type mid-file."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
from dbz_events import decimal_b64, event, field, lines, wrapped

from rowback.sources.debezium.decode import Decoder
from rowback.sources.debezium.ingest import ingest_file, ingest_lines, read_lines
from rowback.store.duckdb import queries
from rowback.store.duckdb.store import DuckDBStore
from rowback.when import AtLsn

DEC = "org.apache.kafka.connect.data.Decimal"
V1 = [
    field("id", "int32"),
    field("n", "int32"),
    field("p", "bytes", DEC, scale=2, connect_decimal_precision=10),
]
V2 = [
    field("id", "int64"),
    field("n", "int64"),
    field("p", "bytes", DEC, scale=3, connect_decimal_precision=12),
]


def _docs() -> list[object]:
    docs: list[object] = []
    for i in range(1, 4):  # p = i + 0.5
        after = {"id": i, "n": i, "p": decimal_b64(i * 100 + 50)}
        docs.append(wrapped(event("c", after, txid=10 + i, lsn=10 * i), V1))
    # the column types change (ALTER ... TYPE bigint, numeric(12,3)); row 1 changes after
    before = {"id": 1, "n": 1, "p": decimal_b64(1500)}
    after = {"id": 1, "n": 2**40, "p": decimal_b64(1500)}
    docs.append(wrapped(event("u", after, before, txid=20, lsn=200), V2))
    docs.append(
        wrapped(event("c", {"id": 4, "n": 4, "p": decimal_b64(4125)}, txid=21, lsn=210), V2)
    )
    before = {"id": 2, "n": 2, "p": decimal_b64(2500)}  # untouched since the retype
    docs.append(
        wrapped(
            event("u", {"id": 2, "n": 22, "p": decimal_b64(2500)}, before, txid=22, lsn=220), V2
        )
    )
    return docs


WANT = {
    30: [(1, 1, Decimal("1.50")), (2, 2, Decimal("2.50")), (3, 3, Decimal("3.50"))],
    200: [(1, 2**40, Decimal("1.500")), (2, 2, Decimal("2.500")), (3, 3, Decimal("3.500"))],
    220: [
        (1, 2**40, Decimal("1.500")),
        (2, 22, Decimal("2.500")),
        (3, 3, Decimal("3.500")),
        (4, 4, Decimal("4.125")),
    ],
}


def _check(store: DuckDBStore) -> None:
    t = store.table("public.orders")
    for lsn, want in WANT.items():
        for plan in ("fold", "checkpoint", "head"):
            try:
                res = queries.asof(store._con, t, AtLsn(lsn), plan=plan)
            except Exception:
                continue
            got = [tuple(r) for r in res.rows]
            assert got == want, (lsn, plan)
            assert [str(r[2]) for r in got] == [str(w[2]) for w in want], (lsn, plan)
    assert [h[3] for h in store.history("public.orders", ["3"]).rows] == ["insert", "snapshot"]
    assert [h[3] for h in store.history("public.orders", ["2"]).rows] == [
        "insert",
        "snapshot",
        "update",
    ]


@pytest.mark.parametrize("how", ["file", "lines1", "lines100"])
def test_debezium_field_types_change_mid_file(tmp_path: Path, store_path: Path, how: str) -> None:
    data = lines(_docs())
    with DuckDBStore(store_path, checkpoint_every=1) as store:
        if how == "file":
            path = tmp_path / "f.jsonl"
            path.write_bytes(data)
            report = ingest_file(store, str(path))
        else:
            batch = 1 if how == "lines1" else 100
            report = ingest_lines(
                store,
                read_lines(io.BytesIO(data)),
                "debezium",
                "mem",
                Decoder("debezium"),
                1,
                batch=batch,
            )
        assert (report.events, report.quarantined, report.gaps) == (6, 0, 0), report.gap_examples
        _check(store)
