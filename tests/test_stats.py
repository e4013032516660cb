"""Statistics of the backtest checked against hand computations and scipy/statsmodels."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.tsa.stattools import acovf

from coincast.data import load
from coincast.evaluation import stats
from coincast.evaluation.metrics import diebold_mariano

# Fixed loss differentials (hand-checkable): d = a - b
A = np.array([1.0, 4.0, 2.0, 0.5, 3.0, 1.5, 2.5, 0.0])
B = np.array([2.0, 3.0, 2.5, 1.5, 3.5, 1.0, 3.0, 1.0])


def test_dm_h1_by_hand():
    d = A - B  # [-1, 1, -0.5, -1, -0.5, 0.5, -0.5, -1]
    n = 8
    dbar = d.sum() / n  # -3 / 8
    assert dbar == -0.375
    gamma0 = ((d - dbar) ** 2).sum() / n
    dm = dbar / math.sqrt(gamma0 / n)
    hln = math.sqrt((n + 1 - 2) / n)
    stat, p = diebold_mariano(A, B)
    assert stat == pytest.approx(dm * hln, rel=1e-12)
    assert p == pytest.approx(sps.t.cdf(dm * hln, df=n - 1), rel=1e-12)
    # For h = 1 the HLN-corrected DM statistic is exactly the one-sample t statistic of d
    ref = sps.ttest_1samp(d, 0.0, alternative="less")
    assert stat == pytest.approx(ref.statistic, rel=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-12)


def test_dm_h3_against_statsmodels_autocovariances():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=60) ** 2, rng.normal(size=60) ** 2
    d, n, h = a - b, 60, 3
    g = acovf(d, demean=True, fft=False)  # biased (divide by n), as DM uses
    lrv = g[0] + 2 * (g[1] + g[2])
    dm = d.mean() / math.sqrt(lrv / n)
    stat_ref = dm * math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    stat, p = diebold_mariano(a, b, h=h)
    assert stat == pytest.approx(stat_ref, rel=1e-10)
    assert p == pytest.approx(sps.t.cdf(stat_ref, df=n - 1), rel=1e-10)


def test_block_indices_by_hand():
    idx = stats.block_indices(7, 3, 2, np.random.default_rng(5))
    starts = np.random.default_rng(5).integers(0, 5, size=(2, 3))
    expect = np.array([np.concatenate([np.arange(s, s + 3) for s in row])[:7] for row in starts])
    np.testing.assert_array_equal(idx, expect)  # (so every index is a valid position 0..6)


def test_block_bootstrap_variance_of_mean_matches_kunsch_formula():
    # With n = k*b, the MBB mean is the average of k iid draws from the n-b+1 block means,
    # so its bootstrap variance is var(block means) / k exactly.
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=120)) * 0.1 + rng.normal(size=120)  # autocorrelated
    b, k = 6, 20
    block_means = np.array([x[i : i + b].mean() for i in range(len(x) - b + 1)])
    expected_se = math.sqrt(block_means.var() / k)
    res = stats.block_bootstrap((x,), lambda v: v.mean(axis=1), n_boot=40000, block=b, seed=3)
    assert res["estimate"] == pytest.approx(x.mean())
    assert res["se"] == pytest.approx(expected_se, rel=0.03)


def test_block_of_one_matches_scipy_percentile_bootstrap():
    rng = np.random.default_rng(2)
    x = rng.exponential(size=200)
    ours = stats.block_bootstrap((x,), lambda v: v.mean(axis=1), n_boot=20000, block=1, seed=0)
    ref = sps.bootstrap((x,), np.mean, n_resamples=20000, method="percentile", random_state=0).confidence_interval
    assert ours["lo"] == pytest.approx(ref.low, abs=0.01)
    assert ours["hi"] == pytest.approx(ref.high, abs=0.01)


def _table(n=400, seed=0):
    btc = load("btc-usd").iloc[-n - 1 :]
    close = btc["close"].to_numpy()
    t = pd.DataFrame({"actual": close[1:], "previous": close[:-1]}, index=btc.index[1:])
    t["persistence"] = t["previous"]
    noise = np.random.default_rng(seed).normal(0, 0.02, n)
    t["model"] = t["actual"] * (1 + noise)  # an oracle with noise: beats persistence
    t["base"] = t["previous"]
    return t


def test_binomial_tests_on_real_days():
    t = _table()
    res = stats.binomial_tests(t)
    up = (t["actual"] > t["previous"]).mean()
    k = res["correct"]
    assert res["always_up_rate"] == pytest.approx(up)
    assert res["p_vs_50"] == pytest.approx(sps.binomtest(k, len(t), 0.5, alternative="greater").pvalue)
    assert res["p_vs_always_up"] == pytest.approx(sps.binomtest(k, len(t), up, alternative="greater").pvalue)
    assert res["accuracy"] > 0.6 and res["p_vs_50"] < 1e-3
    pers = stats.binomial_tests(t, "persistence")  # never says up: accuracy = share of non-up days
    assert pers["accuracy"] == pytest.approx(1 - up)


def test_headline_cis_and_per_year():
    t = _table(600)
    ci = stats.headline_cis(t, n_boot=500)
    r = ci["rmse_ratio"]
    e, ep = t["model"] - t["actual"], t["persistence"] - t["actual"]
    assert r["estimate"] == pytest.approx(np.sqrt((e**2).mean() / (ep**2).mean()))
    assert r["lo"] < r["estimate"] < r["hi"]
    assert ci["direction_accuracy"]["lo"] < ci["direction_accuracy"]["estimate"] < ci["direction_accuracy"]["hi"]
    years = stats.per_year(t, ["model", "persistence"])
    assert years["days"].sum() == len(t)
    assert set(years.index) == set(t.index.year)
    last = t[t.index.year == years.index[-1]]
    assert years["up_rate"].iloc[-1] == pytest.approx((last["actual"] > last["previous"]).mean())
