"""Acting on incidents inside ``rowback run``: revert those the policy reverts at once,
alert on the others (log and webhooks), and let unanswered confirmations expire.

It runs beside capture, reading snapshots, and acts through the same operations as a
person (``rowback.incidents``), so an automatic revert is recorded, labelled and
undoable like any other. What it has done is kept in each incident's detail
(``alerted``), so a restart neither repeats an alert nor forgets one; a webhook receiver
still de-duplicates by ``X-Rowback-Delivery`` (alerts are at least once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import rowback.policy as pol
from rowback import incidents as ops
from rowback.api.context import ServiceContext
from rowback.errors import RowbackError
from rowback.revert import run as rr
from rowback.revert.plan import Mode
from rowback.store.base import Incident
from rowback.views import incident_doc

POLICY_WHO = "policy"
"""Who an automatic revert is recorded as."""
ALERTED = ("open", "pending_confirmation", "reverted", "expired")


class Responder:
    """The loop; ``send``: how an alert reaches one webhook (``alerts.send``)."""

    def __init__(
        self,
        ctx: ServiceContext,
        policy: pol.Policy,
        notify: Callable[[str], None],
        send: Callable[[pol.Webhook, dict[str, Any]], Any] | None = None,
        every: float = 0.2,
    ) -> None:
        self.ctx, self.policy, self.notify, self.every = ctx, policy, notify, every
        if send is None:
            from rowback.alerts import send as send_one

            send = send_one
        self.send = send
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rowback-respond", daemon=True)
        self._seen = -1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.step()
            except Exception as e:  # noqa: BLE001  (the service must outlive one bad step)
                self.notify(f"responding to incidents failed: {e}")

    def step(self) -> None:
        """One pass: act on what changed since the last (every few seconds regardless,
        for expiry)."""
        gen = self.ctx.store.generation
        if gen == self._seen and int(time.time()) % 5:
            return
        self._seen = gen
        snap = self.ctx.snapshot()
        try:
            todo = [i for i in snap.reader.incidents() if _needs(i)]
        finally:
            snap.close()
        now_us = int(time.time() * 1e6)
        for inc in todo:
            if self._stop.is_set():
                return
            if inc.status == "reverting":
                inc = self._revert(inc)
            elif inc.status == "pending_confirmation" and self._expired(inc, now_us):
                inc = self.ctx.store.update_incident(
                    inc.id, "expired", reason="nobody confirmed the revert in time"
                )
            if inc.status in ALERTED and inc.status not in inc.detail.get("alerted", []):
                self._alert(inc)

    def _expired(self, inc: Incident, now_us: int) -> bool:
        limit = min(self.policy.for_table(t).confirm_expires for t in inc.tables)
        return now_us - inc.detected_us > limit.total_seconds() * 1e6

    def _revert(self, inc: Incident) -> Incident:
        target = self.ctx.source_dsn
        if target is None:
            return self.ctx.store.update_incident(
                inc.id, "pending_confirmation", reason="no database to revert: confirm by hand"
            )
        from rowback.api.revert import _plan

        with self.ctx.reverting:
            settled = self._settled(inc, target)
            if settled is not None:
                return settled
            try:
                done = ops.approve(
                    self.ctx.store,
                    inc,
                    target,
                    Mode.nocascade,
                    POLICY_WHO,
                    plan=lambda req: _plan(self.ctx, req),
                )
            except rr.Refused as e:
                self.notify(f"incident {inc.id}: automatic revert refused: {e}")
                return self.ctx.store.update_incident(
                    inc.id, "pending_confirmation", reason=f"automatic revert refused: {e}"
                )
            except RowbackError as e:
                self.notify(f"incident {inc.id}: automatic revert failed: {e}")
                return self.ctx.store.update_incident(
                    inc.id, "pending_confirmation", reason=f"automatic revert failed: {e}"
                )
        self.notify(
            f"incident {inc.id} ({inc.kind} on {', '.join(inc.tables)}) reverted "
            f"automatically by reversion {done.outcome.id}: {done.outcome.applied.rows} rows"
        )
        return done.incident

    def _settled(self, inc: Incident, target: str) -> Incident | None:
        """After a crash mid-revert: a reversion of ``inc`` left ``started`` gets its
        outcome from the target; if one applied, the incident is reverted (not reverted
        twice), else None and the revert runs again (PostgreSQL was left untouched)."""
        snap = self.ctx.snapshot()
        try:
            rr.resolve_started(self.ctx.store, target, snap.reader)
        finally:
            snap.close()
        snap = self.ctx.snapshot()
        try:
            mine = [r for r in snap.reader.reversions() if r.selection.get("incident") == inc.id]
        finally:
            snap.close()
        done = [r for r in mine if r.status == "applied"]
        if not done:
            return None
        self.notify(f"incident {inc.id}: reverted before a restart, by reversion {done[-1].id}")
        return self.ctx.store.update_incident(inc.id, "reverted", reversion=done[-1].id)

    def _alert(self, inc: Incident) -> None:
        snap = self.ctx.snapshot()
        try:
            doc = incident_doc(snap.reader, inc.id, self.ctx.source_dsn)
        finally:
            snap.close()
        line = (
            f"incident {inc.id} {inc.status}: {inc.kind} on {', '.join(inc.tables)}, "
            f"score {inc.score:.2f}, {inc.severity}: {inc.explanation}"
        )
        self.notify(line)
        payload = {
            "event": f"incident.{inc.status}",
            "incident": doc,
            "approve": {
                "command": f"rowback incidents approve {inc.id}",
                "url": f"/api/v1/incidents/{inc.id}/approve",
            },
            "dismiss": {
                "command": f"rowback incidents dismiss {inc.id} --reason '…'",
                "url": f"/api/v1/incidents/{inc.id}/dismiss",
            },
        }
        for hook in self.policy.webhooks:
            got = self.send(hook, payload)
            if not getattr(got, "ok", True):
                self.notify(f"incident {inc.id}: webhook {hook.url} failed: {got.error}")
        alerted = [*inc.detail.get("alerted", []), inc.status]
        self.ctx.store.update_incident(inc.id, inc.status, detail={"alerted": alerted})


def _needs(inc: Incident) -> bool:
    if inc.action == "none":
        return False
    if inc.status in ("reverting", "pending_confirmation"):
        return True
    return inc.status in ALERTED and inc.status not in inc.detail.get("alerted", [])
