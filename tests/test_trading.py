"""Trading simulation: positions, costs, stops and metrics checked by hand on small tables."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from coincast.backtest import trading
from coincast.backtest.trading import TradingSettings
from coincast.data import load
from coincast.errors import ConfigError
from coincast.evaluation import stats
from coincast.evaluation.risk import LEVELS


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
    ({"sizing": "forecast"}, r"sizing must be 'fixed', 'vol' or 'forecast_vol' \(got 'forecast'\)"),
    ({"p_margin": 0.5}, r"P\(up\) margin must be in \[0, 0.5\) \(got 0.5\)"),
    ({"p_margin": -0.1}, r"P\(up\) margin must be in \[0, 0.5\)"),
    ({"p_margin": "x"}, r"p margin must be a number \(got .x.\): e.g. --p-margin 0.05"),
])
def test_bad_settings(kw, words):
    with pytest.raises(ConfigError, match=words):
        trading.check(TradingSettings(**kw))


def test_threshold_must_be_a_number():
    with pytest.raises(ConfigError, match="threshold must be a number"):
        trading.parse_number("abc", "threshold", "--threshold")
    assert trading.parse_number("0.5", "threshold", "--threshold") == 0.5


def test_p_up_and_volatility_of_normal_quantiles():
    mu, sigma = np.array([0.5, -1.0, 0.0, 1.0]), np.array([1.0, 2.0, 4.0, 0.5])
    q = mu[:, None] + sigma[:, None] * sps.norm.ppf(LEVELS)[None, :]  # [4, 101] percent log returns
    np.testing.assert_allclose(trading.p_up(q, LEVELS), sps.norm.cdf(mu / sigma), atol=2e-3)  # linear interpolation
    np.testing.assert_allclose(trading.daily_vol(q, LEVELS), sigma, rtol=1e-12)  # exact for a normal
    r = trading.RiskForecast("garch_t", "GARCH(1,1)-t", q, LEVELS)
    np.testing.assert_allclose(r.vol(365), sigma / 100 * math.sqrt(365), rtol=1e-12)  # percent -> annualised fraction
    t5 = sps.t.ppf(LEVELS, 5)[None, :]  # fat tails beyond 1%/99% are not seen: 0.94 of the true sd
    assert trading.daily_vol(t5, LEVELS)[0] / math.sqrt(5 / 3) == pytest.approx(0.944, abs=1e-3)


def test_p_up_by_hand_clipped_to_the_outer_levels():
    tau = [0.25, 0.5, 0.75]
    q = np.array([[-1.0, 1.0, 3.0],  # F(0) = 0.25 + 0.5 * 0.25
                  [3.0, -1.0, 1.0],  # crossed: sorted first, the same
                  [0.5, 1.0, 2.0],  # 0 below every quantile: 1 - tau_min
                  [-3.0, -2.0, -1.0],  # above every quantile: 1 - tau_max
                  [-1.0, 0.0, 0.0],  # 0 is a quantile twice: F(0) = the highest level at 0 (up is strictly above)
                  [np.nan, 0.0, 1.0]])  # no forecast
    np.testing.assert_allclose(trading.p_up(q, tau), [0.625, 0.625, 0.75, 0.25, 0.25, np.nan])


def test_forecast_vol_sizing_is_capped_by_max_leverage():
    t = _table([100, 101, 102, 103], [0, 0, 0])
    s = TradingSettings(sizing="forecast_vol", vol_target=0.5, max_leverage=1.5)
    np.testing.assert_allclose(trading.size(t, s, 365, np.array([0.25, 1.0, np.nan])), [1.5, 0.5, 0.0])
    with pytest.raises(ConfigError, match="sizing forecast_vol needs a risk forecast"):
        trading.size(t, s, 365)


def test_p_up_strategy_trades_on_the_margin_from_the_forecast_made_the_day_before():
    p = np.array([0.6, 0.52, 0.5, 0.4, np.nan])
    np.testing.assert_array_equal(trading.p_signal(p, TradingSettings(p_margin=0.05)), [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(trading.p_signal(p, TradingSettings(p_margin=0.05, mode="long_short")), [1, 0, 0, -1, 0])
    np.testing.assert_array_equal(trading.p_signal(p, TradingSettings()), [1, 1, 0, 0, 0])  # strictly above 0.5

    rng = np.random.default_rng(0)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.03, 41)))
    table = _table(prices, prices[:-1] * (1 + rng.normal(0, 0.02, 40)))
    mu, sigma = rng.normal(0, 1, 40), rng.uniform(1, 5, 40)
    q = mu[:, None] + sigma[:, None] * sps.norm.ppf(LEVELS)[None, :]  # [40, 101]: day t's forecast, made at t-1's close
    risk = trading.RiskForecast("garch_t", "GARCH(1,1)-t", q, LEVELS)
    s = TradingSettings(mode="long_short", sizing="forecast_vol", vol_target=0.6, max_leverage=2.0)
    res, sims = trading.run_strategies(table, ["model"], s, risk)
    assert list(res) == ["buy_and_hold", "model", "p_up", "model_vol_target"]
    want = np.sign(mu) * np.minimum(2.0, 0.6 / (sigma / 100 * math.sqrt(365)))
    np.testing.assert_allclose(sims["p_up"]["position"], want)
    np.testing.assert_allclose(sims["model_vol_target"]["position"], sims["model"]["position"])  # sized alike here

    moved = table.copy()
    moved["actual"] = np.roll(moved["actual"].to_numpy(), -1)  # tomorrow's close in today's row
    _, again = trading.run_strategies(moved, ["model"], s, risk)
    np.testing.assert_array_equal(again["p_up"]["position"], sims["p_up"]["position"])
    later = q.copy()
    later[20:] += 5.0  # forecasts of day 20 on change: the positions before it do not
    _, after = trading.run_strategies(table, ["model"], s, trading.RiskForecast("garch_t", "", later, LEVELS))
    np.testing.assert_array_equal(after["p_up"]["position"][:20], sims["p_up"]["position"][:20])
    assert (after["p_up"]["position"][20:] != sims["p_up"]["position"][20:]).any()
