"""``whatif``: what a statement would change, found with PostgreSQL's own semantics.

``diff`` is pure (images in, changes and a summary out); ``run`` executes the statement
in a transaction that is always rolled back, and reads the images around it.
"""

from __future__ import annotations

from rowback.whatif.diff import Change, Failure, Op, Outcome, summary
from rowback.whatif.run import Bounds, Stopped, whatif

__all__ = ["Bounds", "Change", "Failure", "Op", "Outcome", "Stopped", "summary", "whatif"]
