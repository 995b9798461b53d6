"""Replay quarantined Debezium events with today's settings (``--key``), e.g. a table's
events quarantined because its key was not known when they came.

Each batch of events that now decode is written in the store transaction that removes
them from the quarantine, so a crash neither loses them nor stores them twice. Those
that still fail stay listed.

Ordering: a replayed event gets the store's next positions, after everything already
stored, and time points (``--at``, ``lsn:``, ``tx:``) resolve to the last position at
or before them. An event older than what was stored since would therefore show history
out of order (other tables' later changes visible at its time, its own table's later
versions undone), so a replay only appends events that are not older than the newest
commit the store holds (by LSN and by commit time), and refuses the others, naming
them. The events of a table that had nothing stored since (a topic's own file, or the
end of a stream) replay; an event from the middle of a busy stream does not, and the
honest fix for it is ingesting the input again into a new store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rowback.model import Change, Quarantined
from rowback.sources.debezium.decode import DecodeError, Decoder, NoKey
from rowback.store.base import Store

BATCH = 20_000
MAX_ERRORS = 10


@dataclass
class ReplayReport:
    """What one replay did."""

    replayed: int = 0
    """Quarantined inputs that decoded and left the quarantine (changes and tombstones)."""
    written: int = 0
    """Changes written to the store."""
    failed: int = 0
    """Inputs that still do not decode; left in the quarantine."""
    refused: int = 0
    """Inputs that decode but are older than stored history; left in the quarantine."""
    gaps: int = 0
    errors: list[str] = field(default_factory=list)
    """The first few reasons, as ``quarantine ID: reason`` (one per table for a key)."""

    def summary(self) -> str:
        """One line for the user."""
        left = self.failed + self.refused
        parts = [f"replayed {self.replayed} quarantined inputs", f"{left} left in the quarantine"]
        if self.refused:
            parts.append(f"{self.refused} of them older than history stored since")
        if self.gaps:
            parts.append(f"{self.gaps} gaps (before images that differ from history)")
        return ", ".join(parts)

    def _error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS and text not in self.errors:
            self.errors.append(text)


def replay_quarantine(
    store: Store,
    source: str | None = None,
    ids: Sequence[int] | None = None,
    keys: Mapping[str, Sequence[str]] | None = None,
    *,
    batch: int = BATCH,
    notify: Callable[[str], None] | None = None,
) -> ReplayReport:
    """Decode the quarantined inputs of ``source`` (all sources if None; only ``ids`` if
    given) again with ``keys``; store those that decode and may be appended."""
    report = ReplayReport()
    by_source: dict[str, list[Quarantined]] = {}
    for item in store.quarantined_items(source, ids):
        by_source.setdefault(item.source, []).append(item)
    for name, items in by_source.items():
        _Replay(store, name, keys, batch, notify, report).run(items)
    return report


class _Replay:
    """One source's replay: its decoder continues from the stored table versions, and the
    position keeps the live ingest's place, gaining only the tables replayed."""

    def __init__(
        self,
        store: Store,
        source: str,
        keys: Mapping[str, Sequence[str]] | None,
        batch: int,
        notify: Callable[[str], None] | None,
        report: ReplayReport,
    ) -> None:
        self.store, self.source, self.batch, self.report = store, source, batch, report
        self.position: dict[str, Any] = store.position(source) or {}
        saved = self.position.get("decoder")
        self.saved: dict[str, Any] = saved if isinstance(saved, dict) else {}
        self.decoder = Decoder(source, keys, notify=notify)
        # Types and keys of tables seen, but not the live transaction: replayed events
        # number their own transactions.
        self.decoder.restore({"tables": self.saved.get("tables", [])})
        self.lsn, self.commit_us = store.newest()
        self.changes: list[Change] = []
        self.done: list[int] = []
        self.touched: set[tuple[str, str]] = set()

    def run(self, items: list[Quarantined]) -> None:
        if "decoder" not in self.position:
            self.report.failed += len(items)
            self.report._error(f"source {self.source!r}: not a Debezium ingest; nothing replayed")
            return
        for item in items:
            self._one(item)
            if len(self.done) >= self.batch:
                self._flush()
        self._flush()

    def _one(self, item: Quarantined) -> None:
        report = self.report
        assert item.id is not None
        try:
            change = self.decoder.decode(item.raw)
        except NoKey as e:
            report.failed += 1
            report._error(str(e))  # one line per table, not one per event
            return
        except DecodeError as e:
            report.failed += 1
            report._error(f"quarantine {item.id}: {e}")
            return
        except Exception as e:  # noqa: BLE001 - as in ingest: a decoder bug costs one input
            report.failed += 1
            report._error(f"quarantine {item.id}: cannot decode ({type(e).__name__}: {e})")
            return
        if change is not None:
            if change.lsn < self.lsn or change.commit_us < self.commit_us:
                report.refused += 1
                report._error(
                    f"quarantine {item.id}: {change.table.qualified} at lsn {change.lsn} is "
                    f"older than history stored since (up to lsn {self.lsn}); appending it "
                    "would reorder history"
                )
                return
            self.lsn, self.commit_us = change.lsn, change.commit_us
            self.changes.append(change)
            self.touched.add((change.table.schema, change.table.name))
        self.done.append(item.id)

    def _flush(self) -> None:
        if not self.done:
            return
        # Only the tables replayed take the replay's versions: the live ingest's others
        # stay as it saved them, and its transaction count too.
        touched = self.touched
        replayed = [t for t in self.decoder.tables.state() if (t[0], t[1]) in touched]
        tables = [t for t in self.saved.get("tables", []) if (t[0], t[1]) not in touched]
        state = {**self.saved, "tables": tables + replayed}
        position = {**self.position, "decoder": state}
        stats = self.store.write(self.changes, self.source, position, replayed=self.done)
        self.report.replayed += len(self.done)
        self.report.written += stats.written
        self.report.gaps += stats.gaps
        self.position, self.saved = position, state
        self.changes, self.done = [], []
