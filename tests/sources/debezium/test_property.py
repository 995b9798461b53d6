"""Property: any sequence of Debezium changes, ingested in any batch sizes, time-travels
exactly like a plain Python model of the table."""

from __future__ import annotations

import io
import tempfile
from typing import Any

from dbz_events import event, lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rowback.sources.debezium.decode import Decoder
from rowback.sources.debezium.ingest import ingest_lines, read_lines
from rowback.store.duckdb.store import DuckDBStore
from rowback.when import AtLsn, BeforeTx

Row = dict[str, Any]
change = st.tuples(
    st.sampled_from(["upsert"] * 6 + ["delete"] * 3 + ["truncate"]),
    st.integers(1, 4),
    st.one_of(st.none(), st.integers(-(2**62), 2**62)),
    st.one_of(st.none(), st.text(max_size=6)),
)
transactions = st.lists(st.lists(change, min_size=1, max_size=4), min_size=1, max_size=10)


def to_events(txs: list[list[tuple[str, int, Any, Any]]]) -> tuple[list[Any], list[Any]]:
    """Debezium events for ``txs`` and, per transaction that produced events,
    (txid, last lsn, table after it) from the model."""
    table: dict[int, Row] = {}
    events: list[Any] = []
    checkpoints: list[Any] = []
    lsn = 0
    for n, tx in enumerate(txs):
        txid, emitted = 1000 + n, False
        for op, key, v, s in tx:
            old = table.get(key)
            lsn += 1
            src = {"txid": txid, "lsn": lsn, "ts_ms": 1_700_000_000_000 + lsn}
            if op == "upsert":
                new = {"id": key, "v": v, "s": s}
                events.append(event("c" if old is None else "u", new, old, **src))
                table[key] = new
            elif op == "delete" and old is not None:
                events.append(event("d", None, old, **src))
                del table[key]
            elif op == "truncate" and events:
                events.append(event("t", None, None, **src))
                table.clear()
            else:
                continue
            emitted = True
        if emitted:
            checkpoints.append((txid, lsn, {k: dict(r) for k, r in table.items()}))
    return events, checkpoints


def state(result: Any) -> dict[int, Row]:
    cols = result.columns
    return {r[cols.index("id")]: dict(zip(cols, r, strict=True)) for r in result.rows}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transactions, st.integers(1, 7))
def test_asof_matches_a_model(txs: list[list[tuple[str, int, Any, Any]]], batch: int) -> None:
    events, checkpoints = to_events(txs)
    if not events:
        return
    data = lines(events)
    with tempfile.TemporaryDirectory() as tmp, DuckDBStore(tmp) as store:
        report = ingest_lines(
            store, read_lines(io.BytesIO(data)), "p", "mem", Decoder("p"), 1, batch=batch
        )
        assert (report.events, report.quarantined, report.gaps) == (len(events), 0, 0)
        before: dict[int, Row] = {}
        for txid, lsn, after in checkpoints:
            assert state(store.asof("public.orders", BeforeTx(txid))) == before
            assert state(store.asof("public.orders", AtLsn(lsn))) == after
            before = after
