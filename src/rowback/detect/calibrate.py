"""One scale for every detector: each raw signal becomes a z-like number, then [0, 1].

A policy threshold must mean the same thing whichever detector fired, so detectors never
invent their own squashing. They express evidence as a robust z (distance from the median
in robust standard deviations) or as a count against an expected rate (``poisson_z``,
the signed root of the likelihood ratio, which is z-like too), and ``score`` maps z to
[0, 1] with ``z**2 / (z**2 + 9)``: 0.5 at z = 3 (Elementary's default sensitivity),
0.8 at z = 6, 0.9 at z = 9. Below-median evidence scores 0: only excess is anomalous.

>>> score(0.0), score(3.0), round(score(6.0), 3)
(0.0, 0.5, 0.8)
>>> score(float("inf")), score(float("nan"))
(1.0, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import median

Z_HALF = 3.0
"""The z that scores 0.5."""

MAD_TO_SD = 1.4826
"""Scales a median absolute deviation to a standard deviation under normality."""


def score(z: float) -> float:
    """Map a z-like evidence value to [0, 1]; NaN and negative evidence score 0."""
    if math.isnan(z) or z <= 0:
        return 0.0
    if math.isinf(z):
        return 1.0
    r = Z_HALF / z  # this form cannot overflow for huge z
    return 1.0 / (1.0 + r * r)


def poisson_z(k: float, lam: float) -> float:
    """How surprising ``k`` events are when ``lam`` were expected, as a z (0 if k <= lam).

    Uses the Poisson likelihood-ratio (Chernoff) bound, which needs no special functions:
    one NULL where 0.001 were expected is z ~ 3.4 (0.57), ten are z ~ 11 (0.93).

    >>> poisson_z(1, 2.0)
    0.0
    >>> round(poisson_z(10, 0.01), 1)
    10.9
    """
    if k <= lam or k <= 0:
        return 0.0
    lam = max(lam, 1e-12)
    s = k * math.log(k / lam) - k + lam
    return math.sqrt(2.0 * max(s, 0.0))


def robust_z(x: float, history: Sequence[float], min_scale: float) -> float:
    """(x - median) / max(MAD-based sd, min_scale) over ``history``.

    ``min_scale`` keeps a perfectly regular history (MAD 0) from turning any deviation
    into an alarm.

    >>> robust_z(10.0, [1.0, 2.0, 3.0], 2.0)
    4.0
    """
    med = median(history)
    mad = median([abs(h - med) for h in history]) * MAD_TO_SD
    return (x - med) / max(mad, min_scale)
