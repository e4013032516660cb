"""Trivial forecasts every model must beat, with the same estimator shape as `Forecaster`.

Each predicts the target at row t from rows before t only. "Always up" is a direction
rule with no price, so it lives in the metrics, not here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class Persistence:
    """Tomorrow = today: the last observed price."""

    name = "persistence"

    def __init__(self, target: str, window: int = 50):
        self.target, self.window = target, window

    def fit(self, frame: pd.DataFrame) -> "Persistence":
        return self

    def _predict_all(self, price: pd.Series) -> pd.Series:
        return price.shift(1)

    def predict(self, frame: pd.DataFrame, start=None) -> pd.Series:
        """Prediction for each row that has a full input window before it (label >= start)."""
        price = frame[self.target]
        pred = self._predict_all(price).iloc[self.window - 1 :]
        return (pred if start is None else pred[pred.index >= start]).rename(self.name)


class Drift(Persistence):
    """The last price plus the average step over the input window (the random walk with drift)."""

    name = "drift"

    def _predict_all(self, price: pd.Series) -> pd.Series:
        steps = self.window - 2  # rows t-L+1 .. t-1 span L-2 steps
        last, first = price.shift(1), price.shift(self.window - 1)
        return last + (last - first) / max(steps, 1)



class MovingAverage(Persistence):
    """The mean of the last `n` observed prices (n = 7, or window-1 if shorter)."""

    name = "moving_average"

    def __init__(self, target: str, window: int = 50, n: int = 7):
        super().__init__(target, window)
        self.n = max(1, min(n, window - 1))

    def _predict_all(self, price: pd.Series) -> pd.Series:
        return price.shift(1).rolling(self.n).mean()


class AutoRegressive(Persistence):
    """Linear AR(p) on one-step log returns, least squares on the training frame only.

    The forecast is the last price times exp(predicted return); p = 5, or window-2 if shorter.
    """

    name = "ar"

    def __init__(self, target: str, window: int = 50, p: int = 5):
        super().__init__(target, window)
        self.p = max(1, min(p, window - 2))

    def _design(self, price: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        r = np.log(price.to_numpy(dtype=np.float64))
        r = np.diff(r, prepend=np.nan)  # [T] return into row t
        lags = np.column_stack([np.roll(r, k) for k in range(1, self.p + 1)])  # [T, p] r_{t-1..t-p}
        lags[: self.p] = np.nan
        return r, lags

    def fit(self, frame: pd.DataFrame) -> "AutoRegressive":
        r, lags = self._design(frame[self.target])
        ok = np.isfinite(r) & np.isfinite(lags).all(axis=1)
        self.coef_ = np.zeros(self.p + 1)
        if ok.sum() > 2 * (self.p + 1):
            A = np.column_stack([np.ones(ok.sum()), lags[ok]])
            self.coef_ = np.linalg.lstsq(A, r[ok], rcond=None)[0]
        return self

    def _predict_all(self, price: pd.Series) -> pd.Series:
        _, lags = self._design(price)
        ret = self.coef_[0] + lags @ self.coef_[1:]  # [T] predicted return into row t
        return price.shift(1) * np.exp(ret)


BASELINES = (Persistence, Drift, MovingAverage, AutoRegressive)
