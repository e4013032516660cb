"""The risk baselines and their walk-forward on real bundled candles: range-based volatility by
hand, the GARCH recursion against arch's own, no future data in any fold (the GARCH warm start
included), monotone quantiles, the counted non-convergence fallback."""

import math

import numpy as np
import pandas as pd
import pytest
from arch import arch_model
from arch.utility.exceptions import ConvergenceWarning
from scipy import stats

from coincast import load
from coincast.errors import ConfigError, DataError
from coincast.evaluation.risk import LEVELS
from coincast.models import risk_baselines as rb
from coincast.models.risk_walk import percent_returns, walk_forward_risk
from coincast.prep import realized, volatility as vol

START = 800  # candle row of the first target day in the 1,000-candle stretch below
END = START + 23  # the last (inclusive): 24 days, folds of 7, 7, 7 and 3


@pytest.fixture(scope="module")
def candles():
    return load("btc-usd").iloc[-1000:]


@pytest.fixture(scope="module")
def walk(candles):
    return walk_forward_risk(candles, start=START, end=END)


def test_range_estimators_by_hand():
    frame = pd.DataFrame({"open": [100.0, 100.0], "high": [110.0, 104.0], "low": [95.0, 99.0], "close": [105.0, 104.0]},
                         index=pd.date_range("2024-01-01", periods=2, tz="UTC"))
    hl, co = math.log(110 / 95), math.log(105 / 100)
    assert vol.parkinson(frame).iloc[0] == pytest.approx(hl**2 / (4 * math.log(2)))
    assert vol.garman_klass(frame).iloc[0] == pytest.approx(0.5 * hl**2 - (2 * math.log(2) - 1) * co**2)
    # a body as long as the range (open = low, close = high): Garman-Klass keeps (1/2 - (2 ln 2 - 1)) of hl^2
    body = frame.assign(open=[95.0, 99.0], close=[110.0, 104.0])
    assert vol.garman_klass(body).iloc[0] == pytest.approx((0.5 - (2 * math.log(2) - 1)) * hl**2)
    v = np.arange(1.0, 41.0)
    avg = vol.har_averages(v)  # [40, 3]
    assert np.isnan(avg[5, 1]) and avg[6, 1] == pytest.approx(np.mean(v[:7])) and avg[39, 2] == pytest.approx(np.mean(v[10:]))
    assert np.array_equal(avg[:, 0], v)
    with pytest.raises(DataError, match="missing low"):
        vol.garman_klass(frame.drop(columns="low"))
    with pytest.raises(DataError, match="high is below"):
        vol.parkinson(frame.rename(columns={"high": "low", "low": "high"}))


def test_garch_recursion_is_archs(candles):
    """The variance the forecasts use is arch's conditional variance for the same parameters."""
    r, _, _ = percent_returns(candles)
    res = arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False).fit(disp="off")
    mu, omega, alpha, beta, _ = res.params[list(rb.GarchT.names)]
    ours = rb.garch_variance(r, mu, omega, alpha, beta, rb.arch_backcast(r))  # [n + 1]
    np.testing.assert_allclose(ours[:-1], res.conditional_volatility**2, rtol=1e-9)
    # and its one-step forecast beyond the data
    assert ours[-1] == pytest.approx(res.forecast(horizon=1, reindex=False).variance.iloc[-1, 0], rel=1e-9)


def test_ewma_variance_and_std_t_by_hand():
    r = np.array([1.0, -2.0, 0.5, 3.0])
    s = [np.mean(r[:2] ** 2)]
    for x in r:
        s.append(0.94 * s[-1] + 0.06 * x**2)
    np.testing.assert_allclose(rb.ewma_variance(r, 0.94, burn_in=2), s, rtol=1e-12)
    # unit variance: the t's variance nu/(nu-2) is divided out
    nu = 5.0
    assert rb.std_t_ppf([0.975], nu)[0] == pytest.approx(stats.t.ppf(0.975, nu) / math.sqrt(nu / (nu - 2)))
    z = stats.t.rvs(4, size=4000, random_state=1) / math.sqrt(2)  # unit variance, 4 dof
    assert 3.3 < rb.fit_std_t_nu(z) < 5.0


def test_no_future_data_in_any_fold(candles, walk):
    """Candles changed from day D on move nothing forecast for D or earlier (D a cut, then D
    inside a fold), nor any fit at a cut up to D; the GARCH fold after D still warm-starts from the
    unchanged parameters. Later days do move, so the check can fail."""
    days = walk.actual.index
    garch = walk.folds[walk.folds.baseline == "garch_t"]
    assert garch.warm_start.tolist() == [False, True, True, True]  # the warm path is exercised
    rng = np.random.default_rng(3)
    for d in (days[7], days[10]):  # the second fold's cut; a day inside it
        shaken = candles.copy()
        late = shaken.index >= d
        factor = np.exp(rng.normal(0, 0.05, late.sum()))[:, None]  # [days from D, 1]
        shaken.loc[late, ["open", "high", "low", "close"]] *= factor
        shaken.loc[late, "high"] *= 1.02  # wider ranges too (Garman-Klass for HAR)
        other = walk_forward_risk(shaken, start=START, end=END)
        upto = days <= d
        for name in walk.names:
            assert np.array_equal(walk.q(name)[upto], other.q(name)[upto]), name
            if name != "empirical":  # the empirical quantiles move only at the next cut
                assert not np.allclose(walk.q(name)[~upto], other.q(name)[~upto]), name
        early = walk.folds.cut <= d
        pd.testing.assert_frame_equal(walk.folds[early], other.folds[early])
        assert not walk.folds[~early & (walk.folds.baseline == "garch_t")].equals(
            other.folds[~early & (other.folds.baseline == "garch_t")])


def test_quantiles_are_monotone_and_baselines_by_hand(candles, walk):
    assert walk.quantiles.shape == (24, 4 * len(LEVELS)) and walk.names == ["empirical", "ewma_t", "garch_t", "har_t"]
    for name in walk.names:
        steps = np.diff(walk.q(name), axis=1)  # [N, K-1]
        assert (steps >= 0).all() if name == "empirical" else (steps > 0).all(), name
    r, gk, _ = percent_returns(candles)
    cut = START - 1  # the first target day's row among the returns
    assert walk.actual.iloc[0] == pytest.approx(100 * math.log(candles.close.iloc[START] / candles.close.iloc[START - 1]))
    np.testing.assert_allclose(walk.q("empirical")[0], np.quantile(r[cut - 365 : cut], LEVELS))
    # HAR: the first day's variance from the 1/7/30-day GK averages through the day before
    har = walk.folds[walk.folds.baseline == "har_t"].iloc[0]
    h = har.b0 + har.b1 * gk[cut - 1] + har.b2 * gk[cut - 7 : cut].mean() + har.b3 * gk[cut - 30 : cut].mean()
    i = list(LEVELS).index(0.9)
    assert walk.q("har_t")[0, i] == pytest.approx(math.sqrt(h) * har.scale * stats.t.ppf(0.9, har.nu))
    assert walk.counts == {"folds": 4, "days": 24, "garch_t": {"fits": 4, "nonconverged": 0, "warm_start_ignored": 0}}


def test_nonconvergence_falls_back_and_is_counted(candles):
    """One optimiser iteration never converges: every fit is counted, and every fold keeps the
    first fold's parameters rather than its own one-step iterate."""
    garch = rb.GarchT(maxiter=1)
    w = walk_forward_risk(candles, start=START, end=END, baselines=[rb.Empirical(), garch])
    assert w.counts["garch_t"] == {"fits": 4, "nonconverged": 4, "warm_start_ignored": 0}
    folds = w.folds[w.folds.baseline == "garch_t"]
    assert not folds.converged.any()
    params = folds[list(rb.GarchT.names)].to_numpy()
    assert (params == params[0]).all()
    # without the fallback, the second fold's own single iteration would have moved them
    r, _, _ = percent_returns(candles)
    cut2 = START - 1 + 7
    with pytest.warns(ConvergenceWarning):
        moved = arch_model(r[:cut2], mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False).fit(
            disp="off", starting_values=garch._warm_start(), options={"maxiter": 1})
    assert not np.allclose(moved.params[list(rb.GarchT.names)].to_numpy(), params[0])


def test_mistakes_are_explained(candles):
    with pytest.raises(DataError, match="leaves 299 returns before it; the baselines need 365"):
        walk_forward_risk(candles, start=300, end=310)
    with pytest.raises(ConfigError, match="retrain_every must be at least 1"):
        walk_forward_risk(candles, start=START, retrain_every=0)
    with pytest.raises(ConfigError, match="outside the data"):
        walk_forward_risk(candles, start="2030-01-01")
    with pytest.raises(ValueError, match="strictly increasing"):
        walk_forward_risk(candles, start=START, end=END, tau=[0.9, 0.1])


def load_bench(monkeypatch):
    """benchmarks/risk_baselines.py as a module."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "risk_baselines.py"
    monkeypatch.syspath_prepend(str(script.parent))  # its sibling doc_section, as when run as a script
    spec = importlib.util.spec_from_file_location("risk_baselines_bench", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_benchmark_panel_and_rule_by_hand(tmp_path, monkeypatch):
    """The pooled panel: summed CRPS over every coin's days, DM on each date's mean over the coins;
    the rule: the most coin-periods below GARCH-t first, ties by the lower mean ratio."""
    import json

    from coincast.evaluation.metrics import diebold_mariano

    bench = load_bench(monkeypatch)
    daily = {"x": {"days": ["d1", "d2", "d3"], "crps": {"a": [1.0, 2.0, 3.0], "b": [2.0, 2.0, 4.0]}},
             "y": {"days": ["d2", "d3", "d4"], "crps": {"a": [1.0, 1.0, 1.0], "b": [1.0, 3.0, 2.0]}}}
    got = bench.panel(daily, "a", "b")
    assert got["ratio"] == pytest.approx(9 / 14) and got["days"] == 6
    assert got["dm_p"] == pytest.approx(diebold_mariano(np.array([1.0, 1.5, 2.0, 1.0]), np.array([2.0, 1.5, 3.5, 2.0]))[1])
    rows = [{"baseline": m, "crps_ratio_garch": x} for m, xs in
            {"p": [0.99, 1.01], "q": [0.995, 0.999], "s": [0.98, 0.999]}.items() for x in xs]
    (tmp_path / "t.json").write_text(json.dumps({"rows": rows}))
    assert [x["model"] for x in bench.rank([str(tmp_path / "t.json")], ["p", "q", "s"])] == ["s", "q", "p"]


def test_benchmark_script_writes_its_section_only(tmp_path, monkeypatch):
    """benchmarks/risk_baselines.py on one coin's last 20 days: the JSON, and a marked section that a
    second run replaces while the rest of the document stays as it was."""
    import json
    import sys

    bench = load_bench(monkeypatch)
    doc, out = tmp_path / "BENCHMARKS.md", tmp_path / "risk.json"
    doc.write_text("# Benchmarks\n\nother sections\n")
    argv = ["risk_baselines.py", "--coins", "btc-usd", "--days", "20", "--intraday", "none", "--out", str(out),
            "--doc", str(doc)]
    for _ in range(2):
        monkeypatch.setattr(sys, "argv", argv)
        bench.main()
    rows = json.loads(out.read_text())["rows"]
    assert [r["baseline"] for r in rows] == ["empirical", "ewma_t", "garch_t", "har_t", "network"]
    assert rows[0]["days"] == 20 and rows[0]["dm_p"] is None and 0 < rows[2]["dm_p"] < 1
    assert rows[4]["crps_ratio_garch"] == pytest.approx(rows[4]["crps"] / rows[2]["crps"])
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nother sections\n") and text.count(bench.markers("risk")[0]) == 1
    assert "| btc-usd | garch_t |" in text and "issue 16 quotes" in text and "| btc-usd | network |" in text
    assert "CRPS at or below GARCH(1,1)-t's on at least four: " in text


@pytest.fixture(scope="module")
def hourly(candles):
    return load("btc-usd-1h").loc[str(candles.index[0].date()) :]


@pytest.fixture(scope="module")
def intraday_walk(candles, hourly):
    return walk_forward_risk(candles, start=START, end=END, intraday=hourly)


def test_har_rv_and_harq_by_hand(candles, hourly, intraday_walk):
    """HAR-RV and HARQ's coefficients are least squares on the 1/7/30-day averages through the day
    before (arch's HARX agrees with a plain lstsq), their first day's quantiles are sqrt(h) times
    the standardised training returns' empirical quantiles, and the combination is the
    level-by-level mean of GARCH-t's and HAR-RV's quantiles with the mean standard deviation."""
    w = intraday_walk
    assert w.names == ["empirical", "ewma_t", "garch_t", "har_t", "har_rv", "harq", "garch_har"]
    r, gk, index = percent_returns(candles)
    m = realized.on_days(realized.daily_measures(hourly), index)
    rv, rq = m["rv"].to_numpy(), m["rq"].to_numpy()
    assert m["hours"].iloc[: END].eq(24).all()  # full days: nothing filled
    cut = START - 1
    avg = vol.har_averages(np.log(rv[:cut]))  # [cut, 3]
    A = np.column_stack([np.ones(cut - 30), avg[29:-1]])
    coef = np.linalg.lstsq(A, np.log(rv[30:cut]), rcond=None)[0]
    folds = w.folds[w.folds.baseline == "har_rv"].iloc[0]
    np.testing.assert_allclose([folds.b0, folds.b1, folds.b2, folds.b3], coef, rtol=1e-8)
    h_train = np.exp(A @ coef)  # [cut - 30] the training days' variances
    z = r[30:cut] / np.sqrt(h_train)
    h = math.exp(coef[0] + np.log(rv[cut - 1]) * coef[1] + np.mean(np.log(rv[cut - 7 : cut])) * coef[2]
                 + np.mean(np.log(rv[cut - 30 : cut])) * coef[3])
    np.testing.assert_allclose(w.q("har_rv")[0], math.sqrt(h) * np.quantile(z, LEVELS), rtol=1e-8)
    assert w.variance["har_rv"].iloc[0] == pytest.approx(h * np.mean(z**2), rel=1e-8)
    # HARQ: the level regression with sqrt(RQ[t-1]) RV[t-1] beside the averages
    lv = vol.har_averages(rv[:cut])
    X = np.column_stack([np.ones(cut - 30), lv[29:-1], (np.sqrt(rq) * rv)[29 : cut - 1]])
    coef_q = np.linalg.lstsq(X, rv[30:cut], rcond=None)[0]
    hq = w.folds[w.folds.baseline == "harq"].iloc[0]
    np.testing.assert_allclose([hq.b0, hq.b1, hq.b2, hq.b3, hq.b4], coef_q, rtol=1e-5)  # ill-conditioned: RQ is large
    # the combination
    np.testing.assert_allclose(w.q("garch_har"), (w.q("garch_t") + w.q("har_rv")) / 2)
    np.testing.assert_allclose(w.variance["garch_har"], ((np.sqrt(w.variance["garch_t"]) + np.sqrt(w.variance["har_rv"])) / 2) ** 2)
    # GARCH-t's variance forecast is arch's, the same as the one its quantiles use
    sd = (w.q("garch_t")[:, list(LEVELS).index(0.9)] - w.q("garch_t")[:, list(LEVELS).index(0.5)])
    g = w.folds[w.folds.baseline == "garch_t"].iloc[0]
    assert sd[0] == pytest.approx(math.sqrt(w.variance["garch_t"].iloc[0]) * (rb.std_t_ppf([0.9], g.nu)[0] - rb.std_t_ppf([0.5], g.nu)[0]))
    for name in ("har_rv", "harq"):
        assert (np.diff(w.q(name), axis=1) >= 0).all() and (w.variance[name] > 0).all()


def test_hourly_candles_after_a_day_do_not_move_its_intraday_forecasts(candles, hourly, intraday_walk):
    """Hourly candles changed from day D on (D inside the second fold) move no intraday model's
    forecast for D or earlier, and do move later ones."""
    d = intraday_walk.actual.index[10]
    shaken = hourly.copy()
    late = shaken.index >= d
    shaken.loc[late, "close"] *= np.exp(np.random.default_rng(2).normal(0, 0.01, late.sum()))  # each hour's own return moves
    shaken["high"], shaken["low"] = shaken[["high", "close"]].max(axis=1), shaken[["low", "close"]].min(axis=1)
    other = walk_forward_risk(candles, start=START, end=END, intraday=shaken)
    upto = intraday_walk.actual.index <= d
    for name in ("har_rv", "harq", "garch_har"):
        np.testing.assert_array_equal(intraday_walk.q(name)[upto], other.q(name)[upto])
        assert not np.allclose(intraday_walk.q(name)[~upto], other.q(name)[~upto]), name


def test_days_without_their_hours_are_filled_and_counted(candles, hourly):
    """A test day with too few hours gets its Garman-Klass variance as RV, is counted, and keeps
    every model forecasting; HAR-RV without hourly candles is refused with the reason."""
    r, gk, index = percent_returns(candles)
    day = index[START + 2]
    gap = hourly[(hourly.index < day) | (hourly.index >= day + pd.Timedelta(hours=8))]  # 16 hours left that day
    w = walk_forward_risk(candles, start=START, end=END, intraday=gap)
    assert w.counts["realized"] == {"days_filled_before": 0, "days_filled": 1}
    assert w.realized.loc[day, "filled"] and w.realized.loc[day, "hours"] == 16
    rm, filled = realized.model_inputs(realized.on_days(realized.daily_measures(gap), index), gk)
    assert filled[:END].sum() == 1 and rm["rv"][START + 2] == gk[START + 2] and rm["rq"][START + 2] == gk[START + 2] ** 2
    assert np.isfinite(w.q("har_rv")).all()
    with pytest.raises(ConfigError, match="HAR-RV and HARQ need hourly candles"):
        walk_forward_risk(candles, start=START, end=END, baselines=[rb.HarRV()])
