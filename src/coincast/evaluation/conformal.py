"""Split-conformal prediction intervals from held-out residuals, and their measured coverage.

Each fold's model is scored on its calibration windows (the later part of the chronological
validation tail of its training span: never used for gradient steps, early stopping or the
shrinkage factor) and on the out-of-sample errors of the folds before it
(backtest.engine.calibration_pool). The nonconformity score is the absolute
error relative to the last observed price, |actual - predicted| / previous, so one fold's
quantile applies at any price level. The interval for a forecast is
predicted +- q * previous, with q the split-conformal quantile of the fold's scores.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

LEVELS = (0.8, 0.95)


def scores(actual, predicted, previous) -> np.ndarray:
    """Nonconformity scores: absolute error as a share of the last observed price."""
    a, p, prev = (np.asarray(x, dtype=np.float64) for x in (actual, predicted, previous))
    return np.abs(a - p) / prev


def quantile(s: np.ndarray, level: float) -> float:
    """The ceil((n+1) * level)-th smallest score: coverage >= level under exchangeability.

    With too few scores for that rank the interval is unbounded (inf), as the theory says.
    """
    s = np.sort(np.asarray(s, dtype=np.float64))
    n = len(s)
    k = math.ceil((n + 1) * level)
    return float(s[k - 1]) if 1 <= k <= n else math.inf


def column(level: float, side: str) -> str:
    return f"{side}{round(100 * level)}"


def add_intervals(table: pd.DataFrame, q: pd.DataFrame, model: str = "model") -> pd.DataFrame:
    """Add lo80/hi80/lo95/hi95 columns; `q` has one quantile column per level, row-aligned."""
    out = table.copy()
    for level in q.columns:
        half = q[level].to_numpy() * out["previous"].to_numpy()
        out[column(level, "lo")] = out[model].to_numpy() - half
        out[column(level, "hi")] = out[model].to_numpy() + half
    return out


def coverage(table: pd.DataFrame, levels=LEVELS) -> dict:
    """Share of days whose actual price fell inside each interval, and its mean width."""
    out = {}
    for level in levels:
        lo, hi = table[column(level, "lo")], table[column(level, "hi")]
        inside = (table["actual"] >= lo) & (table["actual"] <= hi)
        width = (hi - lo) / table["previous"]
        out[f"{round(100 * level)}%"] = {
            "nominal": level,
            "coverage": float(inside.mean()),
            "mean_width_pct": float(100 * width[np.isfinite(width)].mean()) if np.isfinite(width).any() else None,
            "n": int(len(table)),
        }
    return out
