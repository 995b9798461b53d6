"""Detection attached to a store: the policy file's rules as the engine reads them, and
one call that makes a store judge every write (``rowback run`` and ``rowback ingest``)."""

from __future__ import annotations

from datetime import UTC, datetime

import rowback.policy as pol
from rowback.detect.engine import Engine
from rowback.detect.registry import default_detectors, detectors
from rowback.store.base import Store


class PolicyRules:
    """``engine.Rules`` from a parsed ``rowback.toml``; ``replay``: no database to revert
    (``rowback ingest``), so auto_revert asks for confirmation instead."""

    def __init__(self, policy: pol.Policy, replay: bool) -> None:
        self.policy = policy
        self.replay = replay
        self._thresholds: dict[str, float] = {}
        """Per table: asked for every transaction, and a policy is immutable."""

    def threshold(self, table: str) -> float:
        got = self._thresholds.get(table)
        if got is None:
            got = self._thresholds[table] = self.policy.for_table(table).threshold
        return got

    def critical(self, table: str) -> bool:
        return self.policy.for_table(table).critical

    def in_maintenance(self, table: str, at_us: int) -> bool:
        if not self.policy.maintenance:  # the common case, asked for every transaction
            return False
        at = datetime.fromtimestamp(at_us / 1e6, UTC)
        return pol.in_maintenance(self.policy, table, at)

    def decide(self, table: str, score: float, severity: str) -> tuple[str, str, str]:
        d = pol.decide(self.policy, table, score, pol.Severity[severity], self.replay)
        return d.action.value, d.status.value, d.why


def attach(
    store: Store,
    policy: pol.Policy | None = None,
    replay: bool = False,
    learned: bool = False,
    hold_tail: bool = False,
) -> Engine:
    """Make ``store`` judge every later write with the default detectors (and, with
    ``learned``, the learned models of ``rowback[ml]``; RowbackError when missing),
    restored to what they learned before (kept in the store). ``hold_tail``: the
    source's writes may cut a transaction in two (Debezium blocks): each write's last
    transaction is judged with the next (``Store.judge_pending`` at the end)."""
    make = default_detectors
    if learned:
        detectors(True)  # fails here, once, when scikit-learn is missing
        make = lambda: detectors(True)  # noqa: E731
    engine = Engine(make, PolicyRules(policy or pol.Policy.default(), replay), hold_tail)
    store.watch(engine)
    return engine
