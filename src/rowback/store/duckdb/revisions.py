"""The versions a revert plans from: every row some transactions wrote, with its whole
history, as PostgreSQL text (``Physical.text``), which the reverse SQL casts back exactly.

Nothing is rendered here: the planner compares the texts and the SQL quotes them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb

from rowback.errors import BadParameter, NotFound, RowbackError
from rowback.model import Op, Text
from rowback.store.base import RowVersions, TableVersions, Version
from rowback.store.duckdb.catalog import MASK_BITS, Table


def touched_versions(
    con: duckdb.DuckDBPyConnection,
    tables: Sequence[Table],
    txids: Sequence[int],
    source: str | None = None,
    chunk_rows: int | None = None,
) -> Iterator[TableVersions]:
    """For each table, the rows ``txids`` wrote, each with all its versions oldest first
    (TRUNCATEs of the table included in every row's list); a table in parts of about
    ``chunk_rows`` rows when given. Unknown txids fail here, before anything is read."""
    wanted = sorted({int(x) for x in txids})
    sources = _sources_of(con, wanted, source)
    chosen = [
        t for t in sorted(tables, key=lambda t: (t.source, t.schema, t.name)) if t.source in sources
    ]
    return _all_versions(con, chosen, wanted, chunk_rows)


def _all_versions(
    con: duckdb.DuckDBPyConnection, tables: list[Table], txids: list[int], chunk_rows: int | None
) -> Iterator[TableVersions]:
    for t in tables:
        for got in _table_versions(con, t, txids, chunk_rows):
            if got.rows:
                yield got


def _sources_of(con: duckdb.DuckDBPyConnection, txids: list[int], source: str | None) -> set[str]:
    """The source the transactions are of; one line for an unknown or ambiguous txid."""
    found: set[str] = set()
    for txid in txids:
        names = {
            str(r[0])
            for r in con.execute(
                "SELECT DISTINCT source FROM _rb_tx WHERE txid = ?", [txid]
            ).fetchall()
        }
        if source is not None:
            names &= {source}
        if not names:
            whose = f" of source {source!r}" if source else ""
            raise NotFound(f"transaction {txid}{whose} is not in the store")
        if len(names) > 1:
            raise BadParameter(
                "source", f"transaction {txid} is in more than one source: give --source"
            )
        found |= names
    return found


def _table_versions(
    con: duckdb.DuckDBPyConnection, t: Table, txids: list[int], chunk_rows: int | None
) -> Iterator[TableVersions]:
    """The table's touched rows in parts: the rows are split by a hash of their key, so
    each part is one pass over the history with a bounded result, and a row's versions
    are all in its part."""
    keys = t.key_columns
    ids = ", ".join(str(x) for x in txids)
    kcols = ", ".join(f"c{c.phys}" for c in keys)
    cut = con.execute(
        f"SELECT _txid FROM {t.hist} WHERE _txid IN ({ids}) AND _op = {Op.TRUNCATE} LIMIT 1"
    ).fetchall()
    if cut:
        raise RowbackError(
            f"tx {cut[0][0]} truncated {t.qualified}: reverting a TRUNCATE is not built yet"
        )
    touched = (
        f"SELECT DISTINCT {kcols} FROM {t.hist} WHERE _txid IN ({ids}) AND _op <> {Op.TRUNCATE}"
    )
    parts = 1
    if chunk_rows is not None:
        got = con.execute(f"SELECT count(*) FROM ({touched})").fetchall()
        parts = max(1, math.ceil(int(got[0][0]) / max(chunk_rows, 1)))
    truncates = con.execute(
        f"SELECT _pos, _txid FROM {t.hist} WHERE _op = {Op.TRUNCATE} ORDER BY _pos"
    ).fetchall()
    epochs = _Epochs(t)
    for part in range(parts):
        where = f" WHERE hash({kcols}) % {parts} = {part}" if parts > 1 else ""
        yield _part(con, t, f"SELECT * FROM ({touched}){where}", truncates, epochs)


def _part(
    con: duckdb.DuckDBPyConnection,
    t: Table,
    touched: str,
    truncates: list[tuple[Any, ...]],
    epochs: _Epochs,
) -> TableVersions:
    keys = t.key_columns
    on = " AND ".join(f"v.c{c.phys} = k.c{c.phys}" for c in keys)
    masks = ", ".join(f"v._m{w}" for w in range(t.mask_words()))
    texts = ", ".join(c.physical.text(f"v.c{c.phys}") for c in t.columns)
    sql = (
        f"WITH k AS ({touched}) "
        f"SELECT v._pos, v._txid, v._op, {masks}, {texts} FROM {t.hist} v SEMI JOIN k ON {on} "
        f"ORDER BY {', '.join(f'v.c{c.phys}' for c in keys)}, v._pos"
    )
    rows = con.execute(sql).fetchall()
    words = t.mask_words()
    base = 3 + words
    key_at = [base + c.phys for c in keys]
    by_key: dict[tuple[Text, ...], list[Version]] = {}
    for r in rows:
        key = tuple(r[i] for i in key_at)
        by_key.setdefault(key, []).append(_version(epochs, r, words, base))
    del rows
    out = []
    for key, versions in by_key.items():
        cuts = [
            Version(int(pos), int(txid), Op.TRUNCATE, {}, epochs.at(int(pos))[0])
            for pos, txid in truncates
            if int(pos) > versions[0].pos
        ]
        merged = sorted([*versions, *cuts], key=lambda v: v.pos) if cuts else versions
        out.append(RowVersions(key, tuple(merged)))
    return TableVersions(
        t.source,
        t.qualified,
        tuple((c.name, c.pg_type) for c in t.alive),
        tuple(c.name for c in keys),
        tuple(out),
        {c.name: c.missing for c in t.alive if c.missing is not None},
    )


class _Epochs:
    """The columns alive at a position, per span between schema changes: the same for
    every version in a span, so worked out once per span, not per version (a revert of
    1M rows reads millions of versions)."""

    def __init__(self, t: Table) -> None:
        self._t = t
        self._cuts = sorted(
            {c.added_pos for c in t.columns}
            | {c.dropped_pos for c in t.columns if c.dropped_pos is not None}
        )
        self._spans: dict[int, tuple[tuple[str, ...], tuple[tuple[int, str], ...]]] = {}

    def at(self, pos: int) -> tuple[tuple[str, ...], tuple[tuple[int, str], ...]]:
        """Names of the columns alive at ``pos``, and their (phys, name)."""
        span = bisect.bisect_right(self._cuts, pos)
        got = self._spans.get(span)
        if got is None:
            alive = [c for c in self._t.columns if c.alive_at(pos)]
            got = (tuple(c.name for c in alive), tuple((c.phys, c.name) for c in alive))
            self._spans[span] = got
        return got


def _version(epochs: _Epochs, r: Sequence[Any], words: int, base: int) -> Version:
    pos, op = int(r[0]), Op(r[2])
    mask = 0
    for w in range(words):
        mask |= int(r[3 + w] or 0) << (w * MASK_BITS)
    names, alive = epochs.at(pos)
    written: dict[str, Text] = {}
    if op not in (Op.DELETE, Op.TRUNCATE):
        for phys, name in alive:
            if (mask >> phys) & 1:
                v = r[base + phys]
                written[name] = None if v is None else str(v)
    return Version(pos, int(r[1]), op, written, names)
