"""Small seeded scikit-learn networks for the learned detectors: construction, a fast
forward pass, reproducible JSON-able state and the error baselines they are judged by.

Inference is a plain numpy forward pass over the fitted weights (``predict`` validates
its input on every call, which costs ten times the maths on one row).

State is a base64 pickle. Pickle runs code when loaded, so it must only ever come from
the user's own store, which holds detector state beside the changes it learned from; it
is never read from anywhere else. A network saved by another scikit-learn version is not
loaded (``thaw`` gives None) and its table starts learning again.
"""

from __future__ import annotations

import base64
import math
import pickle
from collections.abc import Iterable
from typing import Any

import numpy as np
import sklearn
from sklearn.neural_network import MLPRegressor

from rowback.detect.stats import US_PER_MINUTE

SEED = 0
STEPS = 8
"""Adam steps per training round."""
US_PER_DAY = 24 * 60 * US_PER_MINUTE
_MONDAY_SHIFT = 3
"""1970-01-01 was a Thursday: shifting by 3 days puts Monday at 0."""
_Q95_Z = 1.6449


def net(hidden: tuple[int, ...], batch: int) -> Any:
    """One seeded network taking ``STEPS`` steps per ``partial_fit`` of ``batch`` points;
    no shuffling, so training depends only on the points and their order."""
    return MLPRegressor(
        hidden_layer_sizes=hidden,
        random_state=SEED,
        batch_size=batch // STEPS,
        learning_rate_init=0.003,  # 0.01 oscillates: a cluster it forgets, it never relearns
        shuffle=False,
    )


def forward(model: Any, x: np.ndarray) -> np.ndarray:
    """What ``model.predict`` computes (ReLU hidden layers, identity output), in 2-D."""
    h = x
    last = len(model.coefs_) - 1
    for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        h = h @ w + b
        if i < last:
            h = np.maximum(h, 0.0)
    return h


def fit(model: Any, x: np.ndarray, y: np.ndarray) -> None:
    model.partial_fit(x, y)
    model.loss_curve_ = model.loss_curve_[-1:]  # it grows by one per call: keep state bounded


def _plain(v: Any) -> Any:
    """Numpy scalars as Python ones (pickle memoises numpy scalars, Python floats not)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _parts(obj: Any) -> dict[str, bytes]:
    # One pickle per attribute: pickle records objects shared between attributes as
    # back-references, and which small objects happen to be shared differs between a
    # model and its reloaded copy, so one pickle of the whole would not be reproducible.
    # No attribute of a fitted MLPRegressor aliases another (the optimizer is handed
    # the weights on each update), so nothing is lost.
    return {k: pickle.dumps(_plain(v), protocol=5) for k, v in vars(obj).items()}


def _unparts(cls: Any, parts: dict[str, bytes]) -> Any:
    obj = cls.__new__(cls)
    obj.__dict__.update({k: pickle.loads(b) for k, b in parts.items()})  # trusted state
    return obj


def freeze(model: Any) -> str:
    """A fitted network as a base64 pickle, byte-identical for equal models.

    Trusted data only: see the module docstring.
    """
    opt = model.__dict__.get("_optimizer")
    parts = _parts(model)
    parts.pop("_optimizer", None)
    opt_parts = None if opt is None else (type(opt), _parts(opt))
    blob = pickle.dumps((sklearn.__version__, parts, opt_parts), protocol=5)
    return base64.b64encode(blob).decode("ascii")


def thaw(blob: str | None) -> Any:
    """The network ``freeze`` encoded (from the user's own store only), or None when
    there is none or another scikit-learn version saved it (its internals may differ)."""
    if blob is None:
        return None
    version, parts, opt_parts = pickle.loads(base64.b64decode(blob))  # trusted state
    if version != sklearn.__version__:
        return None
    model = _unparts(MLPRegressor, parts)
    if opt_parts is not None:
        model._optimizer = _unparts(*opt_parts)
    return model


def baseline(values: Iterable[float], min_scale: float, median: bool) -> tuple[float, float]:
    """(centre, scale) of past errors: the centre is their median, or 0 when ``median``
    is false (residuals of a forecast are measured from the forecast itself); the scale
    is how far the 95th percentile lies above the centre, in sds of a normal.

    Only excess is ever anomalous, so only the upper tail sets the scale: a history that
    is mostly idle minutes (residuals piled just below 0) cannot make busy ones extreme.

    >>> baseline([0.0, 1.0, 2.0, 3.0, 4.0], 0.1, median=True)
    (2.0, 1.094...)
    """
    a = np.fromiter(values, dtype=np.float64)
    centre = float(np.median(a)) if median else 0.0
    return centre, max((float(np.quantile(a, 0.95)) - centre) / _Q95_Z, min_scale)


def clock(us: int) -> list[float]:
    """Hour of day and day of week as points on two circles (23:59 is next to 00:00).

    >>> [round(x, 3) for x in clock(0)]  # Thursday 00:00
    [0.0, 1.0, 0.434, -0.901]
    """
    day = us / US_PER_DAY
    hod = 2 * math.pi * (day % 1.0)
    dow = 2 * math.pi * (((day + _MONDAY_SHIFT) % 7.0) / 7.0)
    return [math.sin(hod), math.cos(hod), math.sin(dow), math.cos(dow)]
