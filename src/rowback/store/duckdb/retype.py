"""ALTER COLUMN ... TYPE: PostgreSQL rewrites the table and sends no row events for it.

The store learns of the new type from the next change to the table (pgoutput sends the
new relation first; Debezium a new schema). The column gets a new physical column, so
rows not changed since would read NULL in it, and a retyped key would orphan every
untouched row. So at that point every current row is re-read from the head, as the
rewrite left it: the head gets the value in the new type, and history a snapshot version
of the whole row (the position, time and transaction of that next change). Folds that
start before the rewrite then never need a version older than it for a live row.

The new value is the old typed value under DuckDB's cast, adjusted where PostgreSQL's
default (assignment) cast differs: float to integer rounds half to even, a time typmod
rounds the fraction, boolean to text gives ``true``/``false``, string types pad or trim
and json becomes jsonb's normal form (``pgcasts``), and the head's text is PostgreSQL's
output of the new type. A ``USING`` expression is invisible in the WAL; rows
whose old value does not cast are counted as gaps. The rows' value hashes (``_h``) are
recomputed by the caller, as after any schema change.
"""

from __future__ import annotations

import contextlib
import re

import duckdb

from rowback.model import Op, WriteStats
from rowback.store.duckdb import pgcasts
from rowback.store.duckdb.catalog import MASK_BITS, PhysColumn, Table, first, widen
from rowback.store.duckdb.types import physical

_INTEGERS = ("SMALLINT", "INTEGER", "BIGINT")
_TYPMOD = re.compile(r"\((\d+)\)")


def _rounded(value: str, duck: str, pg_type: str) -> str:
    """``value`` (of DuckDB type ``duck``) rounded to ``pg_type``'s fraction digits, as
    PostgreSQL rounds a time to a typmod: half away from zero."""
    m = _TYPMOD.search(pg_type)
    if m is None or int(m.group(1)) >= 6 or duck not in ("TIMESTAMP", "TIMESTAMPTZ", "TIME"):
        return value
    step = 10 ** (6 - int(m.group(1)))
    us = f"epoch_us({value})"
    near = f"sign({us}) * ((abs({us}) + {step // 2}) // {step}) * {step}"
    if duck == "TIME":  # 23:59:59.9 rounds to 24:00:00, which TIME's arithmetic wraps
        return (
            f"CASE WHEN {near} < 86400000000 THEN TIME '00:00:00' + to_microseconds({near}) "
            f"WHEN {near} = 86400000000 THEN TIME '24:00:00' END"
        )
    made = f"{'make_timestamptz' if duck == 'TIMESTAMPTZ' else 'make_timestamp'}({near})"
    return f"CASE WHEN isinf({value}) THEN {value} ELSE {made} END"


def converted(old: PhysColumn, new: PhysColumn) -> tuple[str, str]:
    """SQL for the value of ``new`` (typed in its type before any widening) and for its
    PostgreSQL text, from the head's value of ``old`` (typed keys, other values as text),
    converted as PostgreSQL's default cast does; NULL where it does not convert."""
    src = f"c{old.phys}"
    was = old.physical
    typed_old = src if old.key else f"TRY({was.cast(src)})"
    text_old = was.text(src) if old.key else src  # PostgreSQL's text of the old value
    base = physical(new.pg_type)
    if base.duck in ("VARCHAR", "BLOB"):
        # text of the old type's output, except where its cast to text differs
        text = text_old
        if was.duck == "BOOLEAN" and new.pg_type != "name":  # bool's cast to text, not I/O
            text = f"CAST({typed_old} AS VARCHAR)"
        if base.hint == "numeric":  # numeric beyond DECIMAL, held as text
            text = pgcasts.numeric_text(old.pg_type, text, new.pg_type)
        elif base.duck == "VARCHAR":
            text = pgcasts.string_cast(old.pg_type, new.pg_type, text)
        return text, text
    if was.duck in ("VARCHAR", "BLOB"):
        value = f"TRY({base.cast(pgcasts.numeric_text(old.pg_type, text_old))})"
    elif was.duck in ("FLOAT", "DOUBLE") and base.duck in _INTEGERS:
        value = f"TRY_CAST(round_even({typed_old}, 0) AS {base.duck})"  # PostgreSQL's rint
    elif was.duck in ("FLOAT", "DOUBLE") and base.duck.startswith("DECIMAL"):
        value = f"TRY_CAST({pgcasts.numeric_text(old.pg_type, text_old)} AS {base.duck})"
    elif was.duck == "TIMESTAMPTZ" and base.duck == "TIME":  # DuckDB has no such cast
        value = f"TRY_CAST(timezone('UTC', {typed_old}) AS TIME)"
    else:
        value = f"TRY_CAST({typed_old} AS {base.duck})"
    value = _rounded(value, base.duck, new.pg_type)
    if base.duck == "BOOLEAN":
        text = f"CASE WHEN {value} THEN 't' WHEN NOT {value} THEN 'f' END"
    else:
        text = base.text(value)
    beyond = base.overflow(text_old)  # NaN and the like, kept as text by a widened column
    if beyond is not None and was.duck in ("VARCHAR", "FLOAT", "DOUBLE"):
        text = f"CASE WHEN {beyond} THEN {text_old} ELSE {text} END"
    return value, text


def head_value(old: PhysColumn, new: PhysColumn) -> str:
    """SQL for the head's value of ``new`` from the head's value of ``old``."""
    value, text = converted(old, new)
    return value if new.key and not new.widened else text


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
    pgcasts.register(con)
    for old, new in retyped:
        text = f"CAST(c{old.phys} AS VARCHAR)" if old.key else f"c{old.phys}"
        beyond = new.physical.overflow(text)  # NaN kept as text, into a DECIMAL: widen it
        if beyond is not None:
            got = first(con.execute(f"SELECT count(*) FROM {head} WHERE {beyond}").fetchall())
            if got and got[0]:
                widen(con, table, [new])
        con.execute(f"UPDATE {head} SET c{new.phys} = {head_value(old, new)}")
        where = f"c{old.phys} IS NOT NULL AND c{new.phys} IS NULL"
        if new.physical.duck == "TIME" and old.physical.duck in ("TIMESTAMP", "TIMESTAMPTZ"):
            where += f" AND {text} NOT IN ('infinity', '-infinity')"  # NULL in PostgreSQL too
        got = first(con.execute(f"SELECT count(*) FROM {head} WHERE {where}").fetchall())
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
