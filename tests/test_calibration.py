"""One validation tail, three uses: early stopping and shrinkage select on its earlier part,
the conformal intervals calibrate on its later part (and on earlier folds' out-of-sample
errors), so the interval residuals are not in-sample for anything fitted."""

import numpy as np
import pytest

import coincast.models.forecaster as forecaster_module
from coincast.backtest.engine import BacktestSettings, calibration_pool, walk_forward
from coincast.config import Settings
from coincast.data import load
from coincast.evaluation.conformal import coverage
from coincast.models.forecaster import Forecaster, split_calibration
from tests.conftest import one_torch_thread, tiny

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def test_calibration_windows_are_disjoint_from_those_that_chose_the_epoch_and_the_shrinkage(btc, monkeypatch):
    seen = {}
    real_train, real_shrink = forecaster_module.train, forecaster_module.fit_shrinkage

    def train(module, X, y, X_val, y_val, *args, **kwargs):
        seen["y_val"] = y_val.copy()  # early stopping watches the loss on these windows
        return real_train(module, X, y, X_val, y_val, *args, **kwargs)

    def fit_shrinkage(actual, model, prev):
        seen["shrink_actual"] = np.asarray(actual).copy()
        return real_shrink(actual, model, prev)

    monkeypatch.setattr(forecaster_module, "train", train)
    monkeypatch.setattr(forecaster_module, "fit_shrinkage", fit_shrinkage)
    s = tiny(window=12)
    frame = btc.iloc[-600:]
    f = Forecaster(s).fit(frame)
    sel, cal = f.select_index_, f.calib_index_
    assert len(sel) + len(cal) == len(f.val_index_) and len(cal) >= len(f.val_index_) // 2
    assert sel.intersection(cal).empty and sel.max() < cal.min()  # calibration: the later part
    assert len(seen["y_val"]) == len(sel)  # the epoch was chosen on the selection windows only
    np.testing.assert_array_equal(seen["shrink_actual"], frame["close"].loc[sel].to_numpy())  # so was a


def test_split_rule():
    sel, cal = split_calibration(np.arange(90, 100), 0.5)
    assert list(sel) == [90, 91, 92, 93, 94] and list(cal) == [95, 96, 97, 98, 99]
    sel, cal = split_calibration(np.array([7]), 0.5)  # one window: it selects, none calibrates
    assert list(sel) == [7] and len(cal) == 0
    sel, cal = split_calibration(np.array([5, 3, 4]), 0.5, selects=False)  # nothing selected on validation
    assert sorted(sel) == [3, 4, 5] and list(cal) == [3, 4, 5]
    pool = calibration_pool(np.array([1.0, 2.0]), np.arange(10.0), 3)
    assert list(pool) == [1.0, 2.0, 7.0, 8.0, 9.0]


def test_walk_forward_intervals_cover_their_nominal_level():
    """The slowest test of the suite (~30 s): a year of daily warm-refit folds on btc-usd."""
    s = Settings()
    s.data.window, s.model.hidden, s.train.epochs, s.data.target = 20, [4, 4], 2, "close"
    bt = BacktestSettings(start="2025-01-01", refit="warm", warm_epochs=1)
    r = walk_forward(load("btc-usd"), s, bt)
    assert len(r.table) >= 300
    cov = coverage(r.table, bt.levels)
    # measured 2026-11-26: 80.6% and 95.1% over 371 days (53 folds)
    assert abs(cov["80%"]["coverage"] - 0.80) <= 0.03, cov
    assert abs(cov["95%"]["coverage"] - 0.95) <= 0.03, cov
    assert (r.folds["calib_scores"].iloc[1:] > r.folds["calib_windows"].iloc[1:]).all()  # earlier folds' errors too
