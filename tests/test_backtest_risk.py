"""The risk models inside `coincast backtest` (flows/backtest_risk.py) on real bundled BTC with a
tiny model and BTC's bundled hourly candles (the default): the scores of the baselines, the
network's distribution head and their combinations equal those of walk_forward_risk +
evaluation.risk on the same days, the report shows them, trading on the served model's P(up) and
forecast volatility is what the trading module gives on those quantiles, nothing after a day
(candles or hours) moves its quantiles, and data they do not fit are skipped with the reason while
the backtest still succeeds. With hourly candles the intraday
models are scored beside the daily ones (QLIKE, the MCS, risk.csv's daily CRPS and variance) and
the served model is named; `served_move` gives `predict` the served model's forecast."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from coincast.backtest.audit import perturb
from coincast.backtest.engine import BacktestSettings
from coincast.backtest import trading
from coincast.backtest.trading import TradingSettings
from coincast.data import load
from coincast.data.datasets import daily_coins
from coincast.data.intraday import resolve
from coincast.errors import ConfigError
from coincast.evaluation import risk
from coincast.flows.backtest import run_backtest
from coincast.flows.backtest_risk import risk_part
from coincast.models.risk_baselines import all_baselines
from coincast.models.risk_network import NetworkRisk
from coincast.models.risk_walk import pooled_returns, walk_forward_risk
from tests.conftest import one_torch_thread, tiny

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

START = "2025-12-15"  # 22 test days to 2026-01-05: folds of 7, 7, 7, 1
# every risk model of a default BTC backtest: btc-usd's hourly companion adds the realized ones
BASELINES = ["empirical", "ewma_t", "garch_t", "har_t", "har_rv", "harq", "network", "garch_har", "network_har"]
SERVED, SERVED_LABEL = "network_har", "the network + HAR-RV average"  # the first of SERVED_MODELS walked
QUANTILES = {"q2.5": 0.025, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q97.5": 0.975}


def backtest(data, runs_dir, intraday=None):
    bt = BacktestSettings(start=START, refit="warm", warm_epochs=1)
    return run_backtest(data, tiny(window=12, target="close", model={"risk_head": True}), bt, TradingSettings(),
                        runs_dir=runs_dir, n_boot=20, intraday=intraday)


@pytest.fixture(scope="module")
def btc():
    return load("btc-usd")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return backtest("btc-usd", tmp_path_factory.mktemp("risk"))


@pytest.fixture(scope="module")
def walk(run, btc):
    """Every risk model walked over the backtest's days, outside it, with btc-usd's default hourly candles."""
    days, pool = run.result.table.index, pooled_returns(btc, daily_coins(but="btc-usd"))  # the head's pool, as the backtest's
    hourly = resolve(None, {"btc-usd": btc})
    assert hourly.series == "btc-usd-1h"
    assert json.loads((run.folder / "metrics.json").read_text())["intraday"] == hourly.record()
    return walk_forward_risk(btc, start=days[0], retrain_every=7, end=days[-1], intraday=hourly.frame,
                             baselines=all_baselines(intraday=True) + [NetworkRisk(pool=pool)])


def test_scores_equal_walk_forward_risk_and_evaluation_risk_on_the_same_days(run, btc, walk):
    m = json.loads((run.folder / "metrics.json").read_text())["risk"]
    days = run.result.table.index
    assert m["skipped"] is None and m["days"] == len(days) == 22 and m["folds"] == 4 and m["retrain_every"] == 7
    assert (m["first"], m["last"]) == (str(days[0]), str(days[-1]))

    y = walk.actual.to_numpy()
    np.testing.assert_allclose(y, 100 * np.log(btc["close"] / btc["close"].shift(1)).loc[days])
    assert list(m["baselines"]) == BASELINES
    for name in BASELINES:
        got, q, ref = m["baselines"][name], walk.q(name), walk.q("empirical")
        assert got["crps"] == pytest.approx(risk.crps(y, q, walk.tau).mean(), rel=1e-12)
        assert got["crps_ratio"] == pytest.approx(risk.crps(y, q, walk.tau).mean() / risk.crps(y, ref, walk.tau).mean())
        if name == "empirical":
            assert got["dm_p"] is None
        else:
            assert got["dm_p"] == pytest.approx(risk.crps_dm(y, q, ref, walk.tau)["dm_p"], rel=1e-12)
        for c in ("80", "95"):
            want = risk.interval(y, q, walk.tau, c)
            assert (got[f"coverage_{c}"], got[f"width_{c}"]) == pytest.approx((want["coverage"], want["width"]))
        v5 = risk.var_tests(y, q, walk.tau, 0.05)
        assert got["var5_breaches"] == v5["breaches"] == int(np.sum(y < q[:, risk.level_index(walk.tau, 0.05)]))
        assert (got["var5_kupiec_p"], got["var5_christoffersen_p"]) == pytest.approx((v5["kupiec_p"], v5["christoffersen_p"]))

    net = m["baselines"][SERVED]
    want = risk.crps_dm(y, walk.q(SERVED), walk.q("garch_t"), walk.tau)
    assert (net["crps_ratio_garch"], net["dm_p_garch"]) == pytest.approx((want["ratio"], want["dm_p"]), rel=1e-12)
    assert m["verdict"].endswith(f"GARCH(1,1)-t{' significantly' if want['dm_p'] < 0.05 and want['ratio'] < 1 else ''}"
                                 f"{' not significantly' if want['dm_p'] >= 0.05 and want['ratio'] < 1 else ''}: "
                                 f"CRPS {want['ratio']:.3f}x, DM p = {want['dm_p']:.3g}.")
    assert m["network_skipped"] is None
    best = min(BASELINES, key=lambda n: m["baselines"][n]["crps"])
    assert m["best"] == best
    assert m["verdict"].startswith(f"{m['best_label']} gave the best risk forecast" if best != "empirical" else "No risk model")
    assert f"{m['baselines'][best]['crps_ratio']:.3f}x" in m["verdict"] or best == "empirical"

    table = pd.read_csv(run.folder / "risk.csv", index_col=0, parse_dates=True)
    assert table.index.equals(days) and len(table) == 22
    np.testing.assert_allclose(table["actual"], y, atol=1e-6)
    np.testing.assert_allclose(table["previous_close"], btc["close"].shift(1).loc[days], atol=1e-6)
    np.testing.assert_allclose(table["close"], btc["close"].loc[days], atol=1e-6)
    for name in BASELINES:
        for col, level in QUANTILES.items():
            np.testing.assert_allclose(table[f"{name}_{col}"], walk.q(name)[:, risk.level_index(walk.tau, level)], atol=1e-6)


def test_the_report_shows_the_verdict_the_score_table_and_the_fan_chart(run):
    m = json.loads((run.folder / "metrics.json").read_text())["risk"]
    html = (run.folder / "report.html").read_text()
    assert "<h2>Risk baselines: ranges of the next day's return</h2>" in html
    assert m["verdict"].replace("'", "&#39;") in html
    assert "<th>CRPS / empirical</th>" in html and "<th>5% VaR Christoffersen p</th>" in html
    for name in BASELINES:
        assert f"<th>{name}</th>" in html
    assert f'<tr class="model"><th>{m["best"]}</th><td>{m["baselines"][m["best"]]["crps"]:.4f}</td>' in html
    assert 'alt="risk_fan.png"' in html and (run.folder / "risk_fan.png").stat().st_size > 10_000
    assert (m["forecast"], m["forecast_label"]) == (SERVED, SERVED_LABEL)  # the fixed rule, whatever scored best
    assert f"The fan chart and\nthe forecasts trading uses are {SERVED_LABEL}'s" in html
    assert json.loads((run.folder / "timing.json").read_text())["risk_seconds"] > 0


def test_the_risk_strategies_trade_the_served_models_p_up_and_forecast_volatility_beside_buy_and_hold(run, walk):
    m = json.loads((run.folder / "metrics.json").read_text())
    tr, table = m["trading"]["risk"], run.result.table
    assert (tr["skipped"], tr["model"], tr["days_without_forecast"]) == (None, SERVED, 0)  # fixed rule: the served model
    assert list(m["trading"]["results"])[-2:] == ["p_up", "model_vol_target"]
    risk_q = trading.RiskForecast(SERVED, SERVED_LABEL, walk.q(SERVED), walk.tau)
    t = TradingSettings()
    want = {"p_up": trading.p_signal(risk_q.p_up(), t),  # fixed sizing: 1
            "model_vol_target": trading.signal(table, "model", t) * trading.vol_size(risk_q.vol(365), t)}
    returns = pd.read_csv(run.folder / "returns.csv", index_col=0)
    for name, position in want.items():
        np.testing.assert_allclose(returns[name], trading.simulate(table, position, t)["net"], atol=1e-8)
        assert m["trading"]["results"][name]["days"] == 22
    assert m["verdict"][-2:] == tr["verdict"]
    assert tr["verdict"][0].startswith(f"After costs trading on {SERVED_LABEL}'s P(up) ")
    assert tr["verdict"][1].startswith(f"After costs the model's strategy sized to {SERVED_LABEL}'s forecast volatility ")
    html = (run.folder / "report.html").read_text()
    assert "<th>p_up</th>" in html and "<th>model_vol_target</th>" in html
    assert tr["verdict"][0].replace("'", "&#39;") in html


def test_candles_after_a_day_do_not_move_that_days_risk_quantiles(run, btc, tmp_path):
    days = run.result.table.index
    cut_day = days[8]  # 2025-12-23, inside the fold of 12-22..12-28: candles and hours from it on are moved
    moved = perturb(btc, int(btc.index.get_loc(cut_day)))
    path = tmp_path / "btc-moved.csv"
    moved.rename_axis("timestamp").to_csv(path)
    hourly = load("btc-usd-1h")
    hours_path = tmp_path / "btc-1h-moved.csv"  # the cut day's own hours (open 00:00 on) and all later ones
    perturb(hourly, int(hourly.index.searchsorted(cut_day)), seed=1).rename_axis("timestamp").to_csv(hours_path)
    again = backtest(str(path), tmp_path / "runs", intraday=str(hours_path))
    assert json.loads((again.folder / "metrics.json").read_text())["intraday"]["series"] == str(hours_path)

    before = pd.read_csv(run.folder / "risk.csv", index_col=0)
    after = pd.read_csv(again.folder / "risk.csv", index_col=0)
    assert after.index.equals(before.index)
    quantiles = [c for c in before.columns if "_q" in c]
    upto = before.index <= str(cut_day)  # the cut day's forecast uses candles and hours through the day before
    pd.testing.assert_frame_equal(after.loc[upto, quantiles], before.loc[upto, quantiles], rtol=1e-9)
    assert (after.loc[~upto, quantiles] - before.loc[~upto, quantiles]).abs().to_numpy().max() > 0.01  # later ones do move
    assert (after.loc[upto, "actual"] != before.loc[upto, "actual"]).any()  # the cut day's own return moved
    assert (after.loc[upto, "rv"] != before.loc[upto, "rv"]).any()  # and its realized variance (its hours moved)


@pytest.mark.parametrize("cut, words", [
    (lambda c: c.drop(columns=["high", "low"]), "need daily open/high/low/close candles; the data have no high/low"),
    # 300 candles, 22 of them test days: 278 candles before the first, 277 returns between them
    (lambda c: c.iloc[-300:], "need 365 daily returns before the first test day (2025-12-15); the data have 277"),
])
def test_data_the_risk_baselines_do_not_fit_are_skipped_with_the_reason(btc, tmp_path, cut, words):
    path = tmp_path / "btc-cut.csv"
    cut(btc).rename_axis("timestamp").to_csv(path)
    run = backtest(str(path), tmp_path / "runs")
    m = json.loads((run.folder / "metrics.json").read_text())
    assert words in m["risk"]["skipped"] and set(m["risk"]) == {"skipped"}
    assert m["test"]["days"] == 22 and not (run.folder / "risk.csv").exists()
    html = (run.folder / "report.html").read_text()
    assert f"<p>Skipped: {m['risk']['skipped']}.</p>" in html and "risk_fan.png" not in html
    assert m["trading"]["risk"] == {"skipped": m["risk"]["skipped"]} and "p_up" not in m["trading"]["results"]
    assert f"<p>No risk strategies: {m['risk']['skipped']}.</p>" in html
    with pytest.raises(ConfigError, match=f"^sizing forecast_vol sizes by the risk baselines' forecast, but .*{re.escape(words)}"):
        run_backtest(str(path), tiny(window=12, target="close"), BacktestSettings(start=START),
                     TradingSettings(sizing="forecast_vol"), runs_dir=tmp_path / "none")  # before any training
    assert not (tmp_path / "none").exists()


def test_candles_the_range_variance_refuses_are_skipped_not_raised(btc):
    bad = btc.copy()
    bad.iloc[100, bad.columns.get_loc("high")] = bad["close"].iloc[100] / 2  # a high below its close
    days = bad.index[-22:]
    part = risk_part(bad, days, 7)
    assert part.table is None and part.summary["skipped"].startswith("the risk baselines could not run: a candle's high")
    ok = risk_part(btc, days, 7, head=False)  # the same days on the real candles run
    assert ok.summary["skipped"] is None
    # a user's CSV with Open/High/Low/Close capitalised gets the same risk part
    shouted = risk_part(btc.rename(columns=str.capitalize), days, 7, head=False)
    pd.testing.assert_frame_equal(shouted.table, ok.table)


@pytest.fixture(scope="module")
def intraday_part(btc):
    """The risk part of 21 October days with BTC's hourly candles, the head off: the daily and the
    intraday models side by side, GARCH-t + HAR-RV served (the network is not walked)."""
    days = btc.loc["2025-10-01":"2025-10-21"].index
    return risk_part(btc, days, 7, head=False, intraday=load("btc-usd-1h")), days


def test_intraday_models_are_scored_beside_the_daily_ones_and_the_served_one_is_named(btc, intraday_part):
    from coincast.flows.backtest_risk import SERVED_MODELS, served_model

    part, days = intraday_part
    m, w = part.summary, part.walk
    assert list(m["baselines"]) == ["empirical", "ewma_t", "garch_t", "har_t", "har_rv", "harq", "garch_har"]
    assert m["intraday_skipped"] is None and w.counts["realized"]["days_filled"] == 0
    served = served_model(w.names)
    assert served == "garch_har" == m["forecast"] and SERVED_MODELS.index("garch_har") < SERVED_MODELS.index("garch_t")
    g = m["baselines"]["garch_har"]
    assert m["verdict"].endswith(f"The served risk model, the GARCH-t + HAR-RV average, "
                                 f"{'beat' if g['crps_ratio_garch'] < 1 else 'did NOT beat'} GARCH(1,1)-t"
                                 f"{'' if g['crps_ratio_garch'] >= 1 else ' significantly' if g['dm_p_garch'] < 0.05 else ' not significantly'}"
                                 f": CRPS {g['crps_ratio_garch']:.3f}x, DM p = {g['dm_p_garch']:.3g}.")
    assert f"HAR-RV {m['baselines']['har_rv']['crps_ratio_garch']:.3f}, HARQ " in m["verdict"]
    y, rv = w.actual.to_numpy(), w.realized["rv"].to_numpy()
    for name in m["baselines"]:
        v = risk.variance_dm(rv, w.variance[name].to_numpy(), w.variance["garch_t"].to_numpy())
        assert m["baselines"][name]["qlike_ratio_garch"] == pytest.approx(v["qlike_ratio"], rel=1e-12)
        assert part.table[f"{name}_crps"].to_numpy() == pytest.approx(risk.crps(y, w.q(name), w.tau), rel=1e-12)
        assert part.table[f"{name}_var"].to_numpy() == pytest.approx(w.variance[name].to_numpy(), rel=1e-12)
    assert part.table["rv"].to_numpy() == pytest.approx(rv) and (part.table["hours"] == 24).all()
    assert set(m["mcs"]["included"]) <= set(m["baselines"]) and m["mcs"]["included"]
    without = risk_part(btc, days, 7, head=False)
    assert without.summary["intraday_skipped"] == "no hourly candles were given (--intraday)"
    assert without.summary["forecast"] == "garch_t" and "qlike" not in without.summary["baselines"]["garch_t"]


def test_predict_uses_the_served_model(btc):
    """served_move: with hourly candles and no head, the GARCH-t + HAR-RV average fitted on every
    return, the day after the data; without hourly candles GARCH-t; with too few returns for them
    the next model of the rule's order, or the reason there is none."""
    from coincast.errors import DataError
    from coincast.flows.backtest_risk import served_move
    from coincast.models import risk_baselines as rb
    from coincast.models.risk_walk import percent_returns
    from coincast.prep import realized

    candles, hourly = btc.loc["2024-01-01":"2025-11-30"], load("btc-usd-1h").loc["2024-01-01":"2025-11-30 23:00"]
    tau = [0.025, 0.1, 0.5, 0.9, 0.975]
    q, n, label = served_move(candles, tau, intraday=hourly, head=False)
    r, gk, index = percent_returns(candles)
    rm, _ = realized.model_inputs(realized.on_days(realized.daily_measures(hourly), index), gk)
    want = [m.fit(r, gk, rm).forecast(r, gk, len(r), tau, rm)[-1] for m in (rb.GarchT(), rb.HarRV())]
    assert (n, label) == (len(r), "the GARCH-t + HAR-RV average")
    np.testing.assert_allclose(q, np.mean(want, axis=0), rtol=1e-12)
    q, _, label = served_move(candles, tau, head=False)
    assert label == "GARCH(1,1)-t" and np.allclose(q, want[0], rtol=1e-12)
    # 199 returns: too few for GARCH-t, so the next of the rule's order that runs: HAR-RV (60)
    assert served_move(candles.iloc[:200], tau, intraday=hourly, head=False)[1:] == (199, "HAR-RV")
    with pytest.raises(DataError, match="needs 250 returns; the data has 199"):
        served_move(candles.iloc[:200], tau, head=False)
