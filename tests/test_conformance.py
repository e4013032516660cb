"""Every forecaster keeps the same contract: the network and each baseline, point and risk models.

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

import inspect

from coincast import load
from coincast.evaluation.risk import LEVELS
from coincast.models import risk_baselines as rb
from coincast.models.baselines import BASELINES
from coincast.models.forecaster import Forecaster
from coincast.models.risk_network import NetworkRisk
from coincast.models.risk_walk import percent_returns
from coincast.prep import realized
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


# -- risk models: the estimator shape and causal forecasts -------------------------------------

RISK_MODELS = {
    "empirical": rb.Empirical, "ewma_t": rb.EwmaT, "garch_t": rb.GarchT, "har_t": rb.HarT,
    "har_rv": rb.HarRV, "harq": rb.Harq,
    "network": lambda: NetworkRisk(window=10, hidden=4, calibration=60, selection=60, max_epochs=2, min_record=30),
}
RISK_CUT, RISK_END, RISK_D = 560, 580, 570  # fit on returns [0, RISK_CUT); forecast days RISK_CUT..RISK_END; perturb from RISK_D


@pytest.fixture(scope="module")
def risk_inputs(btc):
    """Returns, Garman-Klass variances and realized measures of BTC's 600 days to 2025-12-01."""
    candles = btc.loc[:"2025-12-01"].iloc[-600:]
    r, gk, index = percent_returns(candles)
    hourly = load("btc-usd-1h").loc[str(index[0].date()) : "2025-12-01 23:00"]
    rm, _ = realized.model_inputs(realized.on_days(realized.daily_measures(hourly), index), gk)
    return r, gk, rm


@pytest.mark.parametrize("name", list(RISK_MODELS))
def test_risk_models_are_estimators_with_causal_forecasts(risk_inputs, name):
    """Settings in __init__ and no work there (each keyword kept under its name, nothing learned),
    `fit` returns self and adds only state ending in `_`; forecasts and variances of each day are
    made from the rows before it: rows changed from D on move nothing up to D and move D + 1."""
    r, gk, rm = risk_inputs
    model = RISK_MODELS[name]()
    for p in list(inspect.signature(type(model).__init__).parameters)[1:]:
        assert hasattr(model, p), p
    assert not [k for k in vars(model) if k.endswith("_")]
    before = set(vars(model))
    assert model.fit(r[:RISK_CUT], gk[:RISK_CUT], rm[:RISK_CUT]) is model
    learned = set(vars(model)) - before
    assert learned and all(k.endswith("_") for k in learned), learned

    def both(r, gk, rm):
        return (model.forecast(r, gk, RISK_CUT, LEVELS, rm), model.variance(r, gk, RISK_CUT, rm))

    n = RISK_END
    q, v = both(r[:n], gk[:n], rm[:n])  # days RISK_CUT..n
    assert q.shape == (n + 1 - RISK_CUT, len(LEVELS)) and v.shape == (n + 1 - RISK_CUT,)
    assert np.isfinite(q).all() and (np.diff(q, axis=1) >= 0).all() and (v > 0).all()
    moved_r, moved_gk, moved_rm = r[:n].copy(), gk[:n].copy(), rm[:n].copy()
    moved_r[RISK_D:] *= -3
    moved_gk[RISK_D:] *= 4
    for field in realized.MEASURES:
        moved_rm[field][RISK_D:] *= 4
    q2, v2 = both(moved_r, moved_gk, moved_rm)
    upto = RISK_D - RISK_CUT + 1  # the rows of days RISK_CUT..RISK_D
    np.testing.assert_array_equal(q[:upto], q2[:upto])
    np.testing.assert_array_equal(v[:upto], v2[:upto])
    if name != "empirical":  # its quantiles hold for the fold
        assert not np.allclose(q[upto], q2[upto]) and v[upto] != v2[upto]
