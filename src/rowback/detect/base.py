"""The one small contract every detector follows (river's style), and what it reports.

A detector sees one ``TxFeatures`` at a time (one transaction on one table). ``score_one``
judges it without learning; ``learn_one`` folds it into what is normal. The engine calls
``score_one`` first and ``learn_one`` only when nothing scored above the alert threshold,
so bad writes never become the baseline (``see_one`` still counts them as recent
activity). High score means anomalous; every score is already on the shared [0, 1]
scale (``calibrate.score``).

State is plain JSON-able data (``state`` / ``load``) so models persist in the store
inside the same transaction as the changes they learned from: a crash loses neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from rowback.detect.features import TxFeatures


class Kind(StrEnum):
    """The kinds of damage detection names (issue "Catch bad writes")."""

    volume = "volume"
    """Unusual write, delete or insert volume for the table."""
    oversized = "oversized"
    """A transaction far larger than the table's transactions usually are."""
    constant = "constant"
    """Many rows set to the same value."""
    nulls = "nulls"
    """NULLs or empty strings where the column is rarely empty."""
    outlier = "outlier"
    """Numeric values outside the column's distribution (×100, decimal shift, sign flip)."""
    category = "category"
    """Values never seen before in a low-cardinality column."""
    timestamp = "timestamp"
    """Timestamps reset to the epoch or set far in the future."""
    frozen = "frozen"
    """A column that is normally never updated being rewritten."""
    runaway = "runaway"
    """The same rows rewritten again and again."""
    insert_flood = "insert_flood"
    """Far more inserts per minute than usual."""
    drip = "drip"
    """Small anomalous writes spread over a long time."""


@dataclass(frozen=True, slots=True)
class Signal:
    """One detector's judgement of one transaction on one table."""

    kind: Kind
    score: float
    """Calibrated, in [0, 1]."""
    columns: tuple[str, ...] = ()
    normal: str = ""
    """What is normal here, in plain words (``"median 3 rows per transaction"``)."""
    seen: str = ""
    """What was seen instead (``"10,000 rows"``)."""
    rows: int = 0
    """Rows of the transaction this signal is about."""
    examples: tuple[Any, ...] = field(default=())
    """Example keys or values that show it."""


class Detector(Protocol):
    """An online detector over per-transaction, per-table features."""

    name: str
    """Stable identifier, used as the key of its persisted state."""
    kinds: frozenset[Kind]
    """The kinds of damage it covers."""

    def learn_one(self, f: TxFeatures) -> None:
        """Fold ``f`` into what is normal."""
        ...

    def score_one(self, f: TxFeatures) -> list[Signal]:
        """Judge ``f`` against what was learned, without learning from it. Signals
        scoring 0 may be omitted; an untrained detector scores 0."""
        ...

    def see_one(self, f: TxFeatures) -> None:
        """``f`` was judged anomalous: count it where recent activity is counted (this
        minute's rows, rows rewritten lately) so a flood or a loop keeps alarming, but
        never in what is normal. A no-op for a detector without such counts."""
        ...

    def state(self) -> dict[str, Any]:
        """Everything learned, as JSON-able data."""
        ...

    def load(self, state: dict[str, Any]) -> None:
        """Restore what ``state`` returned; afterwards scores equal the original's."""
        ...
