"""The vectorized write path: diff a whole batch against history in one SQL pass.

Python only transposes changes into Arrow columns; DuckDB finds each change's previous
version (the one before it in the batch, or the head row), computes which columns
changed, checks before images, writes history and replaces head rows. Batches with
TOAST-unchanged values, TRUNCATE or more than 64 columns take the row-by-row path in
``writer.py``; both paths give the same history (the contract suite runs both).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rowback.model import Change, ChangeBatch, Op, Text, WriteStats
from rowback.store.duckdb import catalog
from rowback.store.duckdb.catalog import MASK_BITS, Table, first, unregister
from rowback.store.duckdb.widening import check_input

Item = tuple[int, Change, tuple[int, ...]]


def eligible(table: Table, items: Sequence[Item]) -> bool:
    """Can this batch take the vectorized path?"""
    if len(table.columns) > MASK_BITS or not items:
        return False
    layout = items[0][2]
    return all(not ch.unchanged and ch.op != Op.TRUNCATE and lay == layout for _, ch, lay in items)


def _physical_rows(
    table: Table, items: Sequence[Item]
) -> tuple[list[list[Text]], list[list[Text]] | None]:
    """After (and before) images in physical column order; deletes carry their key only."""
    n = len(table.columns)
    layout = items[0][2]
    identity = layout == tuple(range(n))
    key_phys = [layout[i] for i in items[0][1].table.key_indexes]
    empty: list[Text] = [None] * n

    def place(values: list[Text]) -> list[Text]:
        if identity:
            return values
        row: list[Text] = [None] * n
        for i, p in enumerate(layout):
            row[p] = values[i]
        return row

    afters: list[list[Text]] = []
    for _, ch, _ in items:
        if ch.after is not None:
            afters.append(place(ch.after))
        else:
            row = list(empty)
            for p, v in zip(key_phys, ch.key or (), strict=False):
                row[p] = v
            afters.append(row)
    if not any(ch.before is not None for _, ch, _ in items):
        return afters, None
    befores = [place(ch.before) if ch.before is not None else empty for _, ch, _ in items]
    return afters, befores


def apply(
    con: duckdb.DuckDBPyConnection, table: Table, items: Sequence[Item], stats: WriteStats
) -> None:
    """Write ``items`` (one table, one layout) to history and head."""
    afters, befores = _physical_rows(table, items)
    arrays: dict[str, pa.Array] = {
        "_pos": pa.array([i[0] for i in items], pa.uint64()),
        "_lsn": pa.array([i[1].lsn for i in items], pa.uint64()),
        "_seq": pa.array([i[1].seq for i in items], pa.uint32()),
        "_txid": pa.array([i[1].txid for i in items], pa.uint64()),
        "_op": pa.array([int(i[1].op) for i in items], pa.uint8()),
        "_ts": pa.array([i[1].commit_us for i in items], pa.timestamp("us", tz="UTC")),
    }
    for p, col in enumerate(zip(*afters, strict=True)):
        arrays[f"c{p}"] = pa.array(col, pa.string())
    if befores is not None:
        arrays["_hasb"] = pa.array([i[1].before is not None for i in items], pa.bool_())
        for p, col in enumerate(zip(*befores, strict=True)):
            arrays[f"b{p}"] = pa.array(col, pa.string())
    apply_input(con, table, items[0][2], pa.table(arrays), stats)


def batch_input(table: Table, layout: tuple[int, ...], batch: ChangeBatch, pos: int) -> pa.Table:
    """A columnar batch as ``apply_input`` wants it: columns in physical order; the
    batch's changes at ``pos`` on (at ``pos`` plus its ``rows`` when it has them)."""
    n = len(batch)
    none = pa.nulls(n, pa.string())
    ts = pc.cast(batch.commit_us, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    if batch.rows is None:
        at = pa.array(np.arange(pos, pos + n, dtype=np.uint64))
    else:
        at = pc.add(pc.cast(batch.rows, pa.uint64()), pa.scalar(pos, pa.uint64()))
    arrays: dict[str, pa.Array] = {
        "_pos": at,
        "_lsn": pc.cast(batch.lsn, pa.uint64()),
        "_seq": pc.cast(batch.seq, pa.uint32()),
        "_txid": pc.cast(batch.txid, pa.uint64()),
        "_op": pc.cast(batch.op, pa.uint8()),
        "_ts": ts,
    }
    where = {p: i for i, p in enumerate(layout)}
    for p in range(len(table.columns)):
        arrays[f"c{p}"] = batch.after[where[p]] if p in where else none
    if batch.before is not None and batch.has_before is not None:
        arrays["_hasb"] = batch.has_before
        for p in range(len(table.columns)):
            arrays[f"b{p}"] = batch.before[where[p]] if p in where else none
    return pa.table(arrays)


def apply_input(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    layout: tuple[int, ...],
    inp: pa.Table,
    stats: WriteStats,
) -> None:
    """Diff ``inp`` (``_pos`` ascending, columns ``c<phys>``, maybe ``_hasb``/``b<phys>``)
    against history, then write history and head."""
    with_before = "_hasb" in inp.column_names
    con.register("_rb_in", inp)
    fast = False
    try:
        check_input(con, table)  # before anything casts the batch
        fast = with_before and _all_updates_have_before(inp) and _diff_by_before(con, table, layout)
        if not fast:
            con.execute(_work_sql(table, layout, with_before))
        _insert_history(con, table, ordered=fast)
        _replace_head(con, table, layout, last_marked=fast)
        if with_before and not fast:
            _count_gaps(con, table, stats)
    finally:
        for drop in (f"{'VIEW' if fast else 'TABLE'} IF EXISTS _rb_w", "TABLE IF EXISTS _rb_n"):
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP {drop}")
        unregister(con, "_rb_in")


def _all_updates_have_before(inp: pa.Table) -> bool:
    """Whether the fast diff may succeed: it gives up when an update of a stored row has
    no before image (REPLICA IDENTITY DEFAULT), so a batch with any such update goes
    straight to the general path instead of paying for both."""
    lacking = pc.and_(pc.equal(inp.column("_op"), int(Op.UPDATE)), pc.invert(inp.column("_hasb")))
    return not pc.any(lacking).as_py()


def _diff_by_before(con: duckdb.DuckDBPyConnection, table: Table, layout: tuple[int, ...]) -> bool:
    """Diff against the before images when each matches its previous version.

    Comparing every column with the previous version needs a window over the whole wide
    batch; comparing 64-bit hashes of (before image, previous version) needs one over
    narrow rows, after which each change's mask comes from its own before and after.
    When any hash differs (a gap, or an update without a before image) this returns
    False and the caller takes the general path, which also names the differing column.
    """
    keys = table.key_columns
    values = [p for p in layout if not table.columns[p].key]
    if not values:
        return False
    kn = [f"_k{j}" for j in range(len(keys))]
    kcast = ", ".join(f"{c.physical.cast(f'c{c.phys}')} AS _k{j}" for j, c in enumerate(keys))
    on_head = " AND ".join(f"s.c{c.phys} = b._k{j}" for j, c in enumerate(keys))
    join_on = " AND ".join(f"x.{k} = hd.{k}" for k in kn)

    def digest(prefix: str) -> str:
        return catalog.digest(table, layout, prefix)

    changed = " + ".join(
        f"CASE WHEN c{p} IS DISTINCT FROM b{p} THEN {1 << p}::UBIGINT ELSE 0 END" for p in values
    )
    con.execute(f"""
CREATE OR REPLACE TEMP TABLE _rb_n AS
WITH b AS (SELECT _pos, _op, _hasb, {kcast}, {digest("c")} AS _ha,
                  CASE WHEN _hasb THEN {digest("b")} END AS _hb,
                  CASE WHEN _hasb THEN {changed} END AS _mb FROM _rb_in),
hd AS (SELECT s.rowid AS _rid, {", ".join(f"s.c{c.phys} AS _k{j}" for j, c in enumerate(keys))},
              s._h AS _hh
       FROM {table.head} s SEMI JOIN b ON {on_head}),
x AS (SELECT b.*, row_number() OVER w = 1 AS _first, lag(_op) OVER w AS _pop,
             lag(_ha) OVER w AS _pha, lead(_pos) OVER w IS NULL AS _last
      FROM b WINDOW w AS (PARTITION BY {", ".join(kn)} ORDER BY _pos))
SELECT x._pos, {", ".join(f"x.{k}" for k in kn)}, hd._rid,
       CASE WHEN x._first THEN hd._rid IS NOT NULL ELSE x._pop <> {Op.DELETE} END AS _pex,
       CASE WHEN x._first THEN hd._hh ELSE x._pha END AS _ph, x._op, x._hasb, x._hb, x._mb,
       x._last
FROM x LEFT JOIN hd ON {join_on}
ORDER BY x._pos
""")
    needs_prev = first(
        con.execute(
            f"SELECT count(*) FROM _rb_n WHERE _pex AND ("
            f"(_op = {Op.UPDATE} AND NOT _hasb) OR "
            f"(_op IN ({Op.UPDATE}, {Op.DELETE}) AND _hasb AND _hb IS DISTINCT FROM _ph))"
        ).fetchall()
    )
    if needs_prev is None or needs_prev[0]:
        return False
    alive = sum(1 << p for p in layout)
    # A view, not a table: history and head each read it once, and copying the wide
    # batch would cost more than reading it twice. Both sides are in _pos order (the
    # input by contract, _rb_n by its ORDER BY), so rows pair up by position.
    con.execute(f"""
CREATE OR REPLACE TEMP VIEW _rb_w AS
SELECT i.*, {", ".join(f"n.{k}" for k in kn)}, n._rid, n._last,
       CASE WHEN i._op = {Op.UPDATE} AND n._pex THEN n._mb
            WHEN i._op = {Op.DELETE} THEN 0::UBIGINT ELSE {alive}::UBIGINT END AS _m
FROM _rb_in i POSITIONAL JOIN _rb_n n
""")
    return True


def _work_sql(table: Table, layout: tuple[int, ...], with_before: bool) -> str:
    keys = table.key_columns
    kcast = ", ".join(f"{c.physical.cast(f'c{c.phys}')} AS _k{j}" for j, c in enumerate(keys))
    kn = [f"_k{j}" for j in range(len(keys))]
    on_head = " AND ".join(f"s.c{c.phys} = b._k{j}" for j, c in enumerate(keys))
    values = [p for p in layout if not table.columns[p].key]
    head_cols = ", ".join(f"s.c{p} AS h{p}" for p in values)
    lags = ", ".join(f"lag(c{p}) OVER w AS l{p}" for p in values)
    prevs = ", ".join(f"CASE WHEN x._first THEN hd.h{p} ELSE x.l{p} END AS p{p}" for p in values)
    changed = (
        " + ".join(
            f"CASE WHEN c{p} IS DISTINCT FROM p{p} THEN {1 << p}::UBIGINT ELSE 0 END"
            for p in values
        )
        or "0::UBIGINT"
    )
    alive = sum(1 << p for p in layout)
    gap = "false"
    if with_before:
        gap = " OR ".join(f"b{p} IS DISTINCT FROM p{p}" for p in values) or "false"
        gap = f"(_op IN ({Op.UPDATE}, {Op.DELETE}) AND _hasb AND _pex AND ({gap}))"
    which = "NULL"
    if with_before and values:
        quoted = {p: table.columns[p].name.replace("'", "''") for p in values}
        whens = " ".join(f"WHEN b{p} IS DISTINCT FROM p{p} THEN '{quoted[p]}'" for p in values)
        which = f"CASE {whens} END"
    join_on = " AND ".join(f"x.{k} = hd.{k}" for k in kn)
    return f"""
CREATE OR REPLACE TEMP TABLE _rb_w AS
WITH b AS (SELECT *, {kcast} FROM _rb_in),
hd AS (SELECT s.rowid AS _rid, {", ".join(f"s.c{c.phys} AS _k{j}" for j, c in enumerate(keys))}
       {"," if head_cols else ""} {head_cols}
       FROM {table.head} s SEMI JOIN b ON {on_head}),
x AS (SELECT b.*, row_number() OVER w = 1 AS _first, lag(_op) OVER w AS _pop
             {"," if lags else ""} {lags}
      FROM b WINDOW w AS (PARTITION BY {", ".join(kn)} ORDER BY _pos)),
y AS (SELECT x.*, hd._rid,
             CASE WHEN x._first THEN hd._rid IS NOT NULL ELSE x._pop <> {Op.DELETE} END AS _pex
             {"," if prevs else ""} {prevs}
      FROM x LEFT JOIN hd ON {join_on})
SELECT *,
       CASE WHEN _op = {Op.UPDATE} AND _pex THEN {changed} WHEN _op = {Op.DELETE} THEN 0::UBIGINT
                ELSE {alive}::UBIGINT END AS _m,
       {gap} AS _gap,
       {which} AS _gapcol
FROM y
"""


def _insert_history(con: duckdb.DuckDBPyConnection, table: Table, ordered: bool = False) -> None:
    """Append ``_rb_w`` to history in position order (delta encoding and zone maps rely
    on it); ``ordered``: ``_rb_w`` already is, as DuckDB keeps insertion order."""
    exprs = []
    for c in table.columns:
        p = c.phys
        raw = (
            f"c{p}" if c.key else f"CASE WHEN (_m & {1 << p}::UBIGINT) = 0 THEN NULL ELSE c{p} END"
        )
        exprs.append(c.physical.cast(raw))
    cols = ", ".join(f"c{c.phys}" for c in table.columns)
    con.execute(
        f"INSERT INTO {table.hist} (_pos, _lsn, _seq, _txid, _ts, _op, _m0, {cols}) "
        f"SELECT _pos, _lsn, _seq, _txid, _ts, _op, _m, {', '.join(exprs)} FROM _rb_w"
        + ("" if ordered else " ORDER BY _pos")
    )


def _replace_head(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    layout: tuple[int, ...],
    last_marked: bool = False,
) -> None:
    """Replace head rows by each key's last version in ``_rb_w`` (``last_marked``: the
    rows with ``_last`` set)."""
    con.execute(
        f"DELETE FROM {table.head} WHERE rowid IN (SELECT _rid FROM _rb_w WHERE _rid IS NOT NULL)"
    )
    kn = ", ".join(f"_k{j}" for j in range(len(table.key_columns)))
    keyed = {c.phys: j for j, c in enumerate(table.key_columns)}
    vals = ", ".join(
        f"_k{keyed[c.phys]}" if c.phys in keyed else f"c{c.phys}" for c in table.columns
    )
    cols = ", ".join(f"c{c.phys}" for c in table.columns)
    last = (
        "SELECT * FROM _rb_w WHERE _last"
        if last_marked
        else "SELECT * FROM _rb_w QUALIFY "
        f"row_number() OVER (PARTITION BY {kn} ORDER BY _pos DESC) = 1"
    )
    con.execute(
        f"INSERT INTO {table.head} (_pos, _h, {cols}) "
        f"SELECT _pos, {catalog.digest(table, layout)}, {vals} FROM ({last}) "
        f"WHERE _op <> {Op.DELETE}"
    )


def _count_gaps(con: duckdb.DuckDBPyConnection, table: Table, stats: WriteStats) -> None:
    keys = ", ".join(f"c{c.phys}" for c in table.key_columns)
    rows = con.execute(f"SELECT _gapcol, {keys} FROM _rb_w WHERE _gap ORDER BY _pos").fetchall()
    stats.gaps += len(rows)
    for r in rows[: max(0, 10 - len(stats.gap_examples))]:
        stats.gap_examples.append(
            f"{table.qualified} key {tuple(r[1:])}: before image of {r[0]} differs from history"
        )
