"""Windowing: the tutorial's normalisation, the shift rule, zero filling, splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coincast.errors import DataError
from coincast.models.forecaster import Forecaster
from coincast.prep.windows import (
    SHIFT,
    Normaliser,
    fill_zeros,
    make_windows,
    split_train_val,
)
from tests.conftest import tiny


def test_windows_match_a_plain_loop_over_rows(btc):
    f = btc.iloc[:80]
    norm = Normaliser.fit(f, "close")
    w = make_windows(f, "close", 50, norm)
    assert w.X.shape == (31, 49, 5) and w.y.shape == (31,)
    values = f.to_numpy()
    for i in (0, 17, 30):  # the tutorial's loop: window / window[0] - 1
        win = values[i : i + 50] / values[i] - 1
        np.testing.assert_allclose(w.X[i], win[:49], rtol=1e-6)
        assert w.y[i] == pytest.approx(win[49, 3], rel=1e-6)
        assert w.base[i] == values[i, 3] and w.prev[i] == values[i + 48, 3] and w.actual[i] == values[i + 49, 3]
    assert w.index[0] == f.index[49]
    np.testing.assert_allclose(w.to_price(w.y), w.actual, rtol=1e-6)


def test_change_target_anchors_on_last_price(btc):
    f = btc.iloc[:80]
    w = make_windows(f, "close", 50, Normaliser.fit(f, "close"), target_mode="change")
    np.testing.assert_allclose(w.y, w.actual / w.prev - 1, rtol=1e-5)
    # a zero prediction is exactly persistence
    np.testing.assert_array_equal(w.to_price(np.zeros(len(w))), w.prev)


def test_columns_that_go_negative_get_the_shift_rule(tutorial_frame):
    f = fill_zeros(tutorial_frame)
    norm = Normaliser.fit(f.iloc[:2000], "Bitcoin Price")
    shifted = [c for c, r in zip(norm.columns, norm.rules) if r == SHIFT]
    assert shifted == ["Two-Week Hash Growth", "Quarterly Hash Growth", "UTXO Growth"]
    w = make_windows(f.iloc[:2000], "Bitcoin Price", 50, norm)
    assert np.isfinite(w.X).all()
    j = norm.columns.index("UTXO Growth")
    col = f["UTXO Growth"].to_numpy()[:50]
    np.testing.assert_allclose(w.X[0, :, j], (col[:49] - col[0]) / norm.scales[j], rtol=1e-5)


def test_shift_scale_is_the_training_rows_standard_deviation(tutorial_frame):
    f = fill_zeros(tutorial_frame)
    norm = Normaliser.fit(f.iloc[:1000], "Bitcoin Price")
    for col in ["Two-Week Hash Growth", "Quarterly Hash Growth", "UTXO Growth"]:
        j = norm.columns.index(col)
        assert norm.rules[j] == SHIFT and norm.scales[j] == pytest.approx(f[col].iloc[:1000].std(ddof=0), rel=1e-12)
    assert norm.scales[norm.columns.index("Bitcoin Price")] == 1.0  # a ratio column has no scale


def test_forecaster_keeps_the_training_rows_normaliser_when_later_rows_differ(tutorial_frame):
    """Fit on rows[:cut], then predict on frames whose rows from the cut on differ: the rules and
    scales stay those of rows[:cut], and no forecast of a target before the cut moves."""
    cut, end = 600, 700
    s = tiny("tutorial", window=20, target="Bitcoin Price")
    m = Forecaster(s).fit(tutorial_frame.iloc[:cut])
    want = Normaliser.fit(fill_zeros(tutorial_frame.iloc[:cut]), "Bitcoin Price")
    assert m.normaliser_ == want and want.rules.count(SHIFT) == 3  # shift columns: their scales matter
    full = tutorial_frame.iloc[:end]
    changed = full.copy()
    for col in ["Two-Week Hash Growth", "Quarterly Hash Growth", "UTXO Growth"]:
        changed.iloc[cut:, changed.columns.get_loc(col)] *= 100  # a refit on these rows would see 100x the spread
    a, b = m.predict(full), m.predict(changed)
    assert m.normaliser_ == want
    before = a.index < full.index[cut]
    assert before.sum() == cut - 19
    pd.testing.assert_frame_equal(a[before], b[before])
    assert (a.loc[~before, "predicted"] != b.loc[~before, "predicted"]).any()  # the later rows do reach predict


def test_fill_zeros_uses_previous_value_and_never_the_future():
    f = pd.DataFrame({"a": [0.0, 0.0, 3.0, 0.0, 5.0], "b": [1.0, 0.0, 0.0, 2.0, 0.0]})
    out = fill_zeros(f)
    assert out["a"].tolist() == [0.0, 0.0, 3.0, 3.0, 5.0]  # leading zeros have no past: stay 0
    assert out["b"].tolist() == [1.0, 1.0, 1.0, 2.0, 2.0]


def test_fill_zeros_matches_the_pandas_formulation(tutorial_frame):
    f = tutorial_frame.copy()
    f.iloc[[0, 5, 6], 3] = 0.0  # zeros at the start and in a run
    want = f.mask(f == 0).ffill().fillna(0.0)  # the plain pandas statement of the rule
    assert (tutorial_frame == 0).to_numpy().sum() > 0, "the tutorial's data has zeros to fill"
    pd.testing.assert_frame_equal(fill_zeros(f), want.astype("float64"))


def test_non_positive_target_is_rejected(btc):
    f = btc.iloc[:80].copy()
    f.iloc[10, f.columns.get_loc("close")] = -1.0
    with pytest.raises(DataError, match="non-positive"):
        Normaliser.fit(f, "close")


def test_chronological_split_keeps_validation_last():
    tr, va = split_train_val(100, 0.1, "chronological", np.random.default_rng(0))
    assert tr.max() < va.min() and len(va) == 10


def test_random_split_is_the_tutorials_shuffle():
    tr, va = split_train_val(2400, 0.1, "random", np.random.default_rng(0))
    assert len(tr) == 2160 and len(va) == 240 and len(set(tr) | set(va)) == 2400
    assert tr.max() > va.min()  # validation is scattered through time: leaky, as the original
