"""Periodic per-table checkpoints: the whole table, typed, as of one store position.

Without them the state at an old point is a fold of all history up to it. With them it
is the nearest checkpoint plus the history since. ``k_<id>`` holds all checkpoints of
table ``<id>``, appended in position order and sorted by key inside each one. Zone maps
on ``_cp`` then find one checkpoint's row groups, and zone maps on the key prune within
it. ``_rb_checkpoints`` lists them. A checkpoint is taken inside the write that reaches
the threshold, from the head, so it commits (or rolls back) with that write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import duckdb

from rowback.model import Change, Op
from rowback.store.duckdb.catalog import Checkpoint, Table, first

MIN_CHANGES = 200_000
"""Default: at least this many changes between two checkpoints of a table."""


def count(
    con: duckdb.DuckDBPyConnection, table: Table, items: Sequence[tuple[int, Change, object]]
) -> None:
    """Account for ``items`` just applied to ``table``: see :func:`note`; TRUNCATEs are
    also recorded, since queries read their positions from the catalog, not from history."""
    ops = [ch.op for _, ch, _ in items]  # one pass in C where it can: writes are hot
    if Op.TRUNCATE in ops:
        table.truncates += [pos for pos, ch, _ in items if ch.op is Op.TRUNCATE]
    note(con, table, len(ops) - ops.count(Op.SNAPSHOT))


def note(con: duckdb.DuckDBPyConnection, table: Table, changes: int) -> None:
    """Count ``changes`` (snapshot rows excluded: a checkpoint right after a snapshot would
    repeat it) just applied to ``table`` towards its next checkpoint."""
    if table.since_checkpoint is None:  # first write in this process: count from history
        last = table.checkpoints[-1].pos if table.checkpoints else 0
        got = first(
            con.execute(
                f"SELECT count(*) FROM {table.hist} WHERE _pos > ? AND _op <> {Op.SNAPSHOT}",
                [last],
            ).fetchall()
        )
        table.since_checkpoint = int(got[0]) if got else changes  # includes these
    else:
        table.since_checkpoint += changes


def take_due(
    con: duckdb.DuckDBPyConnection, tables: Iterable[Table], pos: int, every: int | None
) -> None:
    """Checkpoint, as of ``pos``, every table whose changes since its last one reached
    ``every`` (None: ``max(MIN_CHANGES, its live rows)``, so the cost of a checkpoint,
    which is proportional to the table, is spread over as many changes)."""
    for t in tables:
        since = t.since_checkpoint
        if since is None or since == 0 or since < (every if every is not None else MIN_CHANGES):
            continue
        if every is None:
            got = first(con.execute(f"SELECT count(*) FROM {t.head}").fetchall())
            if since < (int(got[0]) if got else 0):
                continue
        take(con, t, pos)


def take(con: duckdb.DuckDBPyConnection, t: Table, pos: int) -> Checkpoint:
    """Copy the head of ``t`` (current as of ``pos``) into ``k_<id>`` as one checkpoint."""
    _ensure_columns(con, t)
    cols = [c for c in t.columns if c.alive_at(pos)]
    names = ", ".join(f"c{c.phys}" for c in cols)
    sel = ", ".join(f"c{c.phys}" if c.key else c.physical.cast(f"c{c.phys}") for c in cols)
    order = ", ".join(f"c{c.phys}" for c in t.key_columns)
    got = first(
        con.execute(
            f"INSERT INTO {t.ckpt} (_cp, {names}) "
            f"SELECT {int(pos)}::UBIGINT, {sel} FROM {t.head} ORDER BY {order}"
        ).fetchall()
    )
    cp = Checkpoint(pos, int(got[0]) if got else 0)
    con.execute("INSERT INTO _rb_checkpoints VALUES (?, ?, ?)", [t.id, cp.pos, cp.rows])
    t.checkpoints.append(cp)
    t.since_checkpoint = 0
    return cp


def _ensure_columns(con: duckdb.DuckDBPyConnection, t: Table) -> None:
    """``k_<id>`` gets every physical column the table has had; dropped ones stay NULL."""
    con.execute(f"CREATE TABLE IF NOT EXISTS {t.ckpt} (_cp UBIGINT)")
    have = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM duckdb_columns() "
            "WHERE table_name = ? AND database_name = current_database()",
            [t.ckpt],
        ).fetchall()
    }
    for c in t.columns:
        if f"c{c.phys}" not in have:
            con.execute(f"ALTER TABLE {t.ckpt} ADD COLUMN c{c.phys} {c.physical.duck}")


def forget(con: duckdb.DuckDBPyConnection, t: Table) -> None:
    """Drop every checkpoint of ``t`` (its history is being dropped too)."""
    con.execute(f"DROP TABLE IF EXISTS {t.ckpt}")
    con.execute("DELETE FROM _rb_checkpoints WHERE table_id = ?", [t.id])
