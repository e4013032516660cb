"""`coincast run` and `coincast backtest` feed the model the same inputs (one input contract).

The first fold of a backtest whose cut is run's cut trains on exactly the arrays run trains
on: the same windows X, y (training and validation) and the same normalisation rules, scales
and centres, with indicators and an exogenous series among the inputs.
"""

import numpy as np
import pandas as pd
import pytest

import coincast.models.forecaster as forecaster_module
from coincast.backtest.engine import BacktestSettings
from coincast.backtest.trading import TradingSettings
from coincast.config import Settings
from coincast.data import load
from coincast.flows.backtest import run_backtest
from coincast.flows.run import run
from coincast.models.forecaster import Forecaster
from coincast.prep.inputs import build_inputs
from tests.conftest import one_torch_thread

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

FEATURES = ["close", "rsi14", "macd", "logret1"]


def tiny() -> Settings:
    s = Settings()
    s.data.window, s.model.hidden, s.train.epochs, s.data.target = 12, [4], 1, "close"
    s.data.features, s.data.exog = list(FEATURES), ["fear-greed"]
    return s


@pytest.fixture
def data(tmp_path):
    raw = load("btc-usd").loc["2024-06-01":].copy()
    raw.iloc[300, raw.columns.get_loc("close")] = raw["close"].iloc[299]  # an unchanged close: logret1 is a real 0
    path = tmp_path / "btc.csv"
    raw.rename_axis("timestamp").to_csv(path)
    return path


def spy(monkeypatch) -> tuple[list, list]:
    """Record the arrays every training call gets and every fitted Forecaster, then run the real ones."""
    calls, fitted = [], []
    real_train, real_fit = forecaster_module.train, Forecaster.fit

    def train(module, X, y, X_val, y_val, *args, **kwargs):
        calls.append({"X": X.copy(), "y": y.copy(), "X_val": X_val.copy(), "y_val": y_val.copy()})
        return real_train(module, X, y, X_val, y_val, *args, **kwargs)

    def fit(self, *args, **kwargs):
        fitted.append(real_fit(self, *args, **kwargs))
        return fitted[-1]

    monkeypatch.setattr(forecaster_module, "train", train)
    monkeypatch.setattr(Forecaster, "fit", fit)
    return calls, fitted


def test_first_backtest_fold_sees_the_arrays_run_builds(data, tmp_path, monkeypatch):
    calls, fitted = spy(monkeypatch)
    r = run(str(data), tiny(), runs_dir=tmp_path / "runs")
    ran, ran_model = calls[0], fitted[0]  # the model (a price-only one is trained after it for comparison)
    cut = r.forecast.index[0]
    assert "logret1" in ran_model.columns_ and "fear_greed" in ran_model.columns_
    n_test = len(r.forecast)

    calls.clear(), fitted.clear()
    # one fold, cut at run's cut, its shrinkage fitted on validation as run fits it (a backtest's
    # default fits it on the earlier folds' record, which a first fold does not have)
    bt = BacktestSettings(start=str(cut.date()), retrain_every=n_test, shrink_from="validation")
    b = run_backtest(str(data), tiny(), bt, TradingSettings(), runs_dir=tmp_path / "bt", n_boot=20)
    assert len(b.result.folds) == 1 and b.result.table.index[0] == cut
    fold, fold_model = calls[0], fitted[0]

    assert fold_model.columns_ == ran_model.columns_
    for key in ("X", "y", "X_val", "y_val"):
        np.testing.assert_array_equal(fold[key], ran[key], err_msg=key)
    a, b_ = ran_model.normaliser_, fold_model.normaliser_
    assert b_.rules == a.rules
    assert dict(zip(a.columns, a.rules))["logret1"] == "none" and dict(zip(a.columns, a.rules))["rsi14"] == "standard"
    np.testing.assert_array_equal(b_.scales, a.scales)
    np.testing.assert_array_equal(b_.centers, a.centers)
    pd.testing.assert_series_equal(b.result.table["model"], r.forecast["model"].loc[b.result.table.index],
                                   check_names=False)


def test_a_genuine_zero_indicator_value_is_kept(data):
    raw = load(str(data))
    built = build_inputs(raw, "close", FEATURES, ["fear-greed"])
    zeros = built.frame["logret1"] == 0
    assert zeros.sum() >= 1
    f = Forecaster(tiny()).fit(built.rows(0, 250))
    assert f.columns_ == list(built.frame.columns)
    # the Inputs are used as they are: nothing is zero-filled again, the declared rules hold
    assert dict(zip(f.normaliser_.columns, f.normaliser_.rules))["logret1"] == "none"
    pred = f.predict(built, start=built.index[250])
    assert len(pred) == len(built) - 250
    np.testing.assert_allclose(pred["predicted"], f.predict(raw, start=built.index[250])["predicted"])  # raw: same


def test_saved_model_forecasts_from_raw_candles(data, tmp_path):
    raw = load(str(data))
    built = build_inputs(raw, "close", FEATURES, ["fear-greed"])
    f = Forecaster(tiny()).fit(built.rows(0, 250))
    f.save(tmp_path / "m")
    again = Forecaster.load(tmp_path / "m")
    assert again.forecast_next(raw) == f.forecast_next(raw)
