"""Shrinkage towards persistence: by hand, and fitted on the backtest's own out-of-sample record."""

import numpy as np
import pandas as pd
import pytest

from coincast.backtest.engine import BacktestSettings, walk_forward
from coincast.data import load
from coincast.models.shrinkage import MIN_RECORD, RECORD_Z, record_shrinkage
from coincast.prep.windows import fill_zeros
from tests.conftest import one_torch_thread, tiny

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def test_record_shrinkage_by_hand():
    rng = np.random.default_rng(0)
    n = 200
    prev = 100.0 + rng.normal(0, 1, n).cumsum()
    move = rng.normal(0, 0.01, n)  # [n] the network's relative moves
    actual = prev * (1 + 0.4 * move + rng.normal(0, 0.005, n))
    network = prev * (1 + move)
    a_hat = np.dot(actual / prev - 1, move) / np.dot(move, move)  # least squares through the origin
    assert record_shrinkage(actual, network, prev, z=0.0) == pytest.approx(a_hat)
    resid = actual / prev - 1 - a_hat * move
    se = np.sqrt(resid @ resid / (n - 1) / (move @ move))
    assert record_shrinkage(actual, network, prev) == pytest.approx(a_hat - RECORD_Z * se)  # the default: a lower bound
    assert record_shrinkage(actual, network, prev, z=2.0) == pytest.approx(a_hat - 2 * se)
    assert record_shrinkage(actual, network, prev, size=50, z=0.0) == pytest.approx(  # the latest 50 only
        np.dot(actual[-50:] / prev[-50:] - 1, move[-50:]) / np.dot(move[-50:], move[-50:]))
    k = MIN_RECORD - 1
    assert record_shrinkage(actual[:k], network[:k], prev[:k]) == 0.0  # too short a record: persistence
    assert record_shrinkage(prev * (1 - move), network, prev) == 0.0  # anti-skill: persistence, never a < 0
    assert record_shrinkage(prev * (1 + 3 * move), network, prev, z=0.0) == 1.0  # never beyond the network


@pytest.fixture(scope="module")
def raw():
    return fill_zeros(load("btc-usd").iloc[-300:])


BT = dict(start="2025-11-10", retrain_every=14)  # folds from 11-10, 11-24, 12-08, 12-22 (14 days) and 01-05


def walk(frame):
    s = tiny(window=12, target="close", train={"seed": 4, "precision": "fp32"})
    return walk_forward(frame, s, BacktestSettings(**BT), "close", network=True)


def test_a_comes_from_earlier_folds_only(raw, monkeypatch):
    # z = 1 (the default before the 2021 tuning period): with the default 2.5 this tiny model's
    # record never shows skill, every a would be 0 and nothing below could tell the folds apart
    monkeypatch.setattr("coincast.models.shrinkage.RECORD_Z", 1.0)
    base = walk(raw)
    t, a = base.table, base.folds["shrink"].tolist()
    assert len(a) == 5 and a[:2] == [0.0, 0.0]  # 0 and 14 scored forecasts: under MIN_RECORD, persistence
    first = t[t["fold"] < 2]
    np.testing.assert_array_equal(first["model"], first["persistence"])
    want = record_shrinkage(first["actual"], first["network"], first["previous"])
    assert 0 < a[2] < 1 and a[2] == pytest.approx(want)  # fold 2: from folds 0 and 1's forecasts (this seed: unclipped)
    last = t[t["fold"] == 4]
    np.testing.assert_allclose(last["model"], last["previous"] + a[4] * (last["network"] - last["previous"]))
    # fold 2's test days (12-08..12-21) are in the record of folds 3 and 4 only: a of folds 0-2 stays
    moved = raw.copy()
    rows = (moved.index >= pd.Timestamp("2025-12-08", tz="UTC")) & (moved.index <= pd.Timestamp("2025-12-21", tz="UTC"))
    moved.loc[rows] *= np.exp(np.random.default_rng(1).normal(0.0, 0.05, size=(rows.sum(), moved.shape[1])))
    after = walk(moved).folds["shrink"].tolist()
    assert after[:3] == a[:3] and after[3] != pytest.approx(a[3], rel=1e-6)
