"""Reverse SQL is exact for every kind of value the shadow keeps: each literal is the
captured text cast to the column's type, so what comes back is what was there."""

from __future__ import annotations

from pathlib import Path

import pytest
from pgcap import capture_once, execute, opened, pg_connect, pg_state

from rowback.revert import Mode, prepare
from rowback.revert.apply import apply

COLUMNS = {
    "n": "numeric(12,4)",
    "nu": "numeric",
    "f8": "double precision",
    "f4": "real",
    "b": "boolean",
    "d": "date",
    "ts": "timestamp",
    "tz": "timestamptz",
    "t": "time",
    "u": "uuid",
    "j": "jsonb",
    "js": "json",
    "by": "bytea",
    "arr": "integer[]",
    "txt": "text",
    "iv": "interval",
}

VALUES = [
    "1234.5678, 'NaN', 0.1, 1.5e-7, true, '0044-03-15 BC', '2026-01-02 03:04:05.123456', "
    "'2026-06-01 12:00:00.5+02', '23:59:59.999999', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', "
    "'{\"a\": [1, 2.50]}', '{ \"k\" :  1 }', '\\x00ff10', '{1,NULL,3}', 'it''s \\ \"q\"', "
    "'1 year 2 mons 3 days 04:05:06.7'",
    "-0.0001, 12345678901234567890.123456789, 1e300, 3.4e38, false, 'infinity', '-infinity', "
    "'infinity', '00:00:00', '00000000-0000-0000-0000-000000000000', 'null', '[]', '\\x', "
    "'{}', '', '-1 days'",
]


DAMAGE = {
    "to_null": f"UPDATE v SET {', '.join(f'{n} = NULL' for n in COLUMNS)}",
    # guards then compare non-NULL values of every type
    "swapped": f"UPDATE v SET ({', '.join(COLUMNS)}) = "
    f"(SELECT {', '.join(COLUMNS)} FROM v w WHERE w.id = 3 - v.id)",
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_every_type_comes_back_exactly(pg_dsn: str, store_path: Path, damage: str) -> None:
    cols = ", ".join(f"{n} {t}" for n, t in COLUMNS.items())
    execute(
        pg_dsn,
        f"CREATE TABLE v (id int PRIMARY KEY, {cols})",
        *[f"INSERT INTO v VALUES ({i}, {row})" for i, row in enumerate(VALUES, 1)],
    )
    capture_once(pg_dsn, store_path)
    conn = pg_connect(pg_dsn)
    before = pg_state(conn, "public.v")
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute(DAMAGE[damage])
        cur.execute("SELECT pg_current_xact_id()::xid::text")
        row = cur.fetchone()
        assert row is not None
        bad = int(row[0])
    conn.commit()
    capture_once(pg_dsn, store_path)
    with opened(store_path) as s:
        plan = prepare(s, [bad], Mode.nocascade)
    done = apply(plan, pg_dsn, "types")
    assert done.rows == len(VALUES) and not done.missed
    assert pg_state(conn, "public.v").rows == before.rows
    conn.close()
