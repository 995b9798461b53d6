"""Detection over the change stream: score each transaction with every detector, learn
only from what looked normal, and group what did not into incidents.

The engine is the store's ``Observer``: the store feeds it each write inside the write's
transaction and commits its incidents and state with the changes, so a crash (kill -9)
loses no incident and repeats none, and a replay of the same input gives the same
incidents. One bad statement is one transaction; one bad job or loop is a run of
transactions with the same kind of damage on the same table and columns, no more than
``GAP_US`` apart: each run is one incident, not thousands.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import orjson

from rowback.detect.base import Detector, Signal
from rowback.detect.features import (
    ColumnFeatures,
    Summaries,
    TxFeatures,
    TxSummary,
    summarise,
    tx_features,
)
from rowback.model import Change, Column, Op, TableSchema
from rowback.store.base import Incident

GAP_US = 10 * 60 * 1_000_000
DRIP_GAP_US = 3 * 3_600 * 1_000_000
"""A drip alarms once an hour at most (its evidence is an hour's): its alarms this far
apart are still one slow incident."""


def _gap(kind: str) -> int:
    return DRIP_GAP_US if kind == "drip" else GAP_US


"""Anomalous transactions of one pattern closer than this belong to one incident."""
MAX_HELD = 20
"""Features kept per open incident, learned if a person dismisses it."""
MAX_TXIDS = 100_000
DAY_US = 86_400 * 1_000_000
ROUTINE_DAYS = 1
"""Earlier days on which the same pattern alarmed at about the same time of day, at about
the same size (and was not reverted), that make it a recurring job: learned from, no
incident. One day: a job alarms once, on its first run that detectors judge."""
ROUTINE_SLACK_US = 45 * 60 * 1_000_000
ROUTINE_SIZE = 3.0
"""A job's runs differ in size by less than this factor; damage of another size that
happens to share a job's table, statement shape and hour is not excused by it."""
MAX_HITS = 30
SEVERITIES = ("low", "medium", "high", "critical")
OPEN = ("open", "pending_confirmation")


class Rules(Protocol):
    """What the policy says (``rowback.policy``): thresholds, maintenance windows and the
    action an incident gets."""

    def threshold(self, table: str) -> float: ...

    def critical(self, table: str) -> bool: ...

    def in_maintenance(self, table: str, at_us: int) -> bool: ...

    def decide(self, table: str, score: float, severity: str) -> tuple[str, str, str]:
        """(action, status, why) for a new or grown incident."""
        ...


@dataclass
class _Open:
    """An incident that may still grow, with the features it withheld from learning."""

    incident: Incident
    pattern: str
    held: list[dict[str, Any]]


class Engine:
    """The detectors, what they learned, and the incidents still growing."""

    def __init__(
        self,
        detectors: Callable[[], Sequence[Detector]],
        rules: Rules,
        hold_tail: bool = False,
    ) -> None:
        self._make = detectors
        self.hold_tail = hold_tail
        self._tail: Summaries = {}
        """The transaction a write ended in, per table, summarised until it is whole: the
        last of every replay write (``hold_tail``), or one a live write cut (``partial``).
        Summaries, not changes, so a million-row transaction costs a few KB to hold."""
        self._tail_tx: int | None = None
        self._ours: set[int] = set()
        self.detectors = list(detectors())
        self.rules = rules
        self._next_id = 1
        self._open: dict[int, _Open] = {}
        self._rows: dict[str, int] = {}
        """Live rows per table, as far as the stream showed them (for the share touched)."""
        self._hits: dict[str, list[list[int]]] = {}
        """Per pattern, when it alarmed: [commit_us, incident id, rows], oldest first."""

    # -- Observer --------------------------------------------------------------------

    def observe(
        self,
        changes: Sequence[Change],
        source: str,
        reverting: Mapping[int, str],
        partial: bool = False,
    ) -> list[Incident]:
        """Judge ``changes`` transaction by transaction, in commit order. A transaction
        is judged once, whole: the one a write ends in waits for the next call when the
        write may have cut it (``hold_tail``, a replay: the same stream is judged the same
        whatever its writes' boundaries) or did (``partial``, a live write of part of a
        big transaction). An empty call judges what waits."""
        grown: dict[int, Incident] = {}
        self._ours |= {int(t) for t in reverting}
        by_tx: dict[int, int] = {}
        hold = bool(changes) and (self.hold_tail or partial) and changes[-1].op != Op.SNAPSHOT
        n = len(changes)
        start = 0
        while start < n:
            txid = changes[start].txid
            end = start + 1
            while end < n and changes[end].txid == txid:
                end += 1
            run = changes[start:end]
            if self._tail_tx is not None and self._tail_tx != txid:
                self._judge_tail(source, by_tx, grown)
            self._count(run)
            if self._tail_tx == txid or (end == n and hold):
                self._summarise(txid, run)
                if not (end == n and hold):
                    self._judge_tail(source, by_tx, grown)
            else:
                self._judge(txid, tx_features(run), source, by_tx, grown)
            start = end
        if not changes and self._tail_tx is not None:
            self._judge_tail(source, by_tx, grown)
        self._ours = {t for t in self._ours if t == self._tail_tx}
        return list(grown.values())

    def _summarise(self, txid: int, run: Sequence[Change]) -> None:
        self._tail_tx = txid
        summarise(run, self._tail)

    def _judge_tail(self, source: str, by_tx: dict[int, int], grown: dict[int, Incident]) -> None:
        txid, feats = self._tail_tx, [acc.finish() for acc in self._tail.values()]
        self._tail, self._tail_tx = {}, None
        if txid is not None:
            self._judge(txid, feats, source, by_tx, grown)

    def _count(self, run: Sequence[Change]) -> None:
        """Live rows per table, as the changes arrive."""
        rows = self._rows
        for c in run:
            op = c.op
            if op == Op.UPDATE:
                continue  # the common case: no row comes or goes
            q = c.table.qualified
            if op == Op.INSERT or op == Op.SNAPSHOT:
                rows[q] = rows.get(q, 0) + 1
            elif op == Op.DELETE:
                rows[q] = max(0, rows.get(q, 0) - 1)
            elif op == Op.TRUNCATE:
                rows[q] = 0

    def _judge(
        self,
        txid: int,
        feats: Sequence[TxFeatures],
        source: str,
        by_tx: dict[int, int],
        grown: dict[int, Incident],
    ) -> None:
        """One transaction: judge each table it wrote."""
        if txid in self._ours:
            return  # Rowback's own revert: never judged, never learned
        for f in feats:
            if self.rules.in_maintenance(f.table, f.commit_us):
                continue  # neither learned from nor alerted on
            signals = [s for d in self.detectors for s in d.score_one(f)]
            threshold = self.rules.threshold(f.table)
            hits = sorted((s for s in signals if s.score > threshold), key=lambda s: -s.score)
            if not hits:
                for d in self.detectors:
                    d.learn_one(f)
                continue
            for d in self.detectors:
                d.see_one(f)
            if self._routine(f, hits):
                for d in self.detectors:
                    d.learn_one(f)
                continue
            inc = self._group(f, hits, source, by_tx.get(f.txid))
            self._hit(f, hits, inc.id)
            by_tx[f.txid] = inc.id
            grown[inc.id] = inc
        self._close(feats)

    def state(self) -> bytes:
        return orjson.dumps(
            {
                "detectors": {d.name: d.state() for d in self.detectors},
                "next_id": self._next_id,
                "rows": self._rows,
                "hits": self._hits,
                "tail": [acc.state() for acc in self._tail.values()],
                "ours": sorted(self._ours),
                "open": [
                    {"incident": asdict(o.incident), "pattern": o.pattern, "held": o.held}
                    for o in self._open.values()
                ],
            }
        )

    def restore(self, state: bytes | None) -> None:
        got: dict[str, Any] = orjson.loads(state) if state else {}
        saved = got.get("detectors", {})
        self.detectors = list(self._make())  # untrained, unless a state was saved
        for d in self.detectors:
            if d.name in saved:
                d.load(saved[d.name])
        self._next_id = int(got.get("next_id", 1))
        self._rows = {str(k): int(v) for k, v in got.get("rows", {}).items()}
        self._tail = {}
        self._tail_tx = None
        for d in got.get("tail", []):
            acc = TxSummary.from_state(d)
            self._tail[(acc.txid, acc.table)] = acc
            self._tail_tx = acc.txid
        self._ours = {int(t) for t in got.get("ours", [])}
        held = [_change_of(d) for d in got.get("pending", [])]  # a state saved before "tail"
        if held:
            self._count(held)
            self._summarise(held[0].txid, held)
        self._hits = {
            str(k): [[int(h[0]), int(h[1]), int(h[2]) if len(h) > 2 else 0] for h in v]
            for k, v in got.get("hits", {}).items()
        }
        self._open = {}
        for o in got.get("open", []):
            inc = Incident(**o["incident"])
            self._open[inc.id] = _Open(inc, o["pattern"], o["held"])

    def changed(self, incident: Incident) -> None:
        if incident.status in ("reverted", "reverting"):  # damage, not a job: never routine
            for hits in self._hits.values():
                hits[:] = [h for h in hits if h[1] != incident.id]
        o = self._open.get(incident.id)
        if incident.status == "dismissed" and o is not None:
            for held in o.held:
                f = features_from(held)
                for d in self.detectors:
                    d.learn_one(f)
        if incident.status not in OPEN:
            self._open.pop(incident.id, None)
        elif o is not None:
            o.incident = incident

    # -- recurring jobs --------------------------------------------------------------

    @staticmethod
    def _pattern(f: TxFeatures, hits: list[Signal]) -> str:
        return f"{f.table}|{f.shape}"  # not the kind: it changes as detectors learn

    def _routine(self, f: TxFeatures, hits: list[Signal]) -> bool:
        """The same pattern alarmed at about this time of day on ``ROUTINE_DAYS`` earlier
        days (and nobody reverted it): a nightly archive, a morning restock. Detectors
        learn it, seasonal baselines then carry it, and it is not an incident again."""
        day = f.commit_us // DAY_US
        tod = f.commit_us % DAY_US
        days = set()
        for at, _, rows in self._hits.get(self._pattern(f, hits), []):
            d = at // DAY_US
            gap = abs(at % DAY_US - tod)
            similar = rows <= 0 or max(rows, f.rows) <= ROUTINE_SIZE * min(rows, f.rows)
            if d < day and min(gap, DAY_US - gap) <= ROUTINE_SLACK_US and similar:
                days.add(d)
        return len(days) >= ROUTINE_DAYS

    def _hit(self, f: TxFeatures, hits: list[Signal], iid: int) -> None:
        got = self._hits.setdefault(self._pattern(f, hits), [])
        got.append([f.commit_us, iid, f.rows])
        del got[:-MAX_HITS]
        if len(self._hits) > 4 * MAX_HITS:  # forget the least recently alarming patterns
            oldest = min(self._hits, key=lambda k: self._hits[k][-1][0])
            del self._hits[oldest]

    # -- grouping --------------------------------------------------------------------

    def _group(
        self, f: TxFeatures, hits: list[Signal], source: str, same_tx: int | None
    ) -> Incident:
        top = hits[0]
        pattern = f"{f.table}|{top.kind.value}|{','.join(top.columns)}"
        found = self._open.get(same_tx) if same_tx is not None else None
        if found is None:
            found = next(
                (
                    o
                    for o in self._open.values()
                    if o.pattern == pattern
                    and f.commit_us - o.incident.last_us <= _gap(top.kind.value)
                ),
                None,
            )
        if found is None:
            inc = Incident(
                id=self._next_id,
                source=source,
                kind=top.kind.value,
                tables=[],
                columns=[],
                score=0.0,
                severity="low",
                status="open",
                action="none",
                first_us=f.commit_us,
                last_us=f.commit_us,
                detected_us=f.commit_us,
                txids=[],
                rows_affected=0,
                explanation="",
                detail={"signals": []},
            )
            self._next_id += 1
            found = _Open(inc, pattern, [])
            self._open[inc.id] = found
        inc = found.incident
        if f.table not in inc.tables:
            inc.tables.append(f.table)
        for s in hits:
            for c in s.columns:
                if c not in inc.columns:
                    inc.columns.append(c)
        if f.txid not in inc.txids and len(inc.txids) < MAX_TXIDS:
            inc.txids.append(f.txid)
        inc.rows_affected += f.rows
        inc.first_us = min(inc.first_us, f.commit_us)
        inc.last_us = max(inc.last_us, f.commit_us)
        if top.score > inc.score:
            inc.score = round(top.score, 4)
            inc.kind = top.kind.value
        signals: list[dict[str, Any]] = inc.detail.setdefault("signals", [])
        known = {(s["kind"], s["table"], tuple(s["columns"])) for s in signals}
        for s in hits:
            if (s.kind.value, f.table, s.columns) not in known and len(signals) < 20:
                signals.append(_signal(s, f))
        if len(found.held) < MAX_HELD:
            found.held.append(asdict(f))
        inc.severity = self._severity(inc)
        if inc.status == "open" and inc.action in ("none", "alert_only"):
            action, status, why = self.rules.decide(f.table, inc.score, inc.severity)
            inc.action, inc.status = action, status
            inc.detail["decision"] = why
        inc.explanation = explain(inc)
        return inc

    def _severity(self, inc: Incident) -> str:
        """From the rows touched, the share of the table they are, and its criticality."""
        rows = inc.rows_affected
        share = max((rows / self._rows[t] for t in inc.tables if self._rows.get(t)), default=0.0)
        level = 0
        if rows >= 20 or share >= 0.01:
            level = 1
        if rows >= 1_000 or share >= 0.10:
            level = 2
        if rows >= 10_000 or share >= 0.50:
            level = 3
        if any(self.rules.critical(t) for t in inc.tables):
            level = max(level + 1, 2)
        inc.detail["share"] = round(share, 4)
        return SEVERITIES[min(level, 3)]

    def _close(self, feats: Sequence[TxFeatures]) -> None:
        """Forget incidents no transaction has grown for ``GAP_US`` of stream time."""
        if not feats:
            return
        now = max(f.commit_us for f in feats)
        for iid in [
            i for i, o in self._open.items() if now - o.incident.last_us > _gap(o.incident.kind)
        ]:
            del self._open[iid]


def _signal(s: Signal, f: TxFeatures) -> dict[str, Any]:
    return {
        "kind": s.kind.value,
        "table": f.table,
        "columns": list(s.columns),
        "score": round(s.score, 4),
        "normal": s.normal,
        "seen": s.seen,
        "txid": f.txid,
        "examples": [list(e) if isinstance(e, tuple) else e for e in s.examples][:5],
    }


def explain(inc: Incident) -> str:
    """One plain-language paragraph: which signals fired, on what, normal against seen."""
    parts = []
    for s in inc.detail.get("signals", [])[:4]:
        on = f"{s['table']}.{','.join(s['columns'])}" if s["columns"] else s["table"]
        text = f"{s['kind']} on {on}: {s['seen'] or 'unusual'}"
        if s["normal"]:
            text += f" (normal: {s['normal']})"
        parts.append(text)
    span = ""
    if len(inc.txids) > 1:
        minutes = (inc.last_us - inc.first_us) / 60e6
        span = f"; {len(inc.txids)} transactions over {minutes:.1f} min"
    return "; ".join(parts) + f"; {inc.rows_affected:,} rows{span}"


def features_from(d: dict[str, Any]) -> TxFeatures:
    """The ``TxFeatures`` that ``asdict`` turned into ``d`` (held in the engine's state)."""
    cols = tuple(
        ColumnFeatures(
            **{
                **c,
                "values": tuple((v, n) for v, n in c["values"]),
                "numbers": tuple(c["numbers"]),
                "years": tuple(c["years"]),
            }
        )
        for c in d["columns"]
    )
    return TxFeatures(
        **{
            **d,
            "columns": cols,
            "example_keys": tuple(tuple(k) for k in d["example_keys"]),
        }
    )


def _change_of(d: dict[str, Any]) -> Change:
    """A held change as states saved before ``TxSummary`` kept them ("pending")."""
    src, schema, name, cols = d["t"]
    table = TableSchema(src, schema, name, tuple(Column(n, ty, key=k) for n, ty, k in cols))
    op, key, after, before, at, txid, lsn, seq = d["c"]
    return Change(
        table,
        Op(op),
        None if key is None else tuple(key),
        after,
        before,
        at,
        txid,
        lsn,
        seq,
        frozenset(d["u"]),
    )
