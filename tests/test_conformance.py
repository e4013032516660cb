"""Every forecaster keeps the same contract: the network and each baseline.

Fitted on the rows before a cut, each predicts from the full frame: one prediction per target
date, labelled by that date, none missing, and made from earlier rows only. The prediction for
target D is made at the close of the day before D, so changing the rows from D on must leave
every prediction for a target up to D exactly as it was, and must change the one for D + 1
(which reads row D): that pins the labels to the targets, not one step early or late.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coincast.models.baselines import BASELINES
from coincast.models.forecaster import Forecaster
from tests.conftest import one_torch_thread, tiny

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

WINDOW = 20
CUT, END, D = 500, 600, 550  # fit on rows [0, CUT); predict targets [CUT, END); perturb rows [D, END)


class NetworkForecaster:
    """Forecaster seen through the baselines' interface: predict -> Series of prices."""

    name = "model"

    def __init__(self, **data):
        self.model = Forecaster(tiny(window=WINDOW, **data))

    def fit(self, frame: pd.DataFrame) -> "NetworkForecaster":
        self.model.fit(frame)
        return self

    def predict(self, frame: pd.DataFrame, start=None) -> pd.Series:
        return self.model.predict(frame, start=start)["predicted"].rename(self.name)


MODELS = {
    "forecaster": lambda: NetworkForecaster(),
    "forecaster+indicators": lambda: NetworkForecaster(features=["close", "volume", "rsi14", "macd"]),
    **{cls.name: (lambda cls=cls: cls("close", WINDOW)) for cls in BASELINES},
}


def perturbed(frame: pd.DataFrame, first: int) -> pd.DataFrame:
    """Every value of rows first.. moved by a random factor (signs kept, OHLC order kept)."""
    out = frame.copy()
    noise = np.exp(np.random.default_rng(0).normal(0.0, 0.1, size=(len(frame) - first, 1)))  # one factor a row
    out.iloc[first:] = frame.iloc[first:].to_numpy() * noise
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_predictions_are_labelled_by_target_complete_and_causal(btc, name):
    frame = btc.iloc[:END]
    model = MODELS[name]().fit(frame.iloc[:CUT])
    start = frame.index[CUT]
    a = model.predict(frame, start=start)
    # one prediction per target date from the start, labelled by that date, none missing
    assert isinstance(a, pd.Series) and a.index.equals(frame.index[CUT:])
    assert a.notna().all() and np.isfinite(a.to_numpy()).all()
    # rows from D on changed: every prediction for a target up to D is made before D, so is unchanged
    b = model.predict(perturbed(frame, D), start=start)
    assert b.index.equals(a.index)
    when = frame.index[D]
    pd.testing.assert_series_equal(a[a.index <= when], b[b.index <= when], check_exact=True)
    # ...and the prediction for D + 1, made from row D, does change
    assert a.iloc[D + 1 - CUT] != b.iloc[D + 1 - CUT]


@pytest.mark.parametrize("name", [n for n in MODELS if n != "forecaster+indicators"])  # indicators need warm-up rows
def test_predictions_need_only_the_window_before_each_target(btc, name):
    """Given just the window - 1 rows before the first target (as walk-forward folds pass them),
    the predictions are complete and the same as from the whole history."""
    frame = btc.iloc[:END]
    model = MODELS[name]().fit(frame.iloc[:CUT])
    start = frame.index[CUT]
    short = model.predict(frame.iloc[CUT - WINDOW + 1 :], start=start)
    assert short.index.equals(frame.index[CUT:]) and short.notna().all()
    # equal up to rounding: a rolling mean's running sum starts at another row
    pd.testing.assert_series_equal(short, model.predict(frame, start=start), check_exact=False, rtol=1e-10)
