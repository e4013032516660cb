"""Trading simulation: positions, costs, stops and metrics checked by hand on small tables."""

import math

import numpy as np
import pandas as pd
import pytest

from coincast.backtest import trading
from coincast.backtest.trading import TradingSettings
from coincast.data import load
from coincast.errors import ConfigError
from coincast.evaluation import stats


def _table(prices, predicted, **cols):
    p = np.asarray(prices, float)
    idx = pd.date_range("2024-01-02", periods=len(p) - 1, freq="D", tz="UTC")
    t = pd.DataFrame({"actual": p[1:], "previous": p[:-1], "model": predicted}, index=idx)
    for k, v in cols.items():
        t[k] = v
    return t


def test_buy_and_hold_pays_one_entry_fee():
    t = _table([100, 110, 99, 120], [0, 0, 0])
    s = TradingSettings(fee_bps=10, slippage_bps=5)
    sim = trading.simulate(t, np.ones(3), s)
    c = 0.0015
    np.testing.assert_allclose(sim["net"], [0.10 - c, -0.10, 120 / 99 - 1])
    assert sim["equity"].iloc[-1] == pytest.approx((1.1 - c) * 0.9 * (120 / 99))
    assert sim["traded"].sum() == 1.0


def test_long_flat_threshold_and_costs_by_hand():
    # predicted moves: +2%, +0.5%, -1%, +3%; threshold 1% -> long, flat, flat, long
    t = _table([100, 101, 102, 103, 104], [102, 101 * 1.005, 102 * 0.99, 103 * 1.03])
    s = TradingSettings(threshold_pct=1.0, fee_bps=20, slippage_bps=0)
    pos = trading.signal(t, "model", s)
    np.testing.assert_array_equal(pos, [1, 0, 0, 1])
    sim = trading.simulate(t, pos, s)
    np.testing.assert_allclose(sim["traded"], [1, 1, 0, 1])  # enter, exit, -, enter
    np.testing.assert_allclose(sim["net"], [0.01 - 0.002, -0.002, 0.0, 104 / 103 - 1 - 0.002])
    m = trading.metrics(sim, 365)
    assert m["n_trades"] == 3 and m["exposure"] == 0.5 and m["hit_rate"] == 1.0


def test_long_short_signal():
    t = _table([100, 100, 100], [99, 101])
    assert list(trading.signal(t, "model", TradingSettings(mode="long_short"))) == [-1, 1]
    assert list(trading.signal(t, "model", TradingSettings())) == [0, 1]


def test_stop_loss_take_profit_on_the_days_high_low():
    prices = [100, 101, 100, 100, 100]
    t = _table(prices, [110] * 4,
               open=[100, 101, 97, 100], high=[102, 106, 101, 104], low=[94, 100, 96, 99])
    s = TradingSettings(stop_loss_pct=5, take_profit_pct=4, fee_bps=0, slippage_bps=0)
    sim = trading.simulate(t, np.ones(4), s)
    # day 1: low 94 <= 95 -> stop at -5% (high 102 below TP 104)
    # day 2: high 106 >= 104.04 (TP of prev 101) -> +4%
    # day 3: open 97 gaps below the stop 95? no (95 = 100*0.95); low 96 -> no stop; close 100/100
    # day 4: high 104 >= 104 -> take profit +4%
    np.testing.assert_allclose(sim["gross"], [-0.05, 0.04, 0.0, 0.04])
    assert list(sim["exited"]) == [True, True, False, True]
    # both touched the same day -> the stop is assumed first; a gap through the stop fills at the open
    t2 = _table([100, 100, 100], [110, 110], open=[100, 90], high=[110, 101], low=[90, 85])
    sim2 = trading.simulate(t2, np.ones(2), s)
    np.testing.assert_allclose(sim2["gross"], [-0.05, -0.10])
    # a stopped-out day pays to exit and the next day pays to re-enter
    s_cost = TradingSettings(stop_loss_pct=5, fee_bps=10, slippage_bps=0)
    sim3 = trading.simulate(t2, np.ones(2), s_cost)
    np.testing.assert_allclose(sim3["traded"], [2, 2])


def test_short_stop_and_volatility_sizing():
    t = _table([100, 100], [90], open=[100], high=[107], low=[99], vol20=[0.02])
    s = TradingSettings(mode="long_short", stop_loss_pct=5, fee_bps=0, slippage_bps=0)
    sim = trading.simulate(t, trading.signal(t, "model", s), s)
    assert sim["gross"].iloc[0] == pytest.approx(-0.05)  # short stopped at +5%
    v = TradingSettings(sizing="vol", vol_target=0.2, max_leverage=2)
    assert trading.size(t, v, 365)[0] == pytest.approx(0.2 / (0.02 * math.sqrt(365)))
    t["vol20"] = np.nan
    assert trading.size(t, v, 365)[0] == 0.0  # no history: no position


def test_metrics_by_hand():
    net = np.array([0.1, -0.2, 0.05, 0.1])
    eq = np.cumprod(1 + net)
    sim = pd.DataFrame({"position": 1.0, "net": net, "traded": [1, 0, 0, 0], "exited": False,
                        "equity": eq, "drawdown": eq / np.maximum.accumulate(eq) - 1})
    m = trading.metrics(sim, 365)
    assert m["total_return"] == pytest.approx(1.1 * 0.8 * 1.05 * 1.1 - 1)
    assert m["max_drawdown"] == pytest.approx(-0.2)
    assert m["sharpe"] == pytest.approx(net.mean() / net.std(ddof=1) * math.sqrt(365))
    assert m["sortino"] == pytest.approx(net.mean() / math.sqrt(0.04 / 4) * math.sqrt(365))
    assert m["cagr"] == pytest.approx(eq[-1] ** (365 / 4) - 1)
    assert m["calmar"] == pytest.approx(m["cagr"] / 0.2)


def test_on_real_btc_oracle_beats_buy_and_hold_and_persistence_never_trades():
    btc = load("btc-usd").loc[:"2026-01-05"].iloc[-366:]
    close = btc["close"].to_numpy()
    t = pd.DataFrame({"actual": close[1:], "previous": close[:-1]}, index=btc.index[1:])
    t["model"], t["persistence"] = t["actual"], t["previous"]
    res, sims = trading.run_strategies(t, ["model", "persistence"], TradingSettings())
    assert res["model"]["total_return"] > res["buy_and_hold"]["total_return"] + 1
    assert res["persistence"]["exposure"] == 0 and res["persistence"]["n_trades"] == 0
    assert res["buy_and_hold"]["total_return"] == pytest.approx((close[1] / close[0] - 0.0015) * close[-1] / close[1] - 1, rel=1e-9)
    ci = stats.headline_cis(t, returns={k: v["net"].to_numpy() for k, v in sims.items()}, n_boot=500)
    assert trading.verdict(res, ci["sharpe_minus_buy_and_hold"]) == (
        "After costs the model's strategy beat buy-and-hold significantly: total return +1195.2% vs -4.7%, "
        "Sharpe 10.13 vs 0.09, max drawdown -0.4% vs -32.0%; Sharpe difference 95% block-bootstrap CI "
        "[8.67, 11.38] excludes 0.")  # the 366 days to 2026-01-05


@pytest.mark.parametrize("kw, words", [
    ({"fee_bps": -1}, "fees cannot be negative"),
    ({"slippage_bps": -2}, "slippage cannot be negative"),
    ({"sizing": "kelly"}, "sizing"),
    ({"stop_loss_pct": 0}, "stop loss"),
])
def test_bad_settings(kw, words):
    with pytest.raises(ConfigError, match=words):
        trading.check(TradingSettings(**kw))


def test_threshold_must_be_a_number():
    with pytest.raises(ConfigError, match="threshold must be a number"):
        trading.parse_number("abc", "threshold", "--threshold")
    assert trading.parse_number("0.5", "threshold", "--threshold") == 0.5
