"""The look-ahead audit covers what users run: inputs from build_inputs (every indicator and an
exogenous series, perturbed after the cut-off too), shrinkage on; a peeking series is flagged."""

import pandas as pd
import pytest

import coincast.data.exogenous as exogenous
from coincast.backtest.audit import audit_backtest, audit_features, inputs_transform
from coincast.backtest.engine import BacktestSettings
from coincast.backtest.trading import TradingSettings
from coincast.config import Settings
from coincast.data import load
from tests.conftest import one_torch_thread

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

ALL = ["close", "volume", "rsi14", "macd", "bb20", "atr14", "obv", "ema20", "sma50", "logret1", "vol20", "gk"]
BT = BacktestSettings(start="2025-12-01")


@pytest.fixture(scope="module")
def raw():
    return load("btc-usd").iloc[-300:]


def users_settings() -> Settings:
    s = Settings()  # shrinkage on, as users run it
    s.data.window, s.model.hidden, s.train.epochs, s.data.target = 12, [4], 1, "close"
    s.data.features, s.data.exog = list(ALL), ["fear-greed"]
    return s


def test_inputs_users_build_pass_with_shrinkage_on(raw):
    s = users_settings()
    assert s.model.shrink
    res = audit_backtest(raw, s, BT, TradingSettings(sizing="vol"))
    assert res.passed, res.summary()
    for name in ["model", "network", "persistence", "lo80", "hi95", "position model"]:
        assert res.compared[name] >= 10
    feats = audit_features(raw, inputs_transform(s), res.cutoff)
    assert feats.passed, feats.summary()
    assert "feature fear_greed" in feats.compared and "feature logret1" in feats.compared


def test_exogenous_series_that_peeks_a_day_ahead_is_flagged(raw, monkeypatch):
    # a broken publication rule: the value dated D+1 is joined onto candle D (one day into the future)
    monkeypatch.setitem(exogenous.KNOWN, "start", pd.Timedelta(days=-1))
    s = users_settings()
    s.data.features = ["close"]
    res = audit_backtest(raw, s, BT, TradingSettings())
    assert not res.passed and "LOOK-AHEAD LEAK" in res.summary()
    assert res.leaks["network"] == str(res.cutoff)  # the forecast for the cut-off day read the cut-off day's value
    feats = audit_features(raw, inputs_transform(s), res.cutoff)
    assert list(feats.leaks) == ["feature fear_greed"]
    assert feats.leaks["feature fear_greed"] == str(raw.index[raw.index.searchsorted(res.cutoff) - 1])
