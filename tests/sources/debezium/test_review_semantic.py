"""Review of Debezium's semantic types in bulk and line by line (hostile values)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dbz_events import event, field, lines, wrapped

from rowback.sources.debezium import times
from rowback.sources.debezium.convert import BadValue
from rowback.sources.debezium.ingest import ingest_file
from rowback.store.duckdb.store import DuckDBStore

ARABIC_2020 = "\u0662\u0660\u0662\u0660"  # Python's \d matches these; int() reads 2020


@pytest.mark.parametrize(
    "value",
    [f"{ARABIC_2020}-01-01T00:00:00Z", "2020-01-01T00:00:00.\u0665Z", "2020-01-0\u0661T00:00:00Z"],
)
def test_zoned_timestamp_with_non_ascii_digits(value: str) -> None:
    """The UTC fast path copies the digits verbatim (the offset path reads them as ints and
    prints ASCII): PostgreSQL text no store can cast."""
    try:
        got = times.zoned_timestamp(value)
    except BadValue:
        return
    assert got.isascii(), got


@pytest.mark.parametrize("bulk", [False, True])
def test_non_ascii_digits_are_quarantined_not_fatal(tmp_path: Path, bulk: bool) -> None:
    fields = [field("id", "int64"), field("z", "string", "io.debezium.time.ZonedTimestamp")]
    z = f"{ARABIC_2020}-01-01T00:00:00Z"
    docs = [wrapped(event("c", {"id": 1, "z": z}, None), fields)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(lines(docs))
    with DuckDBStore(tmp_path / "s") as s:
        # quarantined (or stored as 2020): raises duckdb.ConversionException instead
        ingest_file(s, str(path), bulk=bulk)
