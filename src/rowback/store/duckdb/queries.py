"""Time-travel queries over the embedded store's differential history.

Every point in time becomes a *bound*: the last store position (``_pos``) it includes.
A row's state at a bound is, per column, the newest value written at or before it
(``arg_max_null`` over versions whose mask bit says "written"), unless the row's newest
version is a delete or a TRUNCATE came after it. Values leave SQL through
``Physical.output``, so a date Python cannot hold arrives as PostgreSQL's text.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from rowback.errors import BadParameter, NotFound, RowbackError
from rowback.filters import SQL_SYMBOL, Filter
from rowback.filters import Op as FilterOp
from rowback.model import Op
from rowback.store.base import Image, Result
from rowback.store.duckdb import states
from rowback.store.duckdb.catalog import (
    MASK_BITS,
    PhysColumn,
    Table,
    first,
    reverting,
    unregister,
)
from rowback.timetravel import key_values
from rowback.when import AtLsn, AtTime, BeforeTx, Point, format_lsn


def bound(con: duckdb.DuckDBPyConnection, point: Point) -> int:
    """The last store position included in ``point``."""
    if isinstance(point, AtTime):
        got = first(
            con.execute("SELECT max(pos_hi) FROM _rb_tx WHERE ts <= ?", [point.ts]).fetchall()
        )
    elif isinstance(point, AtLsn):
        got = first(
            con.execute("SELECT max(pos_hi) FROM _rb_tx WHERE lsn <= ?", [point.lsn]).fetchall()
        )
    elif isinstance(point, BeforeTx):
        sql = "SELECT min(pos_lo) - 1, count(DISTINCT source) FROM _rb_tx WHERE txid = ?"
        args: list[object] = [point.txid]
        if point.source is not None:
            sql += " AND source = ?"
            args.append(point.source)
        got = first(con.execute(sql, args).fetchall())
        if got is None or got[0] is None:
            whose = f" of source {point.source!r}" if point.source else ""
            raise NotFound(f"transaction {point.txid}{whose} is not in the store")
        if int(got[1]) > 1:
            raise BadParameter(
                "at",
                f"tx:{point.txid} is a transaction of more than one source: "
                f"say whose, tx:SOURCE:{point.txid}",
            )
    else:  # pragma: no cover - Point is a closed union
        raise TypeError(point)
    return int(got[0]) if got and got[0] is not None else 0


def _hints(cols: Sequence[PhysColumn]) -> dict[str, str]:
    return {c.name: h for c in cols if (h := c.physical.hint)}


def asof(
    con: duckdb.DuckDBPyConnection,
    t: Table,
    point: Point,
    where: Sequence[Filter] = (),
    plan: str | None = None,
) -> Result:
    """The whole table at ``point``, by the cheapest plan (``plan`` forces one, for tests)."""
    b = bound(con, point)
    _known_at(con, t, b)
    cols = [c for c in t.columns if c.alive_at(max(b, t.created_pos))]
    order = [c for c in cols if c.key] + [c for c in cols if not c.key]
    keys = [c for c in order if c.key]
    choices = states.plans(con, t, b, order)
    if plan is not None:
        choices = [p for p in choices if p.name == plan]
        if not choices:
            raise RowbackError(f"plan {plan!r} cannot answer {t.qualified} at position {b}")
    # filters and the order see the typed columns; only what is returned is output
    name = t.name
    outs = ", ".join(f"{c.physical.output(f'{name}.{_q(c)}')} AS {_q(c)}" for c in order)
    cond, params = _conditions(t, name, order, where)
    sql = f"SELECT {outs} FROM ({choices[0].sql}) AS {name}" + (f" WHERE {cond}" if cond else "")
    sql += " ORDER BY " + ", ".join(f"{name}.{_q(c)}" for c in keys)
    try:
        cur = con.execute(sql, params)
    except duckdb.Error as e:
        shown = " AND ".join(f.as_param() for f in where)
        raise BadParameter("filter", f"{shown}: {str(e).splitlines()[0]}") from None
    return Result([c.name for c in order], _fetch(cur), _hints(order))


def _known_at(con: duckdb.DuckDBPyConnection, t: Table, b: int) -> None:
    """Refuse a bound before the snapshot ``t``'s history begins with: what the table held
    then was never seen, and answering "no rows" would be a lie a revert could act on. A
    table whose history begins with an insert was created under capture: before it, it
    did not exist, and no rows is the truth."""
    first_version = con.execute(
        f"SELECT _pos, _lsn, _ts, _op FROM {t.hist} ORDER BY _pos LIMIT 1"
    ).fetchall()
    if not first_version:
        return
    pos, lsn, ts, op = first_version[0]
    if op == Op.SNAPSHOT and b < pos:
        when = ts.isoformat() if ts is not None else "?"
        raise BadParameter(
            "at",
            f"{t.qualified} has no history before its snapshot at LSN {format_lsn(lsn)} "
            f"({when}): the point asked for is earlier",
        )


def _conditions(
    t: Table, alias: str, cols: Sequence[PhysColumn], where: Sequence[Filter]
) -> tuple[str, list[object]]:
    """SQL for ``where`` over ``alias``'s typed columns, every value a bound parameter."""
    by_name = {c.name: c for c in cols}
    parts: list[str] = []
    params: list[object] = []
    for f in where:
        c = by_name.get(f.column)
        if c is None:
            names = ", ".join(by_name)
            raise BadParameter(
                "filter", f"{t.qualified} has no column {f.column!r} (columns: {names})"
            )
        col = f"{alias}.{_q(c)}"

        def bind(value: object) -> str:
            # numbered, not ``?``: a cast may use its text more than once (BC dates)
            params.append(value)
            return f"${len(params)}"

        if f.op is FilterOp.isnull:
            parts.append(f"{col} IS NULL")
        elif f.op is FilterOp.notnull:
            parts.append(f"{col} IS NOT NULL")
        elif f.op is FilterOp.in_:
            assert isinstance(f.value, tuple)
            items = [c.physical.cast(bind(v)) for v in f.value]
            parts.append(f"{col} IN ({', '.join(items)})" if items else "false")
        elif f.op is FilterOp.like:
            parts.append(f"CAST({col} AS VARCHAR) LIKE {bind(f.value)}")
        else:
            parts.append(f"{col} {SQL_SYMBOL[f.op]} {c.physical.cast(bind(f.value))}")
    return " AND ".join(parts), params


def _q(c: PhysColumn) -> str:
    return f'"{c.name}"'


def _equals(c: PhysColumn, text: str) -> str:
    """SQL: a version's (alias ``v``) ``c`` equals the key text ``text`` (an expression)."""
    return f"v.c{c.phys} = {c.physical.cast(text)}"


def _literal(text: object) -> str:
    """A SQL string literal (keys are inlined: DuckDB then prunes the scan by them)."""
    return "NULL" if text is None else "'" + str(text).replace("'", "''") + "'"


def _fetch(cur: duckdb.DuckDBPyConnection, size: int = 10_000) -> Iterator[tuple[Any, ...]]:
    while rows := cur.fetchmany(size):
        yield from rows


def _version_sql(t: Table, where: str, key_text: bool = False) -> str:
    """Version rows: position, LSN, txid, time, op, masks, every column (as Python gets
    it), and with ``key_text`` the key columns' text, which casts back exactly."""
    masks = ", ".join(f"_m{w}" for w in range(t.mask_words()))
    vals = ", ".join(c.physical.output(f"c{c.phys}") for c in t.columns)
    if key_text:
        vals += "".join(f", {c.physical.text(f'c{c.phys}')}" for c in t.columns if c.key)
    return (
        f"SELECT _pos, _lsn, _txid, _ts, _op, {masks}, {vals} FROM {t.hist} "
        f"WHERE {where} ORDER BY _pos"
    )


class _Folder:
    """Replays versions of rows into full before/after images: values as Python gets them,
    each with the hint of the physical column it was read from; the edge renders them."""

    def __init__(self, t: Table, con: duckdb.DuckDBPyConnection) -> None:
        self.t = t
        self.words = t.mask_words()
        self.base = 5 + self.words
        # what rows older than an added column read in it (``PhysColumn.missing``)
        self.missing = Image()
        for c in t.columns:
            if (lit := c.missing_sql()) is not None:
                got = first(con.execute(f"SELECT {c.physical.output(lit)}").fetchall())
                self.missing.put(c.name, got[0] if got else None, c.physical.hint)

    def decode(self, r: Sequence[Any]) -> tuple[Op, Image, Image]:
        """The op, the key, and the written columns of one version row."""
        op = Op(r[4])
        mask = 0
        for w in range(self.words):
            mask |= int(r[5 + w] or 0) << (w * MASK_BITS)
        key = Image()
        written = Image()
        for c in self.t.columns:
            v = r[self.base + c.phys]
            if c.key and c.alive_at(int(r[0])):  # the key of this version's generation
                key.put(c.name, v, c.physical.hint)
            if (mask >> c.phys) & 1:
                written.put(c.name, v, c.physical.hint)
        return op, key, written

    def step(
        self, state: Image | None, op: Op, written: Image, pos: int
    ) -> tuple[Image | None, Image | None]:
        """Apply one version to ``state``; return (before, after)."""
        if op in (Op.DELETE, Op.TRUNCATE):
            return state, None
        alive = [c.name for c in self.t.columns if c.alive_at(pos)]
        after = Image()
        if op in (Op.INSERT, Op.SNAPSHOT) or state is None:
            for n in alive:
                after.put(n, written.get(n), written.types.get(n))
            return (None if op != Op.UPDATE else state), after
        for n in alive:
            # each value keeps the hint it was read with (a retyped column has two)
            src = written if n in written else state if n in state else self.missing
            after.put(n, src.get(n), src.types.get(n))
        return state, after


def history(con: duckdb.DuckDBPyConnection, t: Table, key: Sequence[str]) -> Result:
    """Every version of one row, oldest first."""
    keys = t.key_columns
    key = key_values(t.qualified, [c.name for c in keys], key)
    try:
        # one query per key generation (a retyped key is a new physical column), and the
        # TRUNCATEs apart: an OR keeps DuckDB from pushing the key filter into the scan
        rows = []
        for gen in _key_generations(t):
            # a key of today's type may not fit an older one: that generation lacks it
            old = gen != keys
            match = " AND ".join(
                f"c{c.phys} = TRY_CAST(${i + 1} AS {c.physical.duck})"
                if old
                else f"c{c.phys} = {c.physical.cast(f'${i + 1}')}"
                for i, c in enumerate(gen)
            )
            rows += con.execute(_version_sql(t, match), list(key)).fetchall()
        rows.sort(key=lambda r: r[0])
        if t.truncates:  # the catalog knows where they are: skip the query when there are none
            truncates = con.execute(_version_sql(t, f"_op = {Op.TRUNCATE}")).fetchall()
            rows = sorted(rows + truncates, key=lambda r: r[0])
    except duckdb.ConversionException as e:
        raise BadParameter("key", f"--key {','.join(key)}: {str(e).splitlines()[0]}") from None
    folder = _Folder(t, con)
    out: list[tuple[object, ...]] = []
    state: Image | None = None
    labels = reverting(con)
    for r in rows:
        op, _, written = folder.decode(r)
        if op is Op.TRUNCATE and state is None:
            continue
        before, after = folder.step(state, op, written, r[0])
        changed = sorted(written) if op is Op.UPDATE else []
        label = labels.get((t.source, r[2]))
        out.append((r[3], r[2], format_lsn(r[1]), op.label, before, after, changed, label))
        state = after
    cols = ["time", "txid", "lsn", "op", "before", "after", "changed", "reversion"]
    return Result(cols, out, {"before": "row", "after": "row", "changed": "changed"})


def _key_generations(t: Table) -> list[list[PhysColumn]]:
    """The sets of key columns the table has had (more than one after a key was retyped)."""
    gens = [_keys_at(t, p) for p in sorted({c.added_pos for c in t.columns if c.key})]
    return [g for i, g in enumerate(gens) if g not in gens[:i]]


def _keys_at(t: Table, pos: int) -> list[PhysColumn]:
    """The key columns of versions at ``pos``, in today's key order (a retyped key column
    moves to the end of the physical order)."""
    names = [c.name for c in t.key_columns]
    alive = [c for c in t.columns if c.key and c.alive_at(pos)] or t.key_columns
    return sorted(alive, key=lambda c: names.index(c.name) if c.name in names else len(names))


def pos_range(
    con: duckdb.DuckDBPyConnection, since: Point | None, until: Point | None
) -> tuple[int, int]:
    lo = bound(con, since) + 1 if since is not None else 0
    hi = bound(con, until) if until is not None else 2**63
    return lo, hi


def changes(
    con: duckdb.DuckDBPyConnection,
    tables: list[Table],
    since: Point | None,
    until: Point | None,
    txid: int | None,
    upto: int | None = None,
) -> Result:
    """The change log across ``tables`` in commit order: what each change wrote (up to
    position ``upto``: what the caller's snapshot holds)."""
    lo, hi = pos_range(con, since, until)
    if upto is not None:
        hi = min(hi, upto)
    where = f"_pos BETWEEN {lo} AND {hi}"
    if txid is not None:
        where += f" AND _txid = {int(txid)}"
    labels = reverting(con)
    streams = [_change_rows(con, t, where, labels) for t in tables]
    merged = (r[1:] for r in heapq.merge(*streams, key=lambda r: r[0]))
    cols = ["time", "txid", "lsn", "table", "op", "key", "changed", "reversion"]
    return Result(cols, merged, {"key": "row", "changed": "row"})


def _change_rows(
    con: duckdb.DuckDBPyConnection, t: Table, where: str, labels: dict[tuple[str, int], str]
) -> Iterator[tuple[Any, ...]]:
    folder = _Folder(t, con)
    cur = con.cursor()
    cur.execute(_version_sql(t, where))
    for r in _fetch(cur):
        op, key, written = folder.decode(r)
        label = labels.get((t.source, r[2]))
        yield (r[0], r[3], r[2], format_lsn(r[1]), t.qualified, op.label, key, written, label)


def tx(
    con: duckdb.DuckDBPyConnection, tables: list[Table], txid: int, source: str | None = None
) -> Result:
    """Everything one transaction did, with full before and after images. Transaction
    ids are a source's own (every Debezium snapshot event says 0): ``source`` narrows."""
    sql = "SELECT min(pos_lo), max(pos_hi), count(DISTINCT source) FROM _rb_tx WHERE txid = ?"
    args: list[object] = [txid]
    if source is not None:
        sql += " AND source = ?"
        args.append(source)
    ranges = first(con.execute(sql, args).fetchall())
    if not ranges or ranges[0] is None:
        where = f" of source {source!r}" if source else ""
        raise NotFound(f"transaction {txid}{where} is not in the store")
    if source is None and int(ranges[2]) > 1:
        names = ", ".join(
            r[0]
            for r in con.execute(
                "SELECT DISTINCT source FROM _rb_tx WHERE txid = ? ORDER BY 1", [txid]
            ).fetchall()
        )
        raise BadParameter(
            "source", f"transaction {txid} is in more than one source ({names}): give --source"
        )
    lo, hi = int(ranges[0]), int(ranges[1])
    out: list[tuple[Any, ...]] = []
    for t in tables:
        out.extend(_tx_rows(con, t, lo, hi, txid))
    out.sort(key=lambda r: r[0])
    labels = reverting(con)
    label = next((labels[(t.source, txid)] for t in tables if (t.source, txid) in labels), None)
    cols = ["time", "lsn", "table", "op", "key", "before", "after", "changed", "reversion"]
    rows = [(*r[1:], label) for r in out]
    return Result(cols, rows, {"key": "row", "before": "row", "after": "row", "changed": "changed"})


def _tx_rows(
    con: duckdb.DuckDBPyConnection, t: Table, lo: int, hi: int, txid: int
) -> list[tuple[Any, ...]]:
    rows = con.execute(
        _version_sql(t, f"_pos BETWEEN {lo} AND {hi} AND _txid = {int(txid)}", key_text=True)
    ).fetchall()
    if not rows:
        return []
    folder = _Folder(t, con)
    states = _states_before(con, t, rows, lo, folder.base + len(t.columns))
    out = []
    for r in rows:
        op, key, written = folder.decode(r)
        k = tuple(r[folder.base + c.phys] for c in _keys_at(t, r[0]))
        before, after = folder.step(states.get(k), op, written, r[0])
        if op is Op.TRUNCATE:
            before, key = None, Image()
        states[k] = after
        changed = sorted(written) if op is Op.UPDATE else []
        out.append(
            (r[0], r[3], format_lsn(r[1]), t.qualified, op.label, key, before, after, changed)
        )
    return out


def _states_before(
    con: duckdb.DuckDBPyConnection,
    t: Table,
    rows: list[tuple[Any, ...]],
    lo: int,
    texts: int,
) -> dict[tuple[Any, ...], Image | None]:
    """Full rows just before position ``lo`` for every key the versions in ``rows`` (key
    texts from column ``texts`` on) touch, keyed as those rows give their keys."""
    every = [c for c in t.columns if c.key]  # the key texts are of these, in this order
    b = lo - 1
    keys = _keys_at(t, b)  # the key the state before has (older than a retype in ``rows``)
    names = [c.name for c in keys]
    wanted = set()
    for r in rows:
        if r[4] == Op.TRUNCATE:
            continue
        text = {c.name: r[texts + i] for i, c in enumerate(every) if c.alive_at(r[0])}
        wanted.add(tuple(text.get(n) for n in names))
    if not wanted:
        return {}
    cols = [c for c in t.columns if c.alive_at(b)]
    order = keys + [c for c in cols if not c.key]
    # the state just before the transaction: the nearest checkpoint's rows for these keys
    # plus their versions since, folded in SQL, instead of replaying all earlier versions
    cp = states.checkpoint_at(t, b, keys)
    lo0 = states.last_truncate(t, b)
    outs = ", ".join(c.physical.output(f"_s.{_q(c)}") for c in order) or "*"  # no table yet
    if len(wanted) <= 64:  # a short OR list lets DuckDB push the filter into the scan
        match = " OR ".join(
            "(" + " AND ".join(_equals(c, _literal(v)) for c, v in zip(keys, k, strict=True)) + ")"
            for k in wanted
        )
        sql = states.state(t, order, b, cp, lo0, where=match)
        prior = con.execute(f"SELECT {outs} FROM ({sql}) AS _s").fetchall()
    else:
        kcols = list(zip(*wanted, strict=True))
        want = {f"k{i}": pa.array(v, pa.string()) for i, v in enumerate(kcols)}
        con.register("_rb_want", pa.table(want))
        try:
            on = " AND ".join(_equals(c, f"w.k{i}") for i, c in enumerate(keys))
            sql = states.state(t, order, b, cp, lo0, join=f"SEMI JOIN _rb_want w ON {on}")
            prior = con.execute(f"SELECT {outs} FROM ({sql}) AS _s").fetchall()
        finally:
            unregister(con, "_rb_want")
    nkeys = len([c for c in order if c.key])
    hints = _hints(order)
    found: dict[tuple[Any, ...], Image | None] = {}
    for r in prior:
        found[tuple(r[:nkeys])] = Image({c.name: v for c, v in zip(order, r, strict=True)}, hints)
    return found
