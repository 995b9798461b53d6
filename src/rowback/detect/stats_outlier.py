"""Numeric values outside a column's distribution: ×100, decimal shifts, sign flips.

Per (table, column) a deterministic reservoir (``Sample``) gives the median and the
middle half; a value is out of distribution beyond a robust z of ``OUT_Z`` (in linear
terms, and in log terms for a positive column), or negative in a column that is never
negative. A transaction is judged by how many of its values are out against how many
the column's own history makes expected (``poisson_z``): in a column that never had one
in thousands of values, a single shifted price is already suspicious (~0.6), three are
an alarm, and a few dozen dripped over an hour add up (``DripWindow``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from rowback.detect.base import Kind, Signal
from rowback.detect.calibrate import poisson_z, score
from rowback.detect.features import MAX_NUMBERS, ColumnFeatures, TxFeatures
from rowback.detect.stats import DECAY_AT, MIN_HISTORY, DripWindow, PerColumn, Sample, number, rate

OUT_Z = 8.0
"""Robust z beyond which a value is out of the column's distribution."""
IQR_TO_SD = 1.349
NEGATIVE_SHARE = 0.001
"""A column with fewer negatives than this share is 'never negative'."""


class _Range:
    """The column's distribution summarised for one call: O(1) from the sorted sample."""

    __slots__ = ("med", "scale", "log_med", "log_scale", "never_neg", "version")

    def __init__(self, s: Sample, negatives: float, seen: float) -> None:
        self.version = s.version
        q1, self.med, q3 = s.quantile(0.25), s.quantile(0.5), s.quantile(0.75)
        self.scale = max((q3 - q1) / IQR_TO_SD, abs(self.med) * 0.1, 1e-9)
        self.log_med = self.log_scale = 0.0
        if s.sorted[0] > 0:
            self.log_med = math.log(self.med)
            self.log_scale = max(math.log(q3 / q1) / IQR_TO_SD, 0.05)
        self.never_neg = negatives <= NEGATIVE_SHARE * seen

    def out(self, x: float) -> bool:
        if abs(x - self.med) > OUT_Z * self.scale:
            return True
        if x < 0:
            return self.never_neg
        if self.log_scale and x > 0:
            return abs(math.log(x) - self.log_med) > OUT_Z * self.log_scale
        return False


class _Numbers:
    __slots__ = ("sample", "tested", "out", "negatives", "seen", "window", "_range")

    def __init__(self) -> None:
        self.sample = Sample()
        self.tested = 0.0
        """Values judged against the sample (after it had ``MIN_HISTORY`` values)."""
        self.out = 0.0
        self.negatives = 0.0
        self.seen = 0.0
        self.window = DripWindow()
        self._range: _Range | None = None

    def trained(self) -> bool:
        return self.tested >= MIN_HISTORY

    def judge(self, c: ColumnFeatures) -> tuple[list[float], float, float, _Range]:
        """(out values, k, expected) with both counts scaled up when numbers were capped."""
        r = self._range
        if r is None or r.version != self.sample.version:  # the sample rarely changes
            r = self._range = _Range(self.sample, self.negatives, self.seen)
        else:
            r.never_neg = self.negatives <= NEGATIVE_SHARE * self.seen
        bad = [x for x in c.numbers if r.out(x)]
        n = len(c.numbers)
        scale = max(1.0, (c.written - c.nulls - c.empties) / n) if n >= MAX_NUMBERS else 1.0
        return bad, len(bad) * scale, rate(self.out, self.tested) * n * scale, r

    def state(self) -> list[Any]:
        return [
            self.sample.state(),
            self.tested,
            self.out,
            self.negatives,
            self.seen,
            self.window.state(),
        ]


class OutlierDetector(PerColumn[_Numbers]):
    """Numeric values outside the column's learned distribution, at once or over an hour."""

    name = "outlier"
    kinds = frozenset({Kind.outlier, Kind.drip})

    def _columns(self, f: TxFeatures) -> Iterator[ColumnFeatures]:
        return (c for c in f.columns if c.numbers)

    def _new(self) -> _Numbers:
        return _Numbers()

    def _from_state(self, s: Any) -> _Numbers:
        st = _Numbers()
        st.sample = Sample.from_state(s[0])
        st.tested, st.out, st.negatives, st.seen = (float(x) for x in s[1:5])
        st.window = DripWindow.from_state(s[5])
        return st

    def _learn(self, st: _Numbers, f: TxFeatures, c: ColumnFeatures) -> None:
        if len(st.sample.sorted) >= MIN_HISTORY:
            bad, k, lam, _ = st.judge(c)
            if st.trained():
                st.window.add(f.commit_us, k, lam)
            st.out += len(bad)
            st.tested += len(c.numbers)
        for x in c.numbers:
            st.sample.add(x)
            if x < 0:
                st.negatives += 1.0
        st.seen += len(c.numbers)
        if st.seen > DECAY_AT:
            st.seen, st.negatives = st.seen / 2, st.negatives / 2
        if st.tested > DECAY_AT:
            st.tested, st.out = st.tested / 2, st.out / 2

    def _score(self, st: _Numbers, f: TxFeatures, c: ColumnFeatures) -> list[Signal] | None:
        if not st.trained():
            return None
        bad, k, lam, r = st.judge(c)
        if not bad:
            return None
        z = poisson_z(k, lam)
        dz, dk, dlam = st.window.z(f.commit_us, k, lam)
        q1, q3 = st.sample.quantile(0.25), st.sample.quantile(0.75)
        normal = (
            f"median {number(r.med)}, middle half {number(q1)}–{number(q3)}; "
            f"{st.out:,.0f} of {st.tested:,.0f} values out of range"
        )
        examples = tuple(bad[:5])
        out = [
            Signal(
                Kind.outlier,
                score(z),
                columns=(c.name,),
                normal=normal,
                seen=f"{len(bad)} of {len(c.numbers)} values out of range (e.g. {number(bad[0])})",
                rows=f.rows,
                examples=examples,
            )
        ]
        if dz > z:
            out.append(
                Signal(
                    Kind.drip,
                    score(dz),
                    columns=(c.name,),
                    normal=f"{dlam:.1f} out-of-range values expected in an hour; {normal}",
                    seen=f"{dk:,.0f} out-of-range values in the last hour",
                    rows=f.rows,
                    examples=examples,
                )
            )
        return out
