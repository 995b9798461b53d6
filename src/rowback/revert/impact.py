"""How much an incident hurts: the rows, keys, tables and columns it touched and the
share of each table, the size of the change (numeric deltas, values before and after),
the later transactions a revert would meet, rows elsewhere that reference the damaged
rows, what ``ON DELETE CASCADE`` took along, and how fast it spreads.

Everything comes from the shadow (each touched row's versions, as the revert planner
reads them); only the references need the source catalog (a DSN), since the shadow does
not know the foreign keys.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rowback.model import Op, Text
from rowback.store.base import Incident, Reader, TableVersions

MAX_EXAMPLES = 5


@dataclass
class _Numeric:
    n: int = 0
    total: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")
    before: list[float] = field(default_factory=list)
    after: list[float] = field(default_factory=list)

    def add(self, was: float, now: float) -> None:
        d = now - was
        self.n += 1
        self.total += d
        self.low, self.high = min(self.low, d), max(self.high, d)
        self.before.append(was)
        self.after.append(now)

    def doc(self) -> dict[str, Any]:
        return {
            "cells": self.n,
            "delta_sum": round(self.total, 6),
            "delta_min": self.low,
            "delta_max": self.high,
            "before": [min(self.before), max(self.before)],
            "after": [min(self.after), max(self.after)],
        }


def impact(reader: Reader, inc: Incident, target: str | None = None) -> dict[str, Any]:
    """The incident's impact as plain data (``incidents show``, alerts, the API)."""
    got = reader.touched_versions(inc.txids, inc.source)
    live = {t.qualified: t.live_rows for t in reader.tables() if t.source == inc.source}
    ours = set(inc.txids)
    tables = []
    numeric: dict[str, _Numeric] = {}
    examples: list[dict[str, Any]] = []
    later: Counter[int] = Counter()
    conflicts: Counter[int] = Counter()
    deleted: dict[str, list[tuple[Text, ...]]] = {}
    for tv in got:
        doc = _table(tv, ours, numeric, examples, (later, conflicts), deleted)
        rows = doc["rows"]
        doc["share"] = round(rows / max(live.get(tv.table, 0) + doc["deleted"], rows, 1), 4)
        tables.append(doc)
    minutes = max((inc.last_us - inc.first_us) / 60e6, 1 / 60)
    rate = inc.rows_affected / minutes
    spread: dict[str, Any] = {}
    if len(inc.txids) > 1 and tables:
        spread["rows_per_minute"] = round(rate, 1)
        left = max(live.get(t["table"], 0) - t["rows"] for t in tables)
        spread["minutes_to_whole_table"] = round(left / rate, 1) if rate else None
    out: dict[str, Any] = {
        "tables": tables,
        "rows": sum(t["rows"] for t in tables),
        "numeric": {k: v.doc() for k, v in numeric.items()},
        "examples": examples,
        "later": [
            {"txid": t, "rows": n, "conflicting_rows": conflicts.get(t, 0)}
            for t, n in sorted(later.items())
        ],
        "spread": spread,
        "severity": inc.severity,
    }
    if target is not None:
        out.update(_references(target, deleted, {t["table"]: t for t in tables}))
    for t in tables:
        del t["_keys"]
    return out


def _table(
    tv: TableVersions,
    ours: set[int],
    numeric: dict[str, _Numeric],
    examples: list[dict[str, Any]],
    later_by: tuple[Counter[int], Counter[int]],
    deleted: dict[str, list[tuple[Text, ...]]],
) -> dict[str, Any]:
    """One table's part; ``later_by``: rows each later transaction touched, and rows
    where it wrote a cell the incident wrote (what a revert would conflict with)."""
    later, conflicts = later_by
    ops: Counter[str] = Counter()
    columns: Counter[str] = Counter()
    keys: list[Any] = []
    for rv in tv.rows:
        state: dict[str, Text] | None = None
        touched = False
        first_before: dict[str, Text] | None = None
        wrote: set[str] = set()
        for v in rv.versions:
            mine = v.txid in ours
            before = dict(state) if state is not None else None
            state = _step(state, v.op, v.written)
            if mine:
                if not touched:
                    first_before = before
                touched = True
                ops[v.op.label] += 1
                wrote.update(v.written)
                if v.op == Op.DELETE:
                    deleted.setdefault(tv.table, []).append(rv.key)
                if v.op == Op.UPDATE and before is not None and state is not None:
                    for c, now in v.written.items():
                        if before.get(c) == now:
                            continue
                        columns[c] += 1
                        was = _number(before.get(c))
                        num = _number(now)
                        if was is not None and num is not None:
                            numeric.setdefault(f"{tv.table}.{c}", _Numeric()).add(was, num)
            elif touched:
                later[v.txid] += 1
                if v.op != Op.UPDATE or wrote & set(v.written):
                    conflicts[v.txid] += 1
        if touched:
            keys.append(list(rv.key))
            if len(examples) < MAX_EXAMPLES:
                examples.append(
                    {"table": tv.table, "key": list(rv.key), "before": first_before, "after": state}
                )
    return {
        "table": tv.table,
        "rows": len([r for r in tv.rows if any(v.txid in ours for v in r.versions)]),
        "inserted": ops["insert"],
        "updated": ops["update"],
        "deleted": ops["delete"],
        "columns": dict(columns.most_common()),
        "keys": keys[:MAX_EXAMPLES],
        "key_columns": list(tv.key),
        "_keys": keys,
    }


def _step(state: dict[str, Text] | None, op: Op, written: Any) -> dict[str, Text] | None:
    if op in (Op.DELETE, Op.TRUNCATE):
        return None
    if op in (Op.INSERT, Op.SNAPSHOT) or state is None:
        return dict(written)
    return {**state, **written}


def _number(v: Text) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except ValueError:
        return None
    return f if f == f and abs(f) != float("inf") else None


_REFERENCES = """
SELECT cn.nspname || '.' || cl.relname, pn.nspname || '.' || pl.relname,
       array_agg(ca.attname ORDER BY u.i), array_agg(pa.attname ORDER BY u.i),
       k.confdeltype::text
FROM pg_constraint k
JOIN pg_class cl ON cl.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = cl.relnamespace
JOIN pg_class pl ON pl.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = pl.relnamespace
CROSS JOIN LATERAL unnest(k.conkey, k.confkey) WITH ORDINALITY AS u(c, p, i)
JOIN pg_attribute ca ON ca.attrelid = k.conrelid AND ca.attnum = u.c
JOIN pg_attribute pa ON pa.attrelid = k.confrelid AND pa.attnum = u.p
WHERE k.contype = 'f'
GROUP BY 1, 2, k.oid, k.confdeltype
"""


def _references(
    target: str, deleted: dict[str, list[tuple[Text, ...]]], tables: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Rows of other tables that reference the damaged rows now (single-column foreign
    keys onto the key), and the children an ``ON DELETE CASCADE`` removed with them."""
    from rowback.sources.postgres.source_catalog import connect

    refs: list[dict[str, Any]] = []
    cascaded: list[dict[str, Any]] = []
    conn = connect(target)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(_REFERENCES)
            fks: Sequence[tuple[Any, ...]] = cur.fetchall()
            for child, parent, ccols, pcols, deltype in fks:
                t = tables.get(parent)
                if t is None:
                    continue
                if deltype == "c" and parent in deleted and child in tables:
                    cascaded.append(
                        {"table": child, "parent": parent, "rows": tables[child]["deleted"]}
                    )
                if len(ccols) != 1 or list(pcols) != t["key_columns"]:
                    continue
                keys = [k[0] for k in t["_keys"]]
                cur.execute(
                    f'SELECT count(*) FROM {_ident(child)} WHERE "{ccols[0]}"::text = ANY(%s)',
                    [keys],
                )
                row = cur.fetchone()
                n = int(row[0]) if row else 0
                if n:
                    refs.append({"table": child, "parent": parent, "rows": n})
    finally:
        conn.close()
    return {"referencing": refs, "cascaded": cascaded}


def _ident(qualified: str) -> str:
    schema, name = qualified.split(".", 1)
    return '"' + schema.replace('"', '""') + '"."' + name.replace('"', '""') + '"'
