"""The network's risk forecast (models/risk_network.py) on real bundled candles: its head starts as
its base distribution exactly (GARCH(1,1)-t's and HAR-t's quantiles blended), its quantiles are
monotone, the conformal shifts by hand, the calibration days disjoint from the selection days and
all before the cut, no future data in any fold, the same seed the same forecast."""

import numpy as np
import pandas as pd
import pytest
import torch

from coincast import load
from coincast.evaluation.risk import LEVELS
from coincast.models import risk_baselines as rb
from coincast.models.risk_net import RiskNet
from coincast.models.risk_network import NetworkRisk, conformal_shifts
from coincast.data.datasets import daily_coins
from coincast.models.risk_walk import percent_returns, pooled_returns, walk_forward_risk

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
    spans = net.spans_
    assert spans["train"][1] == spans["selection"][0] and spans["selection"][1] == spans["calibration"][0]
    assert spans["calibration"] == (cut - 60, cut) and spans["selection"] == (cut - 120, cut - 60)
    # the record: the 60 calibration days, then the first fold's 7 once known
    assert len(net.residuals_) == 67 and net.shift_ is not None and net.epochs_ is not None
    # the calibration moves each level by half its residuals' tau-quantile (shrink 0.5)
    np.testing.assert_allclose(net.shift_, 0.5 * conformal_shifts(np.array(net.residuals_), LEVELS))
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


def pool_of(candles, but="btc-usd"):
    return pooled_returns(candles, daily_coins(but=but))


def test_pool_is_aligned_by_calendar_day(candles):
    """Each pooled coin's returns sit on the data's own days, matched by date (a user's file stamped
    at 23:59:59 lines up with the bundled candles' 00:00), NaN where it has none; the data's own coin
    is not pooled."""
    pool = pool_of(candles)
    assert list(pool) == ["eth-usd", "ltc-usd", "xrp-usd", "ada-usd", "bnb-usd"]
    eth = load("eth-usd")
    r_eth = 100 * np.diff(np.log(eth["close"].to_numpy()))  # [T-1] on eth's days 1..
    day = candles.index[100]  # the pooled row 99 is the return of candles' row 100
    np.testing.assert_allclose(pool["eth-usd"][0][99], r_eth[eth.index.get_loc(day) - 1])
    late = candles.copy()
    late.index = late.index + pd.Timedelta(hours=23, minutes=59, seconds=59)
    np.testing.assert_array_equal(pooled_returns(late, {"eth-usd": eth})["eth-usd"][0], pool["eth-usd"][0])
    short = pooled_returns(candles, {"eth-usd": eth.iloc[-100:]})["eth-usd"][0]  # eth's last 100 days only
    assert np.isnan(short[:-99]).all() and not np.isnan(short[-99:]).any()


def test_pooled_first_fit(candles, monkeypatch):
    """The first fit trains on every pooled coin's windows of the same dates as its own (one coin
    with a gap and one that starts too late are left out), the pool changes the head, and the pool's
    rows from the first fold's cut on change nothing trained on (a row before it does: the pooled
    coin's own GARCH-t is fitted on every row before the cut)."""
    pool = {k: (r.copy(), gk) for k, (r, gk) in pool_of(candles).items()}
    pool["ltc-usd"][0][200] = np.nan  # a gap: left out
    pool["xrp-usd"][0][:400] = np.nan  # starts too late: left out
    cut = START - 1  # the first fold's cut among the returns
    seen = []  # the (train, select) data of each first fit
    train = NetworkRisk._train
    monkeypatch.setattr(NetworkRisk, "_train", lambda self, *data: seen.append(data) or train(self, *data))

    def head(pool):
        net = tiny(pool=pool, lr=1e-2)
        return walk_forward_risk(candles, start=START, end=END, baselines=[net]).q("network"), net

    q, net = head(pool)
    own = net.spans_["train"][1] - net.spans_["train"][0]
    assert net.pooled_ == {"own": own, "eth-usd": own, "ada-usd": own, "bnb-usd": own}
    assert len(seen[0][0][2]) == 4 * own and len(seen[0][1][2]) == 4 * 60  # four coins' windows, their selection tails
    assert not np.allclose(q, head({})[0])  # trained on its own windows alone

    def moved(frm):
        return {k: (np.where(np.arange(len(r)) >= frm, 3 * r, r), gk) for k, (r, gk) in pool.items()}

    def same(a, b) -> bool:
        return all(torch.equal(x, y) for part_a, part_b in zip(a, b) for x, y in zip(part_a, part_b))

    head(moved(cut))
    head(moved(cut - 1))
    assert same(seen[0], seen[2]) and not same(seen[0], seen[3])


def test_one_thread_is_local_to_the_call():
    """The decorated call runs in one torch thread; the caller's count is back after it, also when
    it raises."""
    from coincast.models.risk_network import one_thread

    seen = []

    @one_thread
    def work(fail: bool):
        seen.append(torch.get_num_threads())
        if fail:
            raise ValueError("boom")

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        work(False)
        with pytest.raises(ValueError):
            work(True)
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_realized_inputs_and_base(candles):
    """realized=True: six inputs (returns, ranges, GARCH's path, then sqrt RV, RS- and BV), the base
    the mean of GARCH-t's and HAR-RV's quantiles (epoch 0, no calibration), and it refuses to fit
    without realized measures."""
    from coincast.prep import realized

    r, gk, index = percent_returns(candles)
    hourly = load("btc-usd-1h").loc[str(index[0].date()) :]
    rm, _ = realized.model_inputs(realized.on_days(realized.daily_measures(hourly), index), gk)
    cut = START - 1
    net = tiny(max_epochs=0, min_record=10**6, realized=True).fit(r[:cut], gk[:cut], rm[:cut])
    assert net.net_.lstm.input_size == 6 and isinstance(net.har_, rb.HarRV)
    got = net.forecast(r[: cut + 6], gk[: cut + 6], cut, LEVELS, rm[: cut + 6])  # [7, K]
    want = [m.fit(r[:cut], gk[:cut], rm[:cut]).forecast(r[: cut + 6], gk[: cut + 6], cut, LEVELS, rm[: cut + 6])
            for m in (rb.GarchT(), rb.HarRV())]
    np.testing.assert_allclose(got, (want[0] + want[1]) / 2, rtol=1e-5, atol=1e-5)
    mu, s = net._sigma(r)
    x = net._windows(r, gk, s, mu, np.array([cut]), rm)  # [1, L, 6]: the window before day cut
    np.testing.assert_allclose(x[0, -1, 3:].numpy(), np.sqrt([rm[m][cut - 1] for m in ("rv", "rs_neg", "bv")]) / s[cut],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="needs the realized measures"):
        tiny(realized=True).fit(r[:cut], gk[:cut])


def test_saved_head_forecasts_what_it_did_and_continues_alike(candles, tmp_path):
    """A loaded head forecasts exactly what the saved one did (quantiles and variance), HAR-RV's
    fit included (realized=True), and a later fit of either (network frozen: GARCH, HAR and the
    calibration refitted on the forecasts' days since) gives the same forecasts again; nothing is
    pickled (safetensors and JSON only)."""
    from coincast.prep import realized

    r, gk, index = percent_returns(candles)
    hourly = load("btc-usd-1h").loc[str(index[0].date()) :]
    rm, _ = realized.model_inputs(realized.on_days(realized.daily_measures(hourly), index), gk)
    cut, later = START - 1, START + 6
    for kw, m in (({}, None), ({"realized": True}, rm)):
        fit = lambda net, n: net.fit(r[:n], gk[:n], None if m is None else m[:n])  # noqa: E731
        saved = fit(tiny(min_record=20, **kw), cut)
        saved.forecast(r[: later - 1], gk[: later - 1], cut, LEVELS, None if m is None else m[: later - 1])  # pending
        saved.save(tmp_path / str(kw))
        assert sorted(p.name for p in (tmp_path / str(kw)).iterdir()) == ["risk_network.json", "risk_network.safetensors"]
        loaded = NetworkRisk.load(tmp_path / str(kw))
        for net in (saved, loaded):  # the pending forecasts travel: both continue alike
            fit(net, later)
        args = (r[: later + 3], gk[: later + 3], later, LEVELS, None if m is None else m[: later + 3])
        np.testing.assert_allclose(loaded.forecast(*args), saved.forecast(*args), rtol=0, atol=1e-6)
        np.testing.assert_allclose(loaded.variance(*args[:3], args[4]), saved.variance(*args[:3], args[4]), rtol=0, atol=1e-6)
        assert loaded.info_["record"] == saved.info_["record"] and loaded.shift_ is not None
        for a, b in zip(loaded.net_.state_dict().values(), saved.net_.state_dict().values()):
            assert torch.equal(a, b)


def test_a_missing_or_corrupt_head_is_explained(candles, tmp_path):
    from coincast.errors import ModelFileError

    with pytest.raises(ModelFileError, match="no risk head in"):
        NetworkRisk.load(tmp_path)
    r, gk, _ = percent_returns(candles)
    tiny(max_epochs=0).fit(r[:START], gk[:START]).save(tmp_path)
    (tmp_path / "risk_network.safetensors").write_bytes(b"\x08")
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        NetworkRisk.load(tmp_path)
