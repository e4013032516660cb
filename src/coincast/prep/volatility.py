"""Range-based volatility of each candle, and its HAR averages (issue 16).

Each estimator turns one candle's open/high/low/close into a variance of its log return, known
when the candle closes. Units: squared log return; `PERCENT2` (1e4) turns them into percent^2,
the units of returns in percent.

- Parkinson (1980): (ln H/L)^2 / (4 ln 2), from the range alone.
- Garman-Klass (1980): 0.5 (ln H/L)^2 - (2 ln 2 - 1) (ln C/O)^2, range and body together; the
  more efficient of the two for a driftless diffusion. Never negative: the body is at most the
  range, and then it keeps (1/2 - (2 ln 2 - 1)) = 0.114 of (ln H/L)^2.

Both measure the variance within the candle (open to close). On a 24/7 market the next candle
opens at this one's close, so that is nearly the close-to-close variance; a baseline that uses
them still fits its own scale to the returns (models/risk_baselines.py).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from coincast.errors import DataError

PERCENT2 = 1e4  # squared log return -> percent^2
HAR_WINDOWS = (1, 7, 30)  # days averaged: the day, the week, the month (Corsi 2009)
_CANDLE = ("open", "high", "low", "close")


def _candles(frame: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """open, high, low, close [T] each as floats, or a DataError naming what is wrong."""
    missing = [c for c in _CANDLE if c not in frame.columns]
    if missing:
        raise DataError(f"range-based volatility needs candle columns open, high, low, close; missing {', '.join(missing)}")
    o, h, l, c = (frame[col].to_numpy(float) for col in _CANDLE)  # [T] each
    if not (np.all(np.isfinite([o, h, l, c])) and np.all(np.array([o, h, l, c]) > 0)):
        raise DataError("range-based volatility needs positive, finite prices in open/high/low/close")
    if np.any(h < np.maximum(o, c)) or np.any(l > np.minimum(o, c)):
        raise DataError("a candle's high is below its open/close or its low above them: check the columns' order")
    return o, h, l, c


def parkinson(frame: pd.DataFrame) -> pd.Series:
    """[T] Parkinson variance of each candle (squared log return)."""
    _, h, l, _ = _candles(frame)
    return pd.Series(np.log(h / l) ** 2 / (4 * math.log(2)), index=frame.index, name="parkinson")


def garman_klass(frame: pd.DataFrame) -> pd.Series:
    """[T] Garman-Klass variance of each candle (squared log return)."""
    o, h, l, c = _candles(frame)
    gk = 0.5 * np.log(h / l) ** 2 - (2 * math.log(2) - 1) * np.log(c / o) ** 2
    return pd.Series(gk, index=frame.index, name="garman_klass")


def har_averages(variance, windows=HAR_WINDOWS) -> np.ndarray:
    """[T, len(windows)] The mean of `variance` [T] over the last w rows up to and including each
    row (known at that row's close); NaN where fewer than w rows exist."""
    v = pd.Series(np.asarray(variance, float))
    return np.column_stack([v.rolling(w, min_periods=w).mean().to_numpy() for w in windows])
