"""Every built-in detector, in one list: the engine and the contract suite both read it."""

from __future__ import annotations

from rowback.detect.base import Detector
from rowback.detect.stats_deletes import DeletesDetector
from rowback.detect.stats_outlier import OutlierDetector
from rowback.detect.stats_values import (
    CategoryDetector,
    ConstantDetector,
    FrozenDetector,
    NullsDetector,
    TimestampDetector,
)
from rowback.detect.stats_volume import RunawayDetector, VolumeDetector
from rowback.errors import RowbackError


def default_detectors() -> list[Detector]:
    """Fresh, untrained instances of the built-in detectors (one per name).

    >>> sorted(d.name for d in default_detectors())[:3]
    ['category', 'constant', 'frozen']
    """
    return [
        VolumeDetector(),
        RunawayDetector(),
        ConstantDetector(),
        NullsDetector(),
        OutlierDetector(),
        CategoryDetector(),
        TimestampDetector(),
        FrozenDetector(),
        DeletesDetector(),
    ]


_ML_MODULES = frozenset({"sklearn", "scipy", "joblib", "threadpoolctl"})
"""scikit-learn and what it imports: missing any of them means the extra is missing."""


def learned_detectors() -> list[Detector]:
    """Fresh learned detectors (the ``rowback[ml]`` extra); scikit-learn is imported only
    here, so the statistical detectors never need it."""
    try:
        from rowback.detect import learned
    except ImportError as e:
        if (e.name or "").split(".")[0] not in _ML_MODULES:
            raise  # a fault of ours, not a missing extra
        raise RowbackError(
            "the learned detectors need scikit-learn: pip install 'rowback[ml]' "
            "(the statistical detectors run without it)"
        ) from e
    return [learned.AutoencoderDetector(), learned.RateForecaster()]


def detectors(learned: bool) -> list[Detector]:
    """The built-in detectors, plus the learned ones when ``learned`` is set."""
    return default_detectors() + (learned_detectors() if learned else [])
