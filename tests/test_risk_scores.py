"""The risk scores (coincast.evaluation.risk): known values worked by hand, closed forms, and the
`scoringrules` package as an independent reference."""

import math

import numpy as np
import pytest
import scoringrules as sr
from scipy import stats

from conftest import dm_p_by_hand
from coincast.evaluation import risk
from coincast.evaluation.risk import LEVELS, LEVELS_99, REQUIRED_LEVELS


def normal_quantiles(mu, sigma, tau):
    """[N, K] quantiles of N(mu, sigma^2) per row."""
    return np.asarray(mu, float)[:, None] + np.asarray(sigma, float)[:, None] * stats.norm.ppf(tau)[None, :]


def crps_normal(y, mu, sigma):
    """The closed form of the CRPS of N(mu, sigma^2) at y (Gneiting & Raftery 2007)."""
    z = (y - mu) / sigma
    return sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / math.sqrt(math.pi))


@pytest.fixture(scope="module")
def forecast():
    """300 days of heavy-tailed returns (percent) and a Student-t forecast with a moving scale, at
    the baselines' 101 LEVELS (1..99%, 2.5% and 97.5%)."""
    rng = np.random.default_rng(7)
    sigma = 2 + np.abs(np.cumsum(rng.normal(0, 0.2, 300)))  # [N]
    y = sigma * rng.standard_t(4, 300)  # [N]
    Q = 0.1 + sigma[:, None] * stats.t.ppf(LEVELS, 5)[None, :]  # [N, 101]
    return y, Q


def test_pinball_of_a_point_mass_by_hand():
    # every quantile at 0; y = 2: loss tau * 2; y = -1: loss (1 - tau) * 1
    tau = np.array([0.1, 0.5, 0.9])
    loss = risk.pinball([2.0, -1.0, 0.0], np.zeros((3, 3)), tau)
    np.testing.assert_allclose(loss, [[0.2, 1.0, 1.8], [0.9, 0.5, 0.1], [0, 0, 0]], atol=1e-15)
    # a point mass at c (every quantile c): CRPS |y - c|, exactly, since the K levels average to 1/2
    c = np.full((2, 99), 1.5)
    assert risk.crps([4.0, 1.0], c, LEVELS_99) == pytest.approx([2.5, 0.5], rel=1e-12)


def test_crps_of_a_normal_against_its_closed_form():
    y = np.linspace(-3, 3, 61)  # within 3 sd
    mu, sigma = np.full(61, 0.0), np.full(61, 1.0)
    approx = risk.crps(y, normal_quantiles(mu, sigma, LEVELS_99), LEVELS_99)
    exact = crps_normal(y, mu, sigma)
    rel = approx / exact - 1
    assert np.all((rel > 0.009) & (rel < 0.0105))  # the stated error: about +1% at K = 99
    assert np.abs(approx * 99 / 100 / exact - 1).max() < 1e-3  # the (K+1)/K factor is nearly all of it
    # a coarser grid is worse, as stated (+5% at K = 19)
    tau19 = np.arange(1, 20) / 20
    rel19 = risk.crps(y, normal_quantiles(mu, sigma, tau19), tau19) / exact - 1
    assert np.all((rel19 > 0.03) & (rel19 < 0.06))


def test_scores_agree_with_scoringrules(forecast):
    y, Q = forecast
    grid = np.isin(LEVELS, LEVELS_99)  # the 99 columns CRPS is computed on
    assert grid.sum() == 99 and risk.crps_columns(LEVELS).tolist() == np.flatnonzero(grid).tolist()
    theirs = sr.crps_quantile(y, Q[:, grid], LEVELS_99, backend="numpy")
    assert risk.crps(y, Q, LEVELS) == pytest.approx(theirs, rel=1e-12)
    assert risk.crps(y, Q[:, grid], LEVELS_99) == pytest.approx(theirs, rel=1e-12)
    ours = risk.pinball(y, Q, LEVELS)  # [N, 101]
    for k in range(len(LEVELS)):
        assert ours[:, k] == pytest.approx(sr.quantile_score(y, Q[:, k], LEVELS[k], backend="numpy"), rel=1e-12, abs=1e-12)
    for name, (lo, hi) in risk.INTERVALS.items():
        lo_k, hi_k = risk.level_index(LEVELS, lo), risk.level_index(LEVELS, hi)
        theirs = sr.interval_score(y, Q[:, lo_k], Q[:, hi_k], lo + 1 - hi, backend="numpy").mean()
        assert risk.interval(y, Q, LEVELS, name)["interval_score"] == pytest.approx(theirs, rel=1e-12)


def test_interval_coverage_and_width_by_hand():
    tau = np.array(REQUIRED_LEVELS)
    Q = np.tile(np.array([-4, -3, -2, -1, 0, 1, 2, 3, 4.0]), (4, 1))  # [4, 9]: 80% = [-2, 2], 95% = [-4, 4]
    y = np.array([0.0, 3.0, -5.0, 2.0])
    i80 = risk.interval(y, Q, tau, "80")
    assert i80["coverage"] == 0.5 and i80["width"] == 4.0
    # misses: y=3 by 1, y=-5 by 3, each times 2/0.2 = 10
    assert i80["interval_score"] == pytest.approx((4 * 4 + 10 * (1 + 3)) / 4)
    i95 = risk.interval(y, Q, tau, "95")
    assert i95["coverage"] == 0.75 and i95["interval_score"] == pytest.approx((4 * 8 + 40 * 1) / 4)


def test_kupiec_by_hand():
    b = np.zeros(20, bool)
    b[[3, 9, 15]] = True  # 3 breaches in 20 days at p = 5%
    # LR = -2 [17 ln 0.95 + 3 ln 0.05 - 17 ln 0.85 - 3 ln 0.15] = 2.8100
    k = risk.kupiec(b, 0.05)
    assert k["breaches"] == 3 and k["lr"] == pytest.approx(2.81000, abs=1e-5)
    assert k["p_value"] == pytest.approx(0.09371, abs=1e-4)
    # no breach at all: LR = -2 n ln(1 - p); exactly the nominal rate: LR = 0
    assert risk.kupiec(np.zeros(100, bool), 0.01)["lr"] == pytest.approx(-200 * math.log(0.99))
    assert risk.kupiec(np.arange(100) % 20 == 0, 0.05)["lr"] == pytest.approx(0, abs=1e-12)


def test_christoffersen_by_hand_and_on_clustered_breaches():
    b = np.array([0, 1, 1, 0, 0, 0, 1, 0, 0, 0], bool)  # pairs: 01 11 10 00 00 01 10 00 00
    c = risk.christoffersen(b)
    assert (c["n00"], c["n01"], c["n10"], c["n11"]) == (4, 2, 2, 1)
    pi01, pi11, pi = 2 / 6, 1 / 3, 3 / 9
    assert pi01 == pi11 == pi and c["lr"] == pytest.approx(0, abs=1e-12)  # no dependence at all
    # 250 days, 12 breaches in 3 runs of 4: a breach is followed by one 3 times in 4
    clustered = np.zeros(250, bool)
    for s in (40, 120, 200):
        clustered[s : s + 4] = True
    assert risk.christoffersen(clustered)["p_value"] < 1e-6
    # the same 12 breaches spread out: no evidence against independence (no breach follows one,
    # which the Markov chain fits a little better than independence, hence not p = 1)
    spread = np.zeros(250, bool)
    spread[::21] = True
    assert risk.christoffersen(spread)["p_value"] > 0.2
    # the rate is right (12/250 = 4.8%), so only the joint test sees the clustering
    y = np.where(clustered, -3.0, 0.0)
    Q = np.tile(np.array([-2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2.0]), (250, 1))  # 5% VaR = -1.5
    v = risk.var_tests(y, Q, np.array(REQUIRED_LEVELS), 0.05)
    assert v["breaches"] == 12 and v["kupiec_p"] > 0.8 and v["christoffersen_p"] < 1e-6 and v["cc_p"] < 1e-5
    assert v["cc_p"] == pytest.approx(stats.chi2.sf(risk.kupiec(clustered, 0.05)["lr"] + risk.christoffersen(clustered)["lr"], 2))


def test_crps_dm_uses_the_projects_diebold_mariano(forecast):
    y, Q = forecast
    wide = Q * 1.3  # a worse forecast: too wide
    d = risk.crps_dm(y, Q, wide, LEVELS)
    a, b = risk.crps(y, Q, LEVELS), risk.crps(y, wide, LEVELS)
    assert d["ratio"] == pytest.approx(a.mean() / b.mean()) and d["ratio"] < 1
    assert d["dm_p"] == pytest.approx(dm_p_by_hand(a, b), rel=1e-9) and d["dm_p"] < 0.05


def test_risk_scores_of_a_calibrated_forecast(forecast):
    y, Q = forecast
    s = risk.risk_scores(y, Q, LEVELS)
    assert s["n"] == 300 and s["crps"] == pytest.approx(risk.crps(y, Q, LEVELS).mean())
    assert len(s["pinball"]) == 101 and s["var"]["0.01"]["level"] == 0.01
    assert 0.7 < s["intervals"]["80"]["coverage"] < 0.9
    # a 9-level head: no CRPS (not an even grid), no 1% VaR, everything else
    tau = np.array(REQUIRED_LEVELS)
    s9 = risk.risk_scores(y, np.quantile(Q, tau, axis=1).T, tau)
    assert s9["crps"] is None and s9["var"]["0.01"] is None and s9["var"]["0.05"] is not None


@pytest.mark.parametrize("tau, message", [
    ([0.5, 0.1, 0.9], "strictly increasing"),
    ([5, 50, 95], "strictly between 0 and 1"),
    ([0.1, 0.5, 0.5], "strictly increasing"),
])
def test_bad_levels_are_explained(tau, message):
    with pytest.raises(ValueError, match=message):
        risk.pinball(np.zeros(2), np.zeros((2, 3)), tau)


def test_other_mistakes_are_explained(forecast):
    y, Q = forecast
    with pytest.raises(ValueError, match=r"shape \[N, K\] = \[300, 101\]"):
        risk.crps(y, Q.T, LEVELS)
    with pytest.raises(ValueError, match="evenly spaced"):
        risk.crps(y, Q[:, :50], LEVELS[:50])
    grid = np.isin(LEVELS, LEVELS_99)
    with pytest.raises(ValueError, match="missing 2.5%, 97.5%"):
        risk.risk_scores(y, Q[:, grid], LEVELS_99)
    with pytest.raises(ValueError, match="needs the 1% quantile"):
        risk.var_tests(y, Q[:, 1:], LEVELS[1:], 0.01)
    with pytest.raises(ValueError, match="central intervals are '80', '95'"):
        risk.interval(y, Q, LEVELS, "90")
    with pytest.raises(ValueError, match="finite"):
        risk.crps(np.r_[np.nan, y[1:]], Q, LEVELS)


def test_variance_losses_by_hand():
    proxy, h = np.array([2.0, 1.0, 4.0]), np.array([1.0, 1.0, 8.0])
    np.testing.assert_allclose(risk.qlike(proxy, h), [2 - math.log(2) - 1, 0.0, 0.5 - math.log(0.5) - 1])
    np.testing.assert_allclose(risk.mse(proxy, h), [1.0, 0.0, 16.0])
    with pytest.raises(ValueError, match="positive and finite"):
        risk.qlike(proxy, [1.0, 0.0, 1.0])


def test_variance_dm_prefers_the_true_variance():
    """With a noisy proxy (the square of a return drawn with the true variance), the true variance
    beats one twice too large on both losses, significantly (Patton 2011: the ranking survives the
    noise), and the p-values are the project's DM on the daily losses."""
    rng = np.random.default_rng(3)
    v = np.exp(rng.normal(0, 0.5, 2000))  # [N] true variances
    proxy = v * rng.standard_normal(2000) ** 2  # [N] an unbiased, noisy proxy
    out = risk.variance_dm(proxy, v, 2 * v)
    assert out["qlike_ratio"] < 1 and out["qlike_dm_p"] < 0.01 and out["mse_ratio"] < 1
    assert out["qlike_dm_p"] == pytest.approx(dm_p_by_hand(risk.qlike(proxy, v), risk.qlike(proxy, 2 * v)), rel=1e-9)


def test_model_confidence_set_keeps_the_best_and_drops_the_clearly_worse():
    import pandas as pd

    rng = np.random.default_rng(5)
    base = rng.gamma(2.0, 1.0, 500)  # [N] shared daily losses
    losses = pd.DataFrame({"best": base, "twin": base + rng.normal(0, 0.01, 500),
                           "worse": base + 0.5 + rng.normal(0, 0.1, 500)})
    out = risk.model_confidence_set(losses, size=0.10)
    assert "best" in out["included"] and "worse" not in out["included"]
    assert out["pvalues"]["worse"] < 0.10 and max(out["pvalues"].values()) == 1.0
    assert out == risk.model_confidence_set(losses, size=0.10)  # seeded: the same set again
