"""A partitioned table is captured as one table: its partitions' rows in the snapshot,
their changes (rows moving between partitions too) under the partitioned table's name."""

from __future__ import annotations

from pathlib import Path

from pgcap import (
    capture_and_check,
    capture_once,
    execute,
    insert_lsn,
    opened,
    pg_connect,
    pg_state,
)


def test_partitioned_table_is_one_table(pg_dsn: str, store_path: Path) -> None:
    conn = pg_connect(pg_dsn)
    execute(
        pg_dsn,
        "CREATE TABLE ev (id int, day date, v text, PRIMARY KEY (id, day)) "
        "PARTITION BY RANGE (day)",
        "CREATE TABLE ev_2024 PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        "CREATE TABLE ev_2025 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
        "INSERT INTO ev SELECT g, date '2024-06-01' + g * 2, 'v' || g "
        "FROM generate_series(1, 200) g",
    )
    capture_once(pg_dsn, store_path)
    at_snapshot = insert_lsn(conn), pg_state(conn, "public.ev")
    execute(
        pg_dsn,
        "UPDATE ev SET v = 'x' WHERE id % 7 = 0",
        "DELETE FROM ev WHERE id % 11 = 0",
        "INSERT INTO ev VALUES (1000, '2025-03-01', 'new')",
    )
    changed = insert_lsn(conn), pg_state(conn, "public.ev")
    # the partition key changes: the row moves from ev_2024 to ev_2025
    execute(pg_dsn, "UPDATE ev SET day = '2025-02-02' WHERE id = 3")
    moved = insert_lsn(conn), pg_state(conn, "public.ev")
    capture_and_check(pg_dsn, store_path, "public.ev", [at_snapshot, changed, moved])
    with opened(store_path) as store:
        assert [t.qualified for t in store.tables()] == ["public.ev"]
    conn.close()
