"""The network's risk forecast (models/risk_network.py) on real bundled candles: its head starts as
its base distribution exactly (GARCH(1,1)-t's and HAR-t's quantiles blended), its quantiles are
monotone, the conformal shifts by hand, the calibration days disjoint from the selection days and
all before the cut, no future data in any fold, the same seed the same forecast."""

import numpy as np
import pytest
import torch

from coincast import load
from coincast.evaluation.risk import LEVELS
from coincast.models import risk_baselines as rb
from coincast.models.risk_net import RiskNet
from coincast.models.risk_network import NetworkRisk, conformal_shifts
from coincast.models.risk_walk import percent_returns, walk_forward_risk

START, END = 520, 533  # candle rows of the first and last target day: 14 days, two folds


def tiny(**kw) -> NetworkRisk:
    return NetworkRisk(**{"window": 10, "hidden": 4, "calibration": 60, "selection": 60, "max_epochs": 3,
                          "min_record": 30, **kw})


@pytest.fixture(scope="module")
def candles():
    return load("btc-usd").iloc[-600:]


@pytest.fixture(scope="module")
def walk(candles):
    net = tiny()
    return walk_forward_risk(candles, start=START, end=END, baselines=[rb.GarchT(), net]), net


def test_head_of_zeros_is_the_base_and_monotone():
    tau = torch.tensor(LEVELS)
    base = torch.tensor(rb.std_t_ppf(LEVELS, 4.5), dtype=torch.float32)  # [K]
    net = RiskNet(3, len(LEVELS), list(LEVELS).index(0.5), hidden=4)
    x = torch.randn(5, 10, 3)
    torch.testing.assert_close(net(x, base), base.expand(5, -1))
    rows = torch.linspace(0.5, 1.5, 5)[:, None] * base + torch.linspace(-1, 1, 5)[:, None]  # [5, K]: a base per window
    torch.testing.assert_close(net(x, rows), rows)
    torch.nn.init.normal_(net.head.weight, std=3.0)  # any head: still increasing
    assert (torch.diff(net(x, base), dim=1) > 0).all() and (torch.diff(net(x, rows), dim=1) > 0).all()
    assert len(tau) == base.shape[0]


def test_conformal_shifts_by_hand():
    res = np.arange(1.0, 10.0)[:, None].repeat(3, axis=1)  # [9, 3]: residuals 1..9 at each level
    # n = 9, linear interpolation: position (n - 1) tau from the smallest: 0.8 -> 1.8, 4 -> 5, 7.2 -> 8.2
    np.testing.assert_allclose(conformal_shifts(res, np.array([0.1, 0.5, 0.9])), [1.8, 5.0, 8.2])
    res[:, 1] -= 10  # each level its own residuals
    np.testing.assert_allclose(conformal_shifts(res, np.array([0.1, 0.5, 0.9])), [1.8, -5.0, 8.2])


def test_first_fit_days_and_calibration(walk, candles):
    w, net = walk
    cut = START - 1  # the first target day's row among the returns
    spans = net.spans
    assert spans["train"][1] == spans["selection"][0] and spans["selection"][1] == spans["calibration"][0]
    assert spans["calibration"] == (cut - 60, cut) and spans["selection"] == (cut - 120, cut - 60)
    # the record: the 60 calibration days, then the first fold's 7 once known
    assert len(net.residuals) == 67 and net.shift is not None and net.epochs is not None
    # the calibration moves each level by half its residuals' tau-quantile (shrink 0.5)
    np.testing.assert_allclose(net.shift, 0.5 * conformal_shifts(np.array(net.residuals), LEVELS))
    q = w.q("network")  # [14, K]
    assert q.shape == (14, len(LEVELS)) and (np.diff(q, axis=1) >= 0).all()  # calibrated rows are sorted: ties allowed
    # without calibration (a record too short for it) the network at epoch 0 is its base: the mean of
    # GARCH-t's and HAR-t's quantiles, or GARCH-t's alone with har_weight 0
    r, gk, _ = percent_returns(candles)
    fitted = []
    for model in (rb.GarchT(), rb.HarT(), tiny(max_epochs=0, min_record=10**6),
                  tiny(max_epochs=0, min_record=10**6, har_weight=0.0)):
        model.fit(r[:cut], gk[:cut])
        fitted.append(model.forecast(r[:cut + 6], gk[:cut + 6], cut, LEVELS))  # [7, K]
    garch, har, blend, alone = fitted
    np.testing.assert_allclose(blend, (garch + har) / 2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(alone, garch, rtol=1e-5, atol=1e-5)
    assert not np.allclose(garch, har, rtol=1e-2)


def test_no_future_data_and_same_seed(walk, candles):
    """Candles changed from the second fold's cut on move nothing forecast before it; the same
    seed gives the same forecast."""
    w, _ = walk
    days = w.actual.index
    d = days[7]
    shaken = candles.copy()
    late = shaken.index >= d
    shaken.loc[late, ["open", "high", "low", "close"]] *= np.exp(np.random.default_rng(1).normal(0, 0.05, late.sum()))[:, None]
    shaken.loc[late, "high"] *= 1.02
    other = walk_forward_risk(shaken, start=START, end=END, baselines=[rb.GarchT(), tiny()])
    upto = days <= d
    np.testing.assert_array_equal(w.q("network")[upto], other.q("network")[upto])
    assert not np.allclose(w.q("network")[~upto], other.q("network")[~upto])
    again = walk_forward_risk(candles, start=START, end=END, baselines=[rb.GarchT(), tiny()])
    np.testing.assert_array_equal(w.q("network"), again.q("network"))


def test_too_little_history_is_explained(candles):
    with pytest.raises(Exception, match="need"):
        walk_forward_risk(candles, start=300, end=310, baselines=[tiny()])
