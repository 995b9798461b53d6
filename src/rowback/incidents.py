"""What a person (or a policy) does with an incident: approve it (revert it with the
incident as the selection), dismiss it (its pattern is normal: detection learns it), and
let pending confirmations expire. The CLI and the API only parse and print."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass

from rowback.errors import RowbackError
from rowback.revert import DEFAULT_MAX_ROWS
from rowback.revert import run as rr
from rowback.revert.plan import Mode, Plan
from rowback.store.base import Incident, Reader, Store

DECIDABLE = ("open", "pending_confirmation", "reverting")
"""Statuses an incident can be approved or dismissed in (``reverting``: the policy's
automatic revert has not run yet)."""


def find(reader: Reader, iid: int) -> Incident:
    got = [i for i in reader.incidents() if i.id == iid]
    if not got:
        raise RowbackError(f"incident {iid} is not in the store (see `rowback incidents`)")
    return got[0]


def _decidable(inc: Incident, verb: str) -> None:
    if inc.status not in DECIDABLE:
        raise RowbackError(f"incident {inc.id} is {inc.status}: only an open one can be {verb}")


def dismiss(store: Store, iid: int, reason: str, reader: Reader | None = None) -> Incident:
    """Close incident ``iid`` as normal; detection learns its pattern."""
    inc = find(reader or store, iid)
    _decidable(inc, "dismissed")
    if not reason.strip():
        raise RowbackError("--reason: say why the incident is not damage, for the record")
    return store.update_incident(iid, "dismissed", reason=reason)


@dataclass
class Approved:
    incident: Incident
    outcome: rr.Outcome


def approve(
    store: Store,
    inc: Incident,
    target: str,
    mode: Mode = Mode.nocascade,
    who: str | None = None,
    plan: Callable[[rr.Request], Plan] | None = None,
) -> Approved:
    """Revert incident ``inc``'s transactions on ``target`` (the usual revert: caught-up
    check, conflicts by ``mode``, one guarded transaction, a reversion record), then mark
    it ``reverted``. ``plan``: how to plan (the service waits for capture to catch up)."""
    inc = find(store, inc.id)  # as it is now: someone may have acted on it meanwhile
    _decidable(inc, "approved")
    req = rr.Request(
        incident=inc.id,
        source=inc.source,
        mode=mode,
        target=target,
        reason=f"incident {inc.id}: {inc.kind} on {', '.join(inc.tables)}",
        max_rows=max(DEFAULT_MAX_ROWS, inc.rows_affected),
    )
    got = plan(req) if plan is not None else rr.plan_for(store, req)
    outcome = rr.apply_recorded(store, req, got, who=who or getpass.getuser())
    done = find(store, inc.id)
    return Approved(done, outcome)


def expire(store: Store, now_us: int, expires_us: Callable[[str], int]) -> list[Incident]:
    """Pending confirmations older than their table's ``confirm_expires`` become
    ``expired`` (nobody approved them in time: they are no longer offered)."""
    out = []
    for inc in store.incidents():
        if inc.status != "pending_confirmation":
            continue
        limit = min(expires_us(t) for t in inc.tables) if inc.tables else 0
        if limit and now_us - inc.detected_us > limit:
            out.append(store.update_incident(inc.id, "expired", reason="confirmation expired"))
    return out
