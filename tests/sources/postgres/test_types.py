"""Every column type comes back from ``asof`` exactly as PostgreSQL prints it, whether the
row arrived through the initial snapshot, a small streamed change, an UPDATE, or a large
transaction that PostgreSQL streamed in chunks; TOASTed values are never lost."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest
from pgcap import (
    assert_same,
    capture_and_check,
    capture_once,
    execute,
    insert_lsn,
    opened,
    pg_connect,
    pg_state,
    scalar,
)

from rowback.when import AtLsn

COLUMNS = """
    i2 smallint, i4 integer, i8 bigint,
    n numeric, n12 numeric(12,2), r real, d double precision,
    t text, vc varchar(10), ch char(5), b boolean,
    ts timestamp, tstz timestamptz, dt date, tm time,
    u uuid, j json, jb jsonb, by bytea,
    ia integer[], ta text[], iv interval
"""

NAMES = re.findall(r"(?:^|,)\s*(\w+) ", COLUMNS.strip())

# One SQL literal per column of NAMES, per row: edge cases for every type.
VALUES = [
    (
        "1, 2, 3",
        "'12345678901234567890123456789012345678901234.000000000000000000001', 1.5",
        "0.1, 0.1",
        "'plain', 'abc', 'ab', true",
        "'2020-02-29 13:14:15.5', '2020-06-01 12:00:00.123456-07:30', "
        "'2020-02-29', '23:59:59.999999'",
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
        """'{"a": [1, 2.50, "x"],  "b" : null}', '{"b": null, "a": [1, 2.50, "x"]}'""",
        r"'\x000102ff00'",
        """'{1,NULL,3}', '{"a\\"b",NULL,"","NULL","x,y","sp ace","{}"}'""",
        "'1 year 2 mons -3 days 04:05:06.789'",
    ),
    (
        "-32768, -2147483648, 9223372036854775807",
        "'-0.000000000000000000000000000000000000000000001', '-9999999999.99'",
        "'NaN', 'Infinity'",
        "'', '', '', false",
        "'1999-12-31 23:59:59.999999', '1970-01-01 00:00:00+14', '0001-01-01', '00:00:00'",
        "'00000000-0000-0000-0000-000000000000'",
        """'[]', '{}'""",
        r"'\x'",
        "'{}', '{}'",
        "'-1 days -00:00:01'",
    ),
    (
        "32767, 2147483647, -9223372036854775808",
        "'NaN', 0",
        "'-Infinity', '-0'",
        "E'h\\u00e9llo \\u2603 \\U0001D11E\\t\\n\"q\"', 'ünïcødé☃☃', 'é☃', NULL",
        "'0099-01-01 00:00:00', '2262-04-11 23:47:16.854775+05:45', "
        "'9999-12-31', '12:00:00.000001'",
        "'ffffffff-ffff-ffff-ffff-ffffffffffff'",
        """'"text"', 'null'""",
        r"'\x00'",
        "'{{1,2},{3,NULL}}', '{\"\",NULL}'",
        "'0 seconds'",
    ),
    (
        "0, 0, 0",
        "'Infinity', '0.01'",
        "3.4028235e38, 1e-300",
        "' leading and trailing  ', 'a b', 'a', true",
        "'2000-01-01 00:00:00', '2000-01-01 00:00:00-00', '2000-01-01', '24:00:00'",
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'",
        """'123.4500', '123.4500'""",
        r"'\xdeadbeef'",
        "'{-1}', '{\"with \\\\ backslash\"}'",
        "'178000000 years'",
    ),
]

ALL_NULL = ", ".join(["NULL"] * len(NAMES))


def _rows(first_id: int) -> list[str]:
    rows = [f"({first_id + i}, {', '.join(v)})" for i, v in enumerate(VALUES)]
    return [*rows, f"({first_id + len(VALUES)}, {ALL_NULL})"]


def _insert(first_id: int) -> str:
    return f"INSERT INTO types (id, {', '.join(NAMES)}) VALUES {', '.join(_rows(first_id))}"


def test_every_type_round_trips_via_snapshot_stream_update_and_big_tx(
    pg_dsn: str, store_path: Path
) -> None:
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        f"CREATE TABLE types (id int PRIMARY KEY, {COLUMNS})",
        "CREATE TABLE filler (id int PRIMARY KEY, pad text)",
        _insert(1),
    )
    # Snapshot: rows 1..5 are read with SELECT under the exported snapshot.
    status = capture_once(pg_dsn, store_path)
    assert status.snapshot_rows == len(VALUES) + 1
    at_snapshot = insert_lsn(conn), pg_state(conn, "public.types")
    # A small transaction: the same values through pgoutput.
    execute(pg_dsn, _insert(101))
    small = insert_lsn(conn), pg_state(conn, "public.types")
    # Updates: every column of every row rotates to the next row's values (incl. NULLs).
    n = len(VALUES) + 1
    sets = ", ".join(f"{c} = o.{c}" for c in NAMES)
    execute(
        pg_dsn,
        f"UPDATE types SET {sets} FROM types o WHERE o.id = types.id % {n} + 1 AND types.id < 100",
    )
    rotated = insert_lsn(conn), pg_state(conn, "public.types")
    assert rotated[1].rows != at_snapshot[1].rows  # the rotation changed something
    # A transaction big enough to be streamed (logical_decoding_work_mem is 64kB).
    execute(
        pg_dsn,
        "BEGIN",
        "INSERT INTO filler SELECT g, repeat('x', 200) FROM generate_series(1, 3000) g",
        _insert(201),
        f"UPDATE types SET {sets} FROM types o WHERE o.id = types.id - 200 AND types.id > 200",
        "COMMIT",
    )
    big = insert_lsn(conn), pg_state(conn, "public.types")
    status = capture_once(pg_dsn, store_path)
    assert status.gaps == 0
    with opened(store_path) as store:
        for lsn, want in (at_snapshot, small, rotated, big):
            assert_same(store, "public.types", AtLsn(lsn), want)
        hist = list(store.history("public.types", ["2"]).rows)
        assert [h[3] for h in hist] == ["snapshot", "update"]
    conn.close()


def _big_text() -> str:
    """~40 kB that pglz cannot shrink below the TOAST threshold: stored out of line."""
    return base64.b64encode(os.urandom(30_000)).decode()


def test_toasted_values_survive_updates_of_other_columns(pg_dsn: str, store_path: Path) -> None:
    conn = pg_connect(pg_dsn)
    big = {i: _big_text() for i in range(1, 7)}
    execute(pg_dsn, "CREATE TABLE docs (id int PRIMARY KEY, n int, body text, note text)")
    conn.cursor().execute("INSERT INTO docs VALUES (1, 0, %s, 'snap')", [big[1]])
    # the value really lives out of line, in the TOAST table
    toast = scalar(
        conn, "SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'docs'"
    )
    assert int(scalar(conn, f"SELECT count(*) FROM {toast}")) > 1
    capture_once(pg_dsn, store_path)
    cur = conn.cursor()
    cur.execute("UPDATE docs SET n = 1 WHERE id = 1")  # 1: from the snapshot
    cur.execute("INSERT INTO docs VALUES (2, 0, %s, 'a'), (3, 0, %s, 'b')", [big[2], big[3]])
    cur.execute("UPDATE docs SET n = 1 WHERE id = 3")  # 3: inserted in an earlier transaction
    cur.execute("BEGIN")
    cur.execute("INSERT INTO docs VALUES (4, 0, %s, 'c')", [big[4]])
    cur.execute("UPDATE docs SET n = 1 WHERE id = 4")  # 4: inserted in the same transaction
    cur.execute("COMMIT")
    mid = insert_lsn(conn), pg_state(conn, "public.docs")
    capture_once(pg_dsn, store_path, batch_size=2)
    # later runs must fill the unchanged value from the store's head, not from memory
    cur.execute("UPDATE docs SET n = 2, note = NULL")  # every row, body untouched
    cur.execute("UPDATE docs SET id = 12 WHERE id = 2")  # a key change keeps the body
    cur.execute("BEGIN")  # a big streamed transaction updating around a TOASTed value
    cur.execute("INSERT INTO docs SELECT g, 0, 'small', 'pad' FROM generate_series(100, 2100) g")
    cur.execute("UPDATE docs SET n = 3 WHERE id IN (1, 3)")
    cur.execute("COMMIT")
    cur.execute("INSERT INTO docs VALUES (5, 0, %s, 'e')", [big[5]])
    cur.execute("UPDATE docs SET body = %s WHERE id = 5", [big[6]])  # a real change of body
    end = insert_lsn(conn), pg_state(conn, "public.docs")
    status = capture_once(pg_dsn, store_path)
    assert status.gaps == 0
    with opened(store_path) as store:
        for lsn, want in (mid, end):
            assert_same(store, "public.docs", AtLsn(lsn), want)
        for key, body in ((1, big[1]), (3, big[3]), (4, big[4]), (12, big[2]), (5, big[6])):
            versions = list(store.history("public.docs", [str(key)]).rows)
            assert versions, key
            for v in versions:
                after = v[5]
                if after is not None and key != 5:
                    assert after["body"] == body, (key, v[3])
            assert versions[-1][5]["body"] == body
        # the update that only touched n stored n, not the 40 kB body again
        last = list(store.history("public.docs", ["1"]).rows)[-1]
        assert last[6] == ["n"]
    conn.close()


@pytest.mark.parametrize(
    ("pg_type", "literal"),
    [
        ("numeric(12,2)", "'NaN'"),
        ("date", "'0044-03-15 BC'"),
        ("timestamp", "'0044-03-15 10:00:00 BC'"),
        ("timestamp", "'infinity'"),
        ("timestamptz", "'-infinity'"),
        ("date", "'infinity'"),
    ],
)
def test_values_beyond_duckdb_types(
    pg_dsn: str, store_path: Path, pg_type: str, literal: str
) -> None:
    conn = pg_connect(pg_dsn)
    execute(pg_dsn, f"CREATE TABLE t (id int PRIMARY KEY, v {pg_type})")
    execute(pg_dsn, f"INSERT INTO t VALUES (1, {literal})")
    capture_once(pg_dsn, store_path)
    execute(pg_dsn, f"INSERT INTO t VALUES (2, {literal})")
    want = insert_lsn(conn), pg_state(conn, "public.t")
    capture_once(pg_dsn, store_path)
    with opened(store_path) as store:
        assert_same(store, "public.t", AtLsn(want[0]), want[1])
    conn.close()


def test_user_defined_and_other_types_round_trip(pg_dsn: str, store_path: Path) -> None:
    """Enums, domains, composites, ranges, network, money, bits, geometry, xml, full-text:
    kept as PostgreSQL prints them, through the snapshot and the stream."""
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
        "CREATE DOMAIN price AS numeric(8,2) CHECK (VALUE >= 0)",
        "CREATE TYPE addr AS (street text, no int)",
        "CREATE TABLE odd (id int PRIMARY KEY, m mood, p price, a addr, r int4range, "
        "tr tstzrange, ip inet, net cidr, mac macaddr, mo money, bits bit(4), vb varbit, "
        "pt point, x xml, tv tsvector, tz timetz, ms mood[], o oid)",
    )
    rows = [
        "(1, 'happy', 12.50, ROW('Main St', 5), '[1,10)', "
        "'[2020-01-01 00:00+00,2021-01-01 00:00+00)', '10.0.0.1', '10.0.0.0/8', "
        "'08:00:2b:01:02:03', 12.34, B'1010', B'101', '(1.5,-2)', '<a>x</a>', "
        "'a fat cat', '12:00:00+05:30', '{sad,ok}', 42)",
        "(2, NULL, 0, ROW(NULL, NULL), 'empty', '(,)', '::1', '2001:db8::/32', "
        "'ff:ff:ff:ff:ff:ff', -1, B'0000', B'', '(0,0)', '', '', '00:00:00-12', '{}', 0)",
    ]
    execute(pg_dsn, f"INSERT INTO odd VALUES {rows[0]}")
    capture_once(pg_dsn, store_path)
    at_snapshot = insert_lsn(conn), pg_state(conn, "public.odd")
    execute(
        pg_dsn,
        f"INSERT INTO odd VALUES {rows[1]}",
        "UPDATE odd SET m = 'ok', a = ROW('Side St', NULL), r = '[5,6]' WHERE id = 1",
    )
    streamed = insert_lsn(conn), pg_state(conn, "public.odd")
    capture_and_check(pg_dsn, store_path, "public.odd", [at_snapshot, streamed])
    conn.close()
