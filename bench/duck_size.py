"""How many bytes one DuckDB table takes on disk.

DuckDB has no per-table byte count (``duckdb_tables().estimated_size`` is a row count).
So the table is copied, in its stored order, into a new database file holding only that
table; after CHECKPOINT the used blocks (256 KiB each) minus those of the same file with
the table empty are the table's size. This is what the table costs when freshly written;
the store's own file can be larger (blocks freed by later checkpoints are reused, not
returned), which :func:`in_place_blocks` bounds from above.

A per-column split comes from ``PRAGMA storage_info``: segments are laid out one after
another inside blocks, so a segment's size is the distance to the next segment's offset
(the last one in a block is estimated from its column's bytes per row elsewhere, or
counted to the block's end): an approximation, to see which columns dominate.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb


def _used_bytes(con: duckdb.DuckDBPyConnection, db: str) -> int:
    rows = con.execute("PRAGMA database_size").fetchall()
    for name, _, block_size, _, used, *_ in rows:
        if name == db:
            return int(block_size) * int(used)
    raise KeyError(db)


def copy_size(
    store_file: Path, table: str, where: str = "true", order: str = "_pos"
) -> dict[str, Any]:
    """Bytes of ``table`` (rows matching ``where``, in ``order``: as stored) alone in a new
    checkpointed file."""
    tmp = Path(tempfile.mkdtemp(prefix="rowback-size-"))
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{store_file}' AS src (READ_ONLY)")
        con.execute(f"ATTACH '{tmp / 'empty.duckdb'}' AS empty")
        con.execute(f"CREATE TABLE empty.t AS SELECT * FROM src.{table} LIMIT 0")
        con.execute("CHECKPOINT empty")
        base = _used_bytes(con, "empty")
        con.execute(f"ATTACH '{tmp / 'only.duckdb'}' AS alone")
        con.execute(
            f"CREATE TABLE alone.t AS SELECT * FROM src.{table} WHERE {where} ORDER BY {order}"
        )
        con.execute("CHECKPOINT alone")
        used = _used_bytes(con, "alone")
        rows = con.execute("SELECT count(*) FROM alone.t").fetchone()[0]
        columns = _columns(con, "alone", "t")
    finally:
        con.close()
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    return {"bytes": used - base, "rows": int(rows), "file_bytes": used, "columns": columns}


def _columns(con: duckdb.DuckDBPyConnection, db: str, table: str) -> dict[str, dict[str, Any]]:
    """Approximate bytes and the compressions used, per column (validity included)."""
    block_size = con.execute("PRAGMA database_size").fetchall()[0][2]
    segs = con.execute(
        f"SELECT column_name, segment_type, compression, count, block_id, block_offset "
        f"FROM pragma_storage_info('{db}.{table}') WHERE block_id >= 0"
    ).fetchall()
    by_block: dict[int, list[tuple[int, str, int]]] = defaultdict(list)
    comp: dict[str, set[str]] = defaultdict(set)
    for col, stype, compression, count, block, offset in segs:
        key = col if stype != "VALIDITY" else col + " (validity)"
        by_block[block].append((offset, key, count))
        comp[key].add(compression)
    size: dict[str, int] = defaultdict(int)
    known: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # bytes, rows of exact segments
    tails: list[tuple[str, int, int]] = []
    for items in by_block.values():
        items.sort()
        for i, (offset, key, count) in enumerate(items):
            if i + 1 < len(items):
                size[key] += items[i + 1][0] - offset
                known[key][0] += items[i + 1][0] - offset
                known[key][1] += count
            else:
                tails.append((key, block_size - offset, count))
    for key, room, count in tails:  # a block's last segment: its column's bytes per row
        b, r = known[key]
        size[key] += min(room, round(count * b / r)) if r else room
    return {c: {"bytes": size[c], "compression": sorted(comp[c])} for c in sorted(size)}


def in_place_blocks(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Bytes of the distinct blocks ``table``'s segments occupy in its own file (upper bound)."""
    block_size = con.execute("PRAGMA database_size").fetchall()[0][2]
    rows = con.execute(
        f"SELECT block_id, additional_block_ids FROM pragma_storage_info('{table}') "
        "WHERE block_id >= 0"
    ).fetchall()
    blocks = {b for b, _ in rows} | {x for _, extra in rows for x in (extra or [])}
    return len(blocks) * int(block_size)
