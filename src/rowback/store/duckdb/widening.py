"""Find, before a batch is written, the values its typed columns cannot hold.

A cast that fails halfway through a write aborts the whole DuckDB transaction, and with
it capture, which would stop at the same row on every restart. So each write path first
looks for such values (``numeric`` NaN in a DECIMAL, a timestamp after DuckDB's last
year) in the columns that can have them and are still typed, and widens those columns
to PostgreSQL text (``catalog.widen``) before casting anything. Other columns cost
nothing: most tables have no column this can happen to.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from rowback.model import Change
from rowback.store.duckdb.catalog import PhysColumn, Table, first, widen


def _typed(table: Table) -> dict[int, PhysColumn]:
    """The columns some PostgreSQL value would not fit, by physical position."""
    return {c.phys: c for c in table.columns if c.physical.overflow("x") is not None}


def check_changes(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    items: Sequence[tuple[int, Change, tuple[int, ...]]],
) -> None:
    """Widen the columns whose values in ``items`` (pos, change, layout) they cannot hold;
    a test of the text in Python, for the row-by-row path."""
    typed = _typed(table)
    if not typed:
        return
    hit: dict[int, PhysColumn] = {}
    kinds = {p: c.physical for p, c in typed.items()}
    keys = [(j, c.phys) for j, c in enumerate(table.key_columns) if c.phys in typed]
    last: tuple[int, ...] | None = None
    where: list[tuple[int, int]] = []  # (index in the change's values, physical position)
    for _, ch, layout in items:
        if layout is not last:
            where = [(i, p) for i, p in enumerate(layout) if p in typed]
            last = layout
        after = ch.after
        if after is not None:
            for i, p in where:
                v = after[i]
                if v is not None and p not in hit and kinds[p].overflows(v):
                    hit[p] = typed[p]
        if ch.key is not None:
            for j, p in keys:
                v = ch.key[j] if j < len(ch.key) else None
                if v is not None and p not in hit and kinds[p].overflows(v):
                    hit[p] = typed[p]
    if hit:
        widen(con, table, list(hit.values()))


def check_input(con: duckdb.DuckDBPyConnection, table: Table, name: str = "_rb_in") -> None:
    """Widen the columns whose values in the registered batch ``name`` (text columns
    ``c<phys>``) they cannot hold: one SQL pass, for the vectorized path."""
    cols = list(_typed(table).values())
    if not cols:
        return
    tests = ", ".join(f"bool_or({c.physical.overflow(f'c{c.phys}')})" for c in cols)
    got = first(con.execute(f"SELECT {tests} FROM {name}").fetchall())
    hit = [c for c, found in zip(cols, got or (), strict=False) if found]
    if hit:
        widen(con, table, hit)
