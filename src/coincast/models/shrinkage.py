"""Shrinkage towards persistence: forecast = previous + a * (network - previous), a in [0, 1].

a = 0 is "tomorrow = today" exactly. Two places a can be fitted:

- `fit_shrinkage`: on a model's own validation windows (`coincast run`'s single split).
- `record_shrinkage`: on the out-of-sample record of forecasts already scored (a backtest's
  earlier folds, whose targets all lie before the fold being forecast). With fewer than
  `min_record` forecasts the record shows no skill, and the forecast is persistence.
"""

from __future__ import annotations

import numpy as np

MIN_RECORD = 28  # scored forecasts before the record may move a off 0 (four weekly folds)
# Standard errors the record's a is lowered by before it may leave 0: the smallest z (in steps of
# 0.5) that kept every bundled coin within noise of persistence on both tuning periods before
# `make skill`'s test period (benchmarks/skill_rule.py; the tables: benchmarks/results/HISTORY.md).
RECORD_Z = 2.5


def shrunk(network, previous, a: float):
    """previous + a * (network - previous): the forecast a serves (floats, arrays or Series alike)."""
    return previous + a * (network - previous)


def fit_shrinkage(actual: np.ndarray, model: np.ndarray, prev: np.ndarray) -> float:
    """Least-squares a in [0, 1] for prev + a * (model - prev), from validation windows only.

    a = 0 (persistence) when the model's moves do not line up with the real ones at all.
    """
    real, pred = actual / prev - 1.0, model / prev - 1.0  # [N] relative moves
    denom = float(np.dot(pred, pred))
    return float(np.clip(np.dot(real, pred) / denom, 0.0, 1.0)) if denom > 0 else 0.0


def record_shrinkage(
    actual: np.ndarray, network: np.ndarray, prev: np.ndarray,
    size: int | None = None, min_record: int = MIN_RECORD, z: float | None = None,
) -> float:
    """a from a record of scored forecasts (the latest `size` of them; None: all).

    `network`: the forecasts before shrinkage. The least-squares a, lowered by `z` standard
    errors (a one-sided lower bound: a record that shows no clear skill gives 0), clipped to
    [0, 1]; 0 when the record is shorter than `min_record`. `z` None: `RECORD_Z`, read at the call.
    """
    z = RECORD_Z if z is None else z
    actual, network, prev = (np.asarray(x, dtype=np.float64) for x in (actual, network, prev))
    if size is not None:
        actual, network, prev = actual[-size:], network[-size:], prev[-size:]
    n = len(actual)
    if n < max(min_record, 2):
        return 0.0
    real, pred = actual / prev - 1.0, network / prev - 1.0  # [n] relative moves
    denom = float(np.dot(pred, pred))
    if denom <= 0:
        return 0.0
    a = float(np.dot(real, pred)) / denom
    se = float(np.sqrt(np.sum((real - a * pred) ** 2) / (n - 1) / denom))
    return float(np.clip(a - z * se, 0.0, 1.0))
