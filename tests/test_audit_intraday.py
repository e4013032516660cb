"""The risk audit perturbs the hourly series from the cut-off too and hands it to the walk beside the
daily candles, so a risk model that reads a day's own hours is caught, and one that reads only the
hours before the day passes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coincast.backtest import audit
from coincast.backtest.audit import audit_risk, perturbed_hours
from coincast.data import load
from coincast.models.risk_walk import RiskWalk, walk_forward_risk


@pytest.fixture(scope="module")
def daily():
    return load("btc-usd").iloc[-700:]  # 699 returns: too few for the network, the baselines only


@pytest.fixture(scope="module")
def hourly(daily):
    return load("btc-usd-1h").loc[daily.index[0]:]


def test_perturbed_hours_differ_only_from_the_cut_on(hourly):
    cutoff, end = pd.Timestamp("2025-06-10", tz="UTC"), pd.Timestamp("2025-07-01", tz="UTC")
    kept, moved = perturbed_hours(hourly, cutoff, end)
    assert kept.index[-1] == pd.Timestamp("2025-06-30 23:00", tz="UTC") and moved.index.equals(kept.index)
    before = kept.index < cutoff
    pd.testing.assert_frame_equal(moved[before], kept[before])
    assert (moved[~before] != kept[~before]).all().all()  # every value of every hour from 00:00 of the cut day
    assert (moved["high"] == moved[["open", "high", "low", "close"]].max(axis=1)).all()  # still candles
    assert (moved["low"] == moved[["open", "high", "low", "close"]].min(axis=1)).all()


def _recording(calls: list, use=None):
    """walk_forward_risk taking the hourly candles; records (daily, hourly) of each walk. `use`:
    the hours' day offset a toy model reads (0: the forecast day's own hours, a leak; 1: the day
    before's), scaling every quantile by that day's realized variance."""

    def walk(candles, *, intraday=None, **kw):
        calls.append((candles, intraday))
        w = walk_forward_risk(candles, intraday=intraday, **kw)
        if use is None:
            return w
        r = 100 * np.log(intraday["close"]).diff()
        rv = (r**2).groupby(intraday.index.floor("1D")).sum()  # [D] each day's realized variance
        scale = 1 + rv.shift(use).reindex(w.actual.index).fillna(0).to_numpy()  # [N]
        return RiskWalk(w.actual, w.quantiles.mul(scale, axis=0), w.tau, w.folds, w.counts)

    return walk


def test_the_perturbed_hours_are_passed_where_the_daily_candles_are(daily, hourly, monkeypatch):
    calls = []
    monkeypatch.setattr(audit, "walk_forward_risk", _recording(calls))
    cutoff = daily.index[-12]
    assert audit_risk(daily, cutoff, intraday=hourly).passed
    (raw, hours), (pert, moved) = calls
    assert raw.index.equals(pert.index) and hours.index.equals(moved.index)
    assert hours.index[-1] == raw.index[-1] + pd.Timedelta(hours=23)  # the hours of the walk's days only
    for a, b in ((raw, pert), (hours, moved)):  # both perturbed from the same time, 00:00 of the cut-off day
        changed = (a != b).any(axis=1)
        assert not changed[a.index < cutoff].any() and changed[a.index >= cutoff].all()
    pd.testing.assert_frame_equal(hours, hourly.loc[: raw.index[-1] + pd.Timedelta(hours=23)])


def test_a_model_reading_the_days_own_hours_is_caught(daily, hourly, monkeypatch):
    cutoff = daily.index[-12]
    monkeypatch.setattr(audit, "walk_forward_risk", _recording([], use=1))
    causal = audit_risk(daily, cutoff, intraday=hourly)
    assert causal.passed, causal.leaks
    monkeypatch.setattr(audit, "walk_forward_risk", _recording([], use=0))
    leaky = audit_risk(daily, cutoff, intraday=hourly)
    assert not leaky.passed and set(leaky.leaks.values()) == {str(cutoff)}  # the cut-off day's own hours moved
