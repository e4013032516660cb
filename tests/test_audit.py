"""Look-ahead audit on real BTC: every model and feature passes; a planted peek is caught."""

import re

import pytest

from coincast.backtest.audit import audit_backtest, audit_features, audit_risk, perturb
from coincast.backtest.engine import BacktestSettings
from coincast.backtest.trading import TradingSettings
from coincast.data import load
from coincast.prep.features import ALL_FEATURES, add_features
from tests.conftest import one_torch_thread, tiny, tiny_flags

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def raw():
    return load("btc-usd").iloc[-300:]


def peek(frame):
    """A leaky feature: tomorrow's close, known today."""
    return frame.assign(peek=frame["close"].shift(-1)).iloc[:-1]


BT = BacktestSettings(start="2025-12-01")
LONG_SHORT_VOL = TradingSettings(mode="long_short", sizing="vol", threshold_pct=0.1)


def test_perturbation_moves_every_value_from_the_cutoff_only(raw):
    p = perturb(raw, 250)
    assert (p.iloc[:250] == raw.iloc[:250]).all().all()
    assert (p.iloc[250:] != raw.iloc[250:]).all().all() and (p.iloc[250:] > 0).all().all()


@pytest.mark.parametrize("model", [{}, {"cell": "gru", "bidirectional": False}, {"target": "window"}])
def test_every_model_passes_on_all_features(raw, model):
    res = audit_backtest(raw, tiny(window=12, target="close", model=model), BT, LONG_SHORT_VOL, lambda f: add_features(f, ALL_FEATURES), "close")
    assert res.passed, res.summary()
    # the default cut-off is in the middle of the second fold (folds of 7 days from 2025-12-01): every
    # forecast, interval and position of the 11 days 2025-12-01..11 is compared
    assert str(res.cutoff.date()) == "2025-12-11"
    for name in ["model", "persistence", "drift", "moving_average", "ar", "lo80", "hi95", "position model", "position ar"]:
        assert res.compared[name] == 11, name
    assert "passed" in res.summary()


def test_warm_refits_pass(raw):
    bt = BacktestSettings(start="2025-12-01", refit="warm", warm_epochs=1)
    assert audit_backtest(raw, tiny(window=12, target="close"), bt, TradingSettings(), lambda f: f, "close").passed


def test_every_feature_is_causal(raw):
    res = audit_features(load("btc-usd"), lambda f: add_features(f, ALL_FEATURES), "2025-06-01")
    assert res.passed, res.summary()
    assert len(res.compared) == 17


def test_planted_one_day_peek_is_flagged(raw):
    res = audit_backtest(raw, tiny(window=12, target="close"), BT, TradingSettings(), peek, "close")
    assert not res.passed
    # the network's output for the cut-off day read the cut-off day (the shrunk forecast can hide
    # it: shrinkage fitted to 0 turns the forecast into persistence)
    assert res.leaks["network"] == str(res.cutoff)
    assert "LOOK-AHEAD LEAK" in res.summary()
    feats = audit_features(raw, peek, res.cutoff)
    assert list(feats.leaks) == ["feature peek"]
    assert feats.leaks["feature peek"] == str(raw.index[raw.index.searchsorted(res.cutoff) - 1])


def test_cli_audit_passes(cli, tmp_path):
    p = cli("audit", "--start", "2025-11-01", *tiny_flags("audit", window=12), cwd=tmp_path)
    assert p.returncode == 0, p.stderr  # exit 1 when the audit fails
    assert p.stdout.count("look-ahead audit passed") == 3, p.stdout
    # every risk model the walk holds (with btc-usd-1h, the default hourly series, those on realized measures too)
    assert re.search(r"risk quantiles of empirical, ewma_t, garch_t, har_t(, \w+)*, network(, \w+)*: look-ahead audit passed",
                     p.stdout), p.stdout


def test_bad_cutoff(raw):
    from coincast.errors import ConfigError, DataError

    with pytest.raises(ConfigError, match="not a date"):
        audit_features(raw, peek, "soon")
    with pytest.raises(DataError, match="outside the data"):
        audit_features(raw, peek, "2031-01-01")


def test_risk_audit_flags_a_walk_that_peeks(raw, monkeypatch):
    """The risk audit passes on the real walk; a GARCH that forecasts each day from data including
    that day's own return is flagged; candles without high/low are not audited."""
    import numpy as np

    from coincast.models import risk_baselines

    full = load("btc-usd").iloc[-700:]  # 699 returns: too few for the network, the baselines only
    cutoff = full.index[-12]
    ok = audit_risk(full, cutoff)
    assert ok.passed and list(ok.compared) == ["risk empirical", "risk ewma_t", "risk garch_t", "risk har_t"]
    forecast = risk_baselines.GarchT.forecast
    def peeking(self, r, gk, first, tau):  # day t's quantiles from r[:t + 1]: its own return
        q = forecast(self, r, gk, first, tau)  # [n + 1 - first, K]: row t from r[:t]
        return np.vstack([q[1:], q[-1:]])  # row t from r[:t + 1]; the last row as it was

    monkeypatch.setattr(risk_baselines.GarchT, "forecast", peeking)
    leaky = audit_risk(full, cutoff)
    assert list(leaky.leaks) == ["risk garch_t"] and leaky.leaks["risk garch_t"] <= str(cutoff)
    assert "not apply" in audit_risk(full.drop(columns=["high", "low"]), cutoff)
