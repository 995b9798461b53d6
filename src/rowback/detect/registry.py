"""Every built-in detector, in one list: the engine and the contract suite both read it."""

from __future__ import annotations

from rowback.detect.base import Detector
from rowback.detect.stats_outlier import OutlierDetector
from rowback.detect.stats_values import (
    CategoryDetector,
    ConstantDetector,
    FrozenDetector,
    NullsDetector,
    TimestampDetector,
)
from rowback.detect.stats_volume import RunawayDetector, VolumeDetector


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
    ]
