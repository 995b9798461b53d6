"""What detection and the policy would say about a statement before it runs (``whatif``):
its would-be changes are judged by the detectors as they stand in the store, on a
throwaway copy (nothing is learned, no incident is opened).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import rowback.policy as pol
from rowback.detect.base import Signal
from rowback.detect.engine import Engine
from rowback.detect.features import tx_features
from rowback.detect.registry import default_detectors
from rowback.detect.watch import PolicyRules
from rowback.model import Change, Column, Op, TableSchema
from rowback.store.base import Reader
from rowback.whatif import diff

_OPS = {diff.Op.insert: Op.INSERT, diff.Op.update: Op.UPDATE, diff.Op.delete: Op.DELETE}


def verdict(
    reader: Reader, changes: Sequence[diff.Change], policy: pol.Policy | None = None
) -> dict[str, Any]:
    """Score, kind, severity, explanation and the policy's action for ``changes`` as one
    transaction, judged by what detection has learned in ``reader``'s store."""
    policy = policy or pol.Policy.default()
    known = {t.qualified: t for t in reader.tables()}
    source = next(iter(known.values())).source if known else "postgres"
    now = int(time.time() * 1e6)
    rows = [_change(c, known, source, now) for c in changes]
    engine = Engine(default_detectors, PolicyRules(policy, replay=False))
    engine.restore(reader.detector_state())
    signals: list[Signal] = [
        s for f in tx_features(rows) for d in engine.detectors for s in d.score_one(f)
    ]
    opened = engine.observe(rows, source, {})
    if opened:
        inc = max(opened, key=lambda i: i.score)
        return {
            "score": inc.score,
            "kind": inc.kind,
            "severity": inc.severity,
            "action": inc.action,
            "why": inc.detail.get("decision", ""),
            "explanation": inc.explanation,
            "share": inc.detail.get("share"),
            "trained": True,
        }
    top = max(signals, key=lambda s: s.score, default=None)
    trained = bool(reader.detector_state())
    return {
        "score": round(top.score, 4) if top else 0.0,
        "kind": top.kind.value if top else None,
        "severity": None,
        "action": "none",
        "why": f"no detector scored it above the threshold ({top.seen}; normal: {top.normal})"
        if top is not None and trained
        else "no detector scored it above the threshold"
        if trained
        else "detection has learned nothing yet in this store",
        "explanation": f"{top.kind.value}: {top.seen} (normal: {top.normal})" if top else "",
        "share": None,
        "trained": trained,
    }


def _change(c: diff.Change, known: dict[str, Any], source: str, now: int) -> Change:
    info = known.get(c.table)
    schema: TableSchema | None = info.current if info is not None else None
    image = c.after or c.before or {}
    if schema is None:
        schema_name, _, name = c.table.partition(".")
        cols = tuple(Column(n, "text", key=n in c.key) for n in image)
        schema = TableSchema(source, schema_name, name, cols)
    names = [col.name for col in schema.columns]
    after = [c.after.get(n) for n in names] if c.after is not None else None
    before = [c.before.get(n) for n in names] if c.before is not None else None
    key = tuple(c.key.get(col.name) for col in schema.columns if col.key)
    return Change(schema, _OPS[c.op], key, after, before, now, 0, 0, 0)


def verdict_line(v: dict[str, Any]) -> str:
    """For people: ``detection: score 0.98 (constant), severity critical -> confirm``."""
    if v["action"] == "none":
        return f"detection: score {v['score']:.2f}: no action ({v['why']})"
    return (
        f"detection: score {v['score']:.2f} ({v['kind']}), severity {v['severity']}: "
        f"the policy would {v['action'].replace('_', ' ')}; {v['explanation']}"
    )
