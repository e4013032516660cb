"""Trivial forecasts every model must beat, with the same estimator shape as `Forecaster`.

Each predicts the target at row t from rows before t only. "Always up" is a direction
rule with no price, so it lives in the metrics, not here.
"""

from __future__ import annotations

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


BASELINES = (Persistence, Drift)
