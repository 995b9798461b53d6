"""Row selections name rows by their key's text as ``touched_versions`` gives it
(``Physical.text``): :func:`key_text` must turn what the reads answer with
(``Physical.output``) into exactly that text, for every type a key can have."""

from __future__ import annotations

import duckdb
import pytest

from rowback.revert.rows import key_text
from rowback.store.duckdb.types import physical

CASES = [
    ("integer", "42"),
    ("bigint", "-9000000000"),
    ("smallint", "7"),
    ("text", "a'b, c"),
    ("character varying(10)", "x"),
    ("numeric(10,2)", "3.50"),
    ("numeric(10,2)", "-0.05"),
    ("numeric", "1.2300"),
    ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("boolean", "true"),
    ("date", "2026-01-02"),
    ("date", "0044-03-15 BC"),
    ("timestamp without time zone", "2026-01-02 03:04:05.12"),
    ("timestamp without time zone", "2026-01-02 03:04:05"),
    ("timestamp with time zone", "2026-01-02 03:04:05.5+00"),
    ("timestamp with time zone", "2026-07-02 23:59:59+00"),
    ("time without time zone", "03:04:05.25"),
    ("bytea", "\\x01ff"),
]


@pytest.mark.parametrize(("pg_type", "text"), CASES)
def test_key_text_is_the_stored_text(pg_type: str, text: str) -> None:
    p = physical(pg_type)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'Europe/Paris'")  # output is in the session's zone
        con.execute("CREATE TABLE s AS SELECT CAST(? AS VARCHAR) AS x", [text])
        con.execute(f"CREATE TABLE t AS SELECT {p.cast('x')} AS c FROM s")
        stored, shown = con.execute(f"SELECT {p.text('c')}, {p.output('c')} FROM t").fetchone()
    finally:
        con.close()
    assert key_text(shown) == stored
