"""A table's state at a store position (a *bound*), by the cheapest of three plans.

A row's state at bound ``b`` is, per column, the newest value written at or before ``b``
(``arg_max_null`` over versions whose mask bit says "written"). A row whose newest
version is a delete is gone. A TRUNCATE at ``t0`` empties the table, so folds start
after the last one. These plans give the same rows:

- ``fold``: every version in (t0, b];
- ``checkpoint``: the nearest checkpoint ``cp`` at or before ``b`` and not before ``t0``.
  Keys untouched in (cp, b] keep their checkpoint row; for touched keys the versions in
  (cp, b] are folded and the checkpoint row fills the columns they did not write.
  History is in ``_pos`` order, so the range prunes row groups;
- ``head``: the current rows of keys untouched after ``b``, and the touched keys' state at
  ``b``, folded as above (from a checkpoint when there is one).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import duckdb

from rowback.model import Op
from rowback.store.duckdb.catalog import MASK_BITS, Checkpoint, PhysColumn, Table, first

# Nanoseconds per row, fitted to the plans' timings on the 10M-change benchmark store
# (docs/benchmarks.md, "Checkpoints"): folding a version into its key's state, finding the
# distinct keys changed after the bound, reading a version to find it is not wanted, taking
# a head row (cast from text, anti join), and passing a checkpoint row through.
AGG, DISTINCT, SCAN, HEAD, CKPT = 250, 60, 20, 50, 30


def written(c: PhysColumn, masks: str = "_m") -> str:
    word, bit = divmod(c.phys, MASK_BITS)
    return f"({masks}{word} & {1 << bit}::UBIGINT) <> 0"


def last_truncate(t: Table, b: int) -> int:
    """Position of the last TRUNCATE at or before ``b`` (0: none)."""
    i = bisect.bisect_right(t.truncates, b)
    return t.truncates[i - 1] if i else 0


def checkpoint_at(t: Table, b: int, keys: list[PhysColumn]) -> Checkpoint | None:
    """The newest checkpoint at or before ``b`` that ``b``'s state can start from: none
    when a TRUNCATE came after it, or when the key columns changed since."""
    i = bisect.bisect_right([cp.pos for cp in t.checkpoints], b)
    if not i:
        return None
    cp = t.checkpoints[i - 1]
    if cp.pos < last_truncate(t, b) or not all(c.alive_at(cp.pos) for c in keys):
        return None
    return cp


def key_columns(t: Table, cols: list[PhysColumn]) -> list[PhysColumn]:
    return [c for c in cols if c.key] or t.key_columns


def versions(
    t: Table, cols: list[PhysColumn], lo: int, b: int, join: str = "", where: str = ""
) -> str:
    """Versions of ``cols`` in (lo, b] (alias ``v``), narrowed by ``join`` and ``where``."""
    masks = ", ".join(f"v._m{w}" for w in range(t.mask_words()))
    extra = f" AND ({where})" if where else ""
    # versions from before a key column was retyped do not have it; the rewrite re-read
    # every live row under the new key (retype.py), so they are not needed either
    retyped = [c for c in cols if c.key and c.added_pos > max(t.created_pos, lo + 1)]
    extra += "".join(f" AND v.c{c.phys} IS NOT NULL" for c in retyped)
    return (
        f"SELECT v._pos, v._op, {masks}, {', '.join(f'v.c{c.phys}' for c in cols)} "
        f"FROM {t.hist} v {join} "
        f"WHERE v._pos > {int(lo)} AND v._pos <= {int(b)} AND v._op <> {Op.TRUNCATE}{extra}"
    )


def _newest(c: PhysColumn, is_written: str, prefix: str = "") -> str:
    """The newest written value of ``c``; its ``missing`` value when none was written."""
    newest = f"arg_max_null({prefix}c{c.phys}, {prefix}_pos) FILTER (WHERE {is_written})"
    lit = c.missing_sql()
    if lit is None:
        return newest
    return f"CASE WHEN bool_or({is_written}) THEN {newest} ELSE {lit} END"


def fold(t: Table, cols: list[PhysColumn], source: str) -> str:
    """Per-key state over the versions in ``source``: newest written value of each column."""
    keys = key_columns(t, cols)
    sel = [f'c{c.phys} AS "{c.name}"' for c in keys]
    sel += [f'{_newest(c, written(c))} AS "{c.name}"' for c in cols if not c.key]
    group = ", ".join(f"c{c.phys}" for c in keys)
    return (
        f"SELECT {', '.join(sel)} FROM ({source}) GROUP BY {group} "
        f"HAVING arg_max(_op, _pos) <> {Op.DELETE}"
    )


def state(
    t: Table,
    cols: list[PhysColumn],
    b: int,
    cp: Checkpoint | None,
    lo: int = 0,
    join: str = "",
    where: str = "",
) -> str:
    """Per-key state at ``b`` of the keys ``join`` and ``where`` select (alias ``v``; all
    keys without them), from checkpoint ``cp`` when given, else folded from ``lo``.

    From a checkpoint, the versions since it are folded alone, remembering which columns
    they wrote; the checkpoint fills the rest. Folding the checkpoint rows in with them
    would carry every one of their values through the aggregate: about 3x slower.
    """
    keys = key_columns(t, cols)
    if cp is None:
        return fold(t, cols, versions(t, keys + [c for c in cols if not c.key], lo, b, join, where))
    values = [c for c in cols if not c.key]
    kept = [c for c in values if c.alive_at(cp.pos)]  # columns the checkpoint has
    extra = f" AND ({where})" if where else ""
    delta = [f"v.c{c.phys}" for c in keys] + ["arg_max(v._op, v._pos) AS _op"]
    delta += [f"bit_or(v._m{w}) AS _w{w}" for w in range(t.mask_words())]  # written at all
    delta += [
        f"arg_max_null(v.c{c.phys}, v._pos) FILTER (WHERE {written(c)}) AS c{c.phys}"
        for c in values
    ]

    # columns added after the checkpoint: a row it holds that no version since wrote them
    # for had them added with their missing value (or NULL)
    def absent(c: PhysColumn) -> str:
        return c.missing_sql() or f"NULL::{c.physical.duck}"

    group = ", ".join(f"v.c{c.phys}" for c in keys)
    on = " AND ".join(f"{{0}}.c{c.phys} = {{1}}.c{c.phys}" for c in keys)
    untouched = [
        f'v.c{c.phys} AS "{c.name}"' if c.key or c in kept else f'{absent(c)} AS "{c.name}"'
        for c in cols
    ]
    merged = [
        f'CASE WHEN {written(c, "d._w")} THEN d.c{c.phys} ELSE ck.c{c.phys} END AS "{c.name}"'
        if c in kept
        else f'd.c{c.phys} AS "{c.name}"'
        if c.key or c.missing is None
        else f'CASE WHEN {written(c, "d._w")} THEN d.c{c.phys} ELSE {absent(c)} END AS "{c.name}"'
        for c in cols
    ]
    ck = ", ".join(f"c{c.phys}" for c in keys + kept)
    return (
        f"WITH _d AS (SELECT {', '.join(delta)} FROM {t.hist} v {join} "
        f"WHERE v._pos > {cp.pos} AND v._pos <= {int(b)} AND v._op <> {Op.TRUNCATE}{extra} "
        f"GROUP BY {group}) "
        f"SELECT {', '.join(untouched)} FROM {t.ckpt} v {join} "
        f"ANTI JOIN _d ON {on.format('v', '_d')} WHERE v._cp = {cp.pos}{extra} "
        f"UNION ALL SELECT {', '.join(merged)} FROM _d d "
        f"LEFT JOIN (SELECT {ck} FROM {t.ckpt} v WHERE v._cp = {cp.pos}{extra}) ck "
        f"ON {on.format('d', 'ck')} "
        f"WHERE d._op <> {Op.DELETE}"
    )


@dataclass
class Plan:
    name: str
    cost: float
    sql: str


def plans(con: duckdb.DuckDBPyConnection, t: Table, b: int, cols: list[PhysColumn]) -> list[Plan]:
    """Every plan that can answer the whole table at ``b`` (``cols``: keys first), cheapest
    first. Costs are rows weighted by what is done to them; the counts come from ``_pos``
    ranges, which zone maps answer without reading much."""
    keys = key_columns(t, cols)
    t0 = last_truncate(t, b)
    cp = checkpoint_at(t, b, keys)

    def rows(lo: int, hi: int | None = None) -> int:
        sql = f"SELECT count(*) FROM {t.hist} WHERE _pos > {int(lo)}"
        got = first(
            con.execute(sql + (f" AND _pos <= {int(hi)}" if hi is not None else "")).fetchall()
        )
        return int(got[0]) if got else 0

    n_fold = rows(t0, b)
    out = [Plan("fold", float(AGG * n_fold), state(t, cols, b, None, t0))]
    n_since = rows(cp.pos, b) if cp else 0
    if cp is not None:
        cost = float(AGG * n_since + CKPT * cp.rows)
        out.append(Plan("checkpoint", cost, state(t, cols, b, cp)))
    # the head is keyed by today's key columns; a key retyped after b is not in b's rows
    same_keys = [c.phys for c in keys] == [c.phys for c in t.key_columns]
    if same_keys and bisect.bisect_right(t.truncates, b) == len(t.truncates):  # no TRUNCATE after b
        got = first(con.execute(f"SELECT count(*) FROM {t.head}").fetchall())
        n_head = int(got[0]) if got else 0
        n_after = rows(b)
        # the touched keys' state at b: their versions are found in a scan of the range,
        # and folded; changes after b touch about this share of the keys (skew makes it less)
        share = min(1.0, n_after / max(1, n_head))
        n_range = n_since if cp else n_fold
        cost = DISTINCT * n_after + HEAD * n_head + (SCAN + AGG * share) * n_range
        cost += CKPT * cp.rows if cp else 0
        out.append(Plan("head", cost, _from_head(t, b, cols, cp, t0)))
    return sorted(out, key=lambda p: p.cost)


def _from_head(t: Table, b: int, cols: list[PhysColumn], cp: Checkpoint | None, t0: int) -> str:
    keys = key_columns(t, cols)
    touched = ", ".join(f"c{c.phys} AS _k{j}" for j, c in enumerate(keys))
    sel = ", ".join(
        f's.c{c.phys} AS "{c.name}"'
        if c.key
        else f'{c.physical.cast(f"s.c{c.phys}")} AS "{c.name}"'
        for c in cols
    )
    semi = "SEMI JOIN _touched k ON " + " AND ".join(
        f"v.c{c.phys} = k._k{j}" for j, c in enumerate(keys)
    )
    anti = " AND ".join(f"s.c{c.phys} = k._k{j}" for j, c in enumerate(keys))
    return (
        f"WITH _touched AS (SELECT DISTINCT {touched} FROM {t.hist} "
        f"WHERE _pos > {int(b)} AND _op <> {Op.TRUNCATE}) "
        f"SELECT {sel} FROM {t.head} s ANTI JOIN _touched k ON {anti} "
        f"UNION ALL SELECT * FROM ({state(t, cols, b, cp, t0, join=semi)})"
    )
