"""File ingest end to end into the real DuckDB store: time travel, quarantine, resume."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from dbz_events import event, field, line, lines, wrapped

from rowback.errors import RowbackError
from rowback.sources.debezium.decode import Decoder, Oversized
from rowback.sources.debezium.ingest import ingest_file, ingest_lines, read_lines
from rowback.store.duckdb.store import DuckDBStore
from rowback.when import AtLsn, BeforeTx


def rows(result: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in result.rows)


def write(path: Path, docs: list[Any]) -> Path:
    path.write_bytes(lines(docs))
    return path


ORDERS = [
    event("c", {"id": 1, "name": "a", "amount": 10}, txid=100, lsn=10),
    event("c", {"id": 2, "name": "b", "amount": 5}, txid=100, lsn=11),
    event("u", {"id": 1, "name": "a", "amount": 20}, {"id": 1, "name": "a", "amount": 10},
          txid=101, lsn=20),
    event("d", None, {"id": 2, "name": "b", "amount": 5}, txid=102, lsn=30),
    event("c", {"id": 3, "name": None, "amount": 7}, txid=103, lsn=40),
]  # fmt: skip


def test_file_to_time_travel(tmp_path: Path, store_path: Path) -> None:
    path = write(tmp_path / "orders.jsonl", ORDERS)
    with DuckDBStore(store_path) as store:
        report = ingest_file(store, str(path))
        assert (report.events, report.quarantined, report.gaps, report.errors) == (5, 0, 0, [])
        assert rows(store.asof("public.orders", AtLsn(11))) == [(1, "a", 10), (2, "b", 5)]
        assert rows(store.asof("public.orders", BeforeTx(102))) == [(1, "a", 20), (2, "b", 5)]
        assert rows(store.asof("public.orders", AtLsn(40))) == [(1, "a", 20), (3, None, 7)]
        hist = list(store.history("public.orders", ["1"]).rows)
        assert [(h[3], h[4], h[5]) for h in hist] == [
            ("insert", None, {"id": 1, "name": "a", "amount": 10}),
            ("update", {"id": 1, "name": "a", "amount": 10}, {"id": 1, "name": "a", "amount": 20}),
        ]
        (change,) = store.tx(102).rows
        assert change[3] == "delete" and change[5] == {"id": 2, "name": "b", "amount": 5}
        position = store.position("debezium")
        assert position is not None
        assert position["files"][str(path)]["offset"] == path.stat().st_size
        assert position["files"][str(path)]["line"] == 5


def test_before_image_mismatch_is_a_gap(tmp_path: Path, store_path: Path) -> None:
    wrong = event("u", {"id": 1, "v": 3}, {"id": 1, "v": 99}, txid=2, lsn=2)
    path = write(tmp_path / "g.jsonl", [event("c", {"id": 1, "v": 1}), wrong])
    with DuckDBStore(store_path) as store:
        report = ingest_file(store, str(path))
    assert report.events == 2 and report.gaps == 1
    assert "before image of v differs" in report.gap_examples[0]


def test_schema_wrapped_file_with_semantic_types(tmp_path: Path, store_path: Path) -> None:
    fields = [
        field("id", "int64"),
        field("price", "bytes", "org.apache.kafka.connect.data.Decimal", scale=2,
              connect_decimal_precision=10),
        field("at", "string", "io.debezium.time.ZonedTimestamp"),
        field("day", "int32", "io.debezium.time.Date"),
        field("blob", "bytes"),
        field("tags", "array", items={"type": "int32"}),
    ]  # fmt: skip
    after = {"id": 1, "price": "MDk=", "at": "2024-01-01T12:00:00Z", "day": 19723,
             "blob": "AAH/", "tags": [1, 2]}  # fmt: skip
    path = write(tmp_path / "w.jsonl", [wrapped(event("c", after), fields)])
    with DuckDBStore(store_path) as store:
        assert ingest_file(store, str(path)).events == 1
        (row,) = store.asof("public.orders", AtLsn(1)).rows
    assert str(row[1]) == "123.45" and row[2].isoformat() == "2024-01-01T12:00:00+00:00"
    assert str(row[3]) == "2024-01-01" and row[4] == b"\x00\x01\xff" and row[5] == "{1,2}"


def test_malformed_lines_are_quarantined_and_the_rest_stored(
    tmp_path: Path, store_path: Path
) -> None:
    bad = [
        line(ORDERS[0])[:40],  # truncated JSON
        b'{"op":"c","after":{"id":"\xff"}}',  # invalid UTF-8
        line({**ORDERS[0], "op": 7}),  # wrong type
        line({**ORDERS[0], "op": "z"}),  # unknown op
        line({**ORDERS[0], "source": {"schema": "public", "ts_ms": 1}}),  # no table
        b"[" * 5000 + b"]" * 5000,  # deep nesting
        line(event("u", {"id": 1, "name": "a", "amount": "lots"}, txid=101, lsn=21)),
    ]
    docs: list[Any] = []
    for good, b in zip(ORDERS, bad, strict=False):
        docs += [good, b]
    docs += bad[len(ORDERS) :]
    path = write(tmp_path / "mixed.jsonl", docs)
    with DuckDBStore(store_path) as store:
        report = ingest_file(store, str(path))
        assert (report.events, report.quarantined) == (5, 7)
        assert rows(store.asof("public.orders", AtLsn(40))) == [(1, "a", 20), (3, None, 7)]
        assert store.sql("SELECT count(*) FROM h_1") == [(5,)]
        q = list(store.quarantined("debezium").rows)
    assert [(r[2], r[3]) for r in q] == [(str(path), n) for n in (2, 4, 6, 8, 10, 11, 12)]
    errors = [r[4].split(":")[0] for r in q]
    assert errors == ["json", "json", "op", "op", "source.table", "json", "after.amount"]
    assert report.errors[0].startswith(f"{path}:2: json: not valid JSON")
    assert report.errors[-1] == f"{path}:12: after.amount: expected bigint, got string"
    assert q[0][5] == line(ORDERS[0])[:40].decode()


_HWM = "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
"""A child's peak RSS line: VmHWM, not ru_maxrss (Linux carries the parent's peak across
fork and exec)."""


def test_oversized_line_is_rejected_without_reading_it_whole(
    tmp_path: Path, store_path: Path
) -> None:
    path = tmp_path / "big.jsonl"
    huge = b'{"op":"c","after":{"id":2,"name":"' + b"x" * (50 * 1024 * 1024) + b'"}}'
    with path.open("wb") as f:
        f.write(line(ORDERS[0]) + b"\n")
        f.write(huge + b"\n")
        f.write(line(ORDERS[1]) + b"\n")
    script = (
        "import sys\n"
        "from rowback.store.duckdb.store import DuckDBStore\n"
        "from rowback.sources.debezium.ingest import ingest_file\n"
        "with DuckDBStore(sys.argv[1]) as s: r = ingest_file(s, sys.argv[2])\n"
        + _HWM
        + "print(r.events, r.quarantined, hwm.split()[1])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(store_path), str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    events, quarantined, maxrss_kb = (int(x) for x in out.stdout.split())
    assert (events, quarantined) == (2, 1)
    assert maxrss_kb < 400 * 1024  # the 50 MB line was never held (nor copied) whole
    with DuckDBStore(store_path) as store:
        (q,) = store.quarantined().rows
        assert (q[3], q[4]) == (2, f"line: {len(huge)} bytes is over the 16777216 byte limit")
        assert q[5] == huge[:4096].decode()  # its first bytes are kept
        assert rows(store.asof("public.orders", AtLsn(11))) == [(1, "a", 10), (2, "b", 5)]


def test_read_lines_handles_chunk_boundaries() -> None:
    data = b"a\n\nbbbb\n" + b"c" * 30 + b"\ndd\ne"
    got = list(read_lines(io.BytesIO(data), 0, max_line=10, chunk=3))
    assert [(o, bytes(b), type(b).__name__) for o, b in got if o != 39] == [
        (2, b"a", "bytes"), (3, b"", "bytes"), (8, b"bbbb", "bytes"),
        (42, b"dd", "bytes"), (43, b"e", "Unterminated"),
    ]  # fmt: skip
    (big,) = [b for o, b in got if o == 39]
    assert (
        isinstance(big, Oversized) and big.size == 30 and b"c" * 30 == big + b"c" * (30 - len(big))
    )


def test_rerun_resumes_and_appends(tmp_path: Path, store_path: Path) -> None:
    path = write(tmp_path / "grow.jsonl", ORDERS[:3])
    with DuckDBStore(store_path) as store:
        assert ingest_file(store, str(path)).events == 3
        again = ingest_file(store, str(path))
        assert (again.events, again.resumed_at) == (0, path.stat().st_size)
        with path.open("ab") as f:
            f.write(lines(ORDERS[3:]))
        more = ingest_file(store, str(path))
        assert more.events == 2
        assert store.sql("SELECT count(*) FROM h_1") == [(5,)]
        path.write_bytes(lines([ORDERS[4], *ORDERS]))  # replaced by different content
        with pytest.raises(RowbackError, match="is not the file ingested before"):
            ingest_file(store, str(path))


def test_incomplete_last_line_is_left_for_the_next_run(tmp_path: Path, store_path: Path) -> None:
    path = tmp_path / "tail.jsonl"
    path.write_bytes(lines(ORDERS[:2]) + line(ORDERS[2])[:30])
    with DuckDBStore(store_path) as store:
        first = ingest_file(store, str(path))
        assert (first.events, first.quarantined, first.incomplete_tail) == (2, 0, True)
        path.write_bytes(lines(ORDERS[:3]))  # the writer finished the line
        second = ingest_file(store, str(path))
        assert (second.events, second.quarantined) == (1, 0)
        path.write_bytes(lines(ORDERS[:3]) + line(ORDERS[3]))  # complete, but no newline
        assert ingest_file(store, str(path)).events == 1


def test_stdin_is_read_whole_every_time(tmp_path: Path, store_path: Path) -> None:
    script = (
        "import sys\n"
        "from rowback.store.duckdb.store import DuckDBStore\n"
        "from rowback.sources.debezium.ingest import ingest_file\n"
        "with DuckDBStore(sys.argv[1]) as s: r = ingest_file(s, '-')\n"
        "print(r.events, r.quarantined)\n"
    )
    data = lines([*ORDERS[:2], b"oops"])
    cmd = [sys.executable, "-c", script, str(store_path)]
    out = subprocess.run(cmd, input=data, capture_output=True, check=True, timeout=60)
    assert out.stdout.split() == [b"2", b"1"]
    with DuckDBStore(store_path) as store:
        (q,) = store.quarantined().rows
        assert (q[2], q[3]) == ("<stdin>", 3)


def test_ingest_lines_batches_and_position(store_path: Path) -> None:
    data = lines(ORDERS)
    with DuckDBStore(store_path) as store:
        report = ingest_lines(
            store, read_lines(io.BytesIO(data)), "feed", "mem", Decoder("feed"), 1, batch=2
        )
        assert report.events == 5
        position = store.position("feed")
        assert position is not None
        assert position["files"]["mem"]["offset"] == len(data)
        assert orjson.loads(orjson.dumps(position["decoder"]))["tx"] == [103, 0]
        assert store.sql("SELECT count(*) FROM _rb_tx") == [(5,)]


def test_quarantine_keeps_only_the_start_of_a_long_line(tmp_path: Path, store_path: Path) -> None:
    long = b'{"op":"c","after":{"id":1,"s":"' + b"x" * 10_000 + b'"}}'
    path = write(tmp_path / "long.jsonl", [long, ORDERS[0]])
    assert len(long) > 4096
    with DuckDBStore(store_path) as store:
        report = ingest_lines(
            store, read_lines(path.open("rb"), 0, max_line=1000, chunk=65536), "x", "f",
            Decoder("x", max_line=1000), 1,
        )  # fmt: skip
        assert (report.events, report.quarantined) == (1, 1)
        (q,) = store.quarantined().rows
        assert q[4] == f"line: {len(long)} bytes is over the 1000 byte limit"
        assert q[5] == long[:4096].decode()


def test_a_million_row_transaction_is_ingested_and_judged_in_bounded_memory(
    tmp_path: Path, store_path: Path
) -> None:
    """``rowback ingest`` with detection on (the default) holds the transaction blocks cut
    as a summary, not as changes: a 1M-row transaction stays under 500 MB of peak RSS,
    and the small transaction after it is stored and judged too."""
    path = tmp_path / "big.jsonl"
    with path.open("wb") as f:
        for i in range(1_000_000):
            after = {"id": i, "name": f"name {i}", "amount": i % 1000}
            f.write(line(event("c", after, txid=7, lsn=100)) + b"\n")
        f.write(line(event("u", {"id": 1, "name": "one", "amount": 5}, txid=8, lsn=200)) + b"\n")
    script = (
        "import sys\n"
        "from rowback.cli import main\n"
        "sys.argv = ['rowback', 'ingest', sys.argv[2], '--store', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        + _HWM
        + "print(hwm.split()[1])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(store_path), str(path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ingested 1000001 events, 0 quarantined" in out.stderr
    peak_mb = int(out.stdout.split()[-1]) / 1024
    print(f"ingest of a 1M-row transaction with detection: peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 500
    with DuckDBStore(store_path) as store:
        assert store.sql("SELECT count(*) FROM h_1") == [(1_000_001,)]
        assert rows(store.asof("public.orders", AtLsn(200), ())) [:2] == [
            (0, "name 0", 0), (1, "one", 5)
        ]  # fmt: skip
