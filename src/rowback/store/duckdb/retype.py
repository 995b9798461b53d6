"""ALTER COLUMN ... TYPE: PostgreSQL rewrites the table and sends no row events for it.

The store learns of the new type from the next change to the table (pgoutput sends the
new relation first; Debezium a new schema). The column gets a new physical column, so
rows not changed since would read NULL in it, and a retyped key would orphan every
untouched row. So at that point every current row is re-read from the head, as the
rewrite left it: the head gets the value in the new type, and history a snapshot version
of the whole row (the position, time and transaction of that next change). Folds that
start before the rewrite then never need a version older than it for a live row.

The new value is the old one under DuckDB's cast, which is what PostgreSQL's default
(assignment) cast gives for the usual retypes: widening integers, numeric precision and
scale, varchar/text, integer to numeric, date and time types. A ``USING`` expression is
invisible in the WAL; rows whose old value does not cast are counted as gaps.
"""

from __future__ import annotations

import contextlib

import duckdb

from rowback.model import Op, WriteStats
from rowback.store.duckdb.catalog import MASK_BITS, PhysColumn, Table, first, widen
from rowback.store.duckdb.types import physical

# the types whose ``Physical.text`` is PostgreSQL's own text; others keep the text they had
_TEXT_AS_POSTGRES = ("SMALLINT", "INTEGER", "BIGINT", "DECIMAL", "DATE", "TIMESTAMP")


def head_value(old: PhysColumn, new: PhysColumn) -> str:
    """SQL for the head's value of ``new`` from the head's value of ``old`` (the head keeps
    keys typed and other values as PostgreSQL text), NULL when it does not convert."""
    src = f"c{old.phys}"
    if new.key:
        return f"TRY_CAST({src} AS {new.physical.duck})"
    if old.key:
        src = f"CAST({src} AS VARCHAR)"
    base = physical(new.pg_type)  # the column's type before any widening
    if base.duck in ("VARCHAR", "BLOB"):
        return src
    typed = f"TRY({base.cast(src)})"
    beyond = base.overflow(src)  # kept as text by a widened column
    keep = f"WHEN {beyond} THEN {src} " if beyond is not None else ""
    if base.duck.startswith(_TEXT_AS_POSTGRES):
        return f"CASE {keep}ELSE {base.text(typed)} END" if keep else base.text(typed)
    return f"CASE {keep}WHEN {typed} IS NOT NULL THEN {src} END"


def reread(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    retyped: list[tuple[PhysColumn, PhysColumn]],
    pos: int,
    lsn: int,
    txid: int,
    commit_us: int,
    stats: WriteStats,
) -> int:
    """Convert the head's retyped columns and write a snapshot version of every current row
    at positions ``pos``, ``pos + 1``, ...; returns how many positions that took."""
    head = table.head
    for old, new in retyped:
        text = f"CAST(c{old.phys} AS VARCHAR)" if old.key else f"c{old.phys}"
        beyond = new.physical.overflow(text)  # NaN kept as text, into a DECIMAL: widen it
        if beyond is not None:
            got = first(con.execute(f"SELECT count(*) FROM {head} WHERE {beyond}").fetchall())
            if got and got[0]:
                widen(con, table, [new])
        con.execute(f"UPDATE {head} SET c{new.phys} = {head_value(old, new)}")
        got = first(
            con.execute(
                f"SELECT count(*) FROM {head} WHERE c{old.phys} IS NOT NULL AND c{new.phys} IS NULL"
            ).fetchall()
        )
        lost = int(got[0]) if got else 0
        if lost:
            stats.gaps += lost
            if len(stats.gap_examples) < 10:
                stats.gap_examples.append(
                    f"{table.qualified}: {lost} value(s) of {new.name} do not cast from "
                    f"{old.pg_type} to {new.pg_type} (ALTER ... USING?); they read NULL"
                )
    got = first(con.execute(f"SELECT count(*) FROM {head}").fetchall())
    rows = int(got[0]) if got else 0
    if not rows:
        return 0
    cols = table.alive
    words = table.mask_words()
    masks = [0] * words
    for c in cols:
        masks[c.phys // MASK_BITS] |= 1 << (c.phys % MASK_BITS)
    order = ", ".join(f"c{c.phys}" for c in table.key_columns)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _rb_rr AS SELECT rowid AS _rid, "
        f"{int(pos) - 1} + row_number() OVER (ORDER BY {order}) AS _p FROM {head}"
    )
    try:
        values = ", ".join(
            f"s.c{c.phys}" if c.key else c.physical.cast(f"s.c{c.phys}") for c in cols
        )
        con.execute(
            f"INSERT INTO {table.hist} (_pos, _lsn, _seq, _txid, _ts, _op, "
            f"{', '.join(f'_m{w}' for w in range(words))}, "
            f"{', '.join(f'c{c.phys}' for c in cols)}) "
            f"SELECT r._p, {int(lsn)}, 0, {int(txid)}, make_timestamptz({int(commit_us)}), "
            f"{int(Op.SNAPSHOT)}, {', '.join(f'{m}::UBIGINT' for m in masks)}, {values} "
            f"FROM {head} s JOIN _rb_rr r ON s.rowid = r._rid ORDER BY r._p"
        )
        con.execute(f"UPDATE {head} SET _pos = r._p FROM _rb_rr r WHERE {head}.rowid = r._rid")
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute("DROP TABLE IF EXISTS _rb_rr")
    return rows
