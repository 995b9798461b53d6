"""REPLICA IDENTITY FULL: PostgreSQL sends the whole old row with every UPDATE and DELETE,
and the store checks it against its own last version. A consistent history reports no
gaps; a history that disagrees with the source is reported, not silently accepted."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from pgcap import assert_same, capture_once, execute, insert_lsn, opened, pg_connect, pg_state

from rowback.store.duckdb import catalog
from rowback.when import AtLsn

DDL = (
    "CREATE TABLE full_t (id int PRIMARY KEY, flag boolean, code char(4), amount numeric(12,2), "
    "x double precision, at timestamptz, tags text[], ip inet, doc jsonb, body text)",
    "ALTER TABLE full_t REPLICA IDENTITY FULL",
)
ROW = (
    "(%s, true, 'ab', 12.5, 0.1, '2020-01-01 10:00+02', '{a,NULL,\"b c\"}', '10.0.0.1', "
    "'{\"k\": [1, 2]}', 'short')"
)


def test_full_identity_history_has_no_gaps(pg_dsn: str, store_path: Path) -> None:
    conn = pg_connect(pg_dsn)
    big = base64.b64encode(os.urandom(20_000)).decode()
    execute(pg_dsn, *DDL, *(f"INSERT INTO full_t VALUES {ROW % i}" for i in range(1, 6)))
    conn.cursor().execute("UPDATE full_t SET body = %s WHERE id = 5", [big])
    capture_once(pg_dsn, store_path)  # rows 1-5 come from the snapshot
    points = []
    execute(pg_dsn, *(f"INSERT INTO full_t VALUES {ROW % i}" for i in range(6, 9)))
    execute(
        pg_dsn,
        "UPDATE full_t SET flag = NOT flag, amount = amount + 1",  # snapshot and streamed rows
        "UPDATE full_t SET x = 'NaN', tags = NULL WHERE id % 2 = 0",
        "DELETE FROM full_t WHERE id IN (2, 7)",
        "UPDATE full_t SET id = 20 WHERE id = 3",  # a key change
        "UPDATE full_t SET code = 'z' WHERE id = 5",  # the TOASTed body is not resent
    )
    points.append((insert_lsn(conn), pg_state(conn, "public.full_t")))
    execute(
        pg_dsn,
        "BEGIN",
        "INSERT INTO full_t SELECT g, false, 'q', g, g, now(), '{}', '::1', '[]', repeat('y', 90) "
        "FROM generate_series(100, 1600) g",
        "UPDATE full_t SET amount = amount * 2",
        "DELETE FROM full_t WHERE id BETWEEN 100 AND 200",
        "COMMIT",
    )
    points.append((insert_lsn(conn), pg_state(conn, "public.full_t")))
    status = capture_once(pg_dsn, store_path, batch_size=100)
    assert status.changes > 3000
    assert status.gaps == 0, status.gap_examples
    with opened(store_path) as store:
        for lsn, want in points:
            assert_same(store, "public.full_t", AtLsn(lsn), want)
    conn.close()


def test_full_identity_reports_a_history_that_disagrees(pg_dsn: str, store_path: Path) -> None:
    """The positive control: tamper with the store's idea of a row, and the next change's
    before image must be reported as a gap."""
    execute(pg_dsn, *DDL, *(f"INSERT INTO full_t VALUES {ROW % i}" for i in range(1, 4)))
    capture_once(pg_dsn, store_path)
    with opened(store_path) as store:
        t = store.table("public.full_t")
        amount = next(c for c in t.columns if c.name == "amount")
        store.sql(f"UPDATE {t.head} SET c{amount.phys} = '99.00' WHERE c0 IN ('2', '3')")
        # ... and its hash of the row's values, as the store would have it (catalog.digest)
        catalog.rehash(store._con, t, tuple(c.phys for c in t.alive))
    execute(
        pg_dsn, "UPDATE full_t SET flag = false WHERE id < 3", "DELETE FROM full_t WHERE id = 3"
    )
    status = capture_once(pg_dsn, store_path)
    assert status.gaps == 2, status.gap_examples  # the update of row 2, the delete of row 3
    examples = sorted(status.gap_examples)  # the two write paths word them differently
    assert [e.split(":")[0] for e in examples] == [f"public.full_t key ('{k}',)" for k in (2, 3)]
    assert all("before image" in e for e in examples)
