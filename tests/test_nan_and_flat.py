"""No silent NaN: a NaN given to the API is an error, bootstrap resamples left out are counted,
and a flat stretch (a stablecoin, zero-filled candles) does not blow RevIN's scaling up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coincast import Forecaster, load
from coincast.errors import DataError
from coincast.evaluation import stats
from coincast.prep.inputs import build_inputs
from coincast.prep.windows import Normaliser, make_windows
from tests.conftest import tiny


@pytest.fixture(scope="module")
def btc():
    return load("btc-usd").iloc[:700]


def test_a_nan_given_to_the_api_is_an_error_naming_column_and_date(btc):
    holed = btc.copy()
    holed.loc["2018-05-02", "close"] = np.nan
    message = r"data: column 'close' has a missing value \(NaN\) at 2018-05-02 00:00:00\+00:00; fill or drop it"
    with pytest.raises(DataError, match=message):
        Forecaster(tiny(window=20)).fit(holed)
    with pytest.raises(DataError, match=message):
        build_inputs(holed, "close", ["close", "rsi14"])
    model = Forecaster(tiny(window=20)).fit(btc.iloc[:300])
    with pytest.raises(DataError, match=message):
        model.predict(holed, start=holed.index[400])
    with pytest.raises(DataError, match="column 'volume' has an infinite value at 2018-05-03"):
        model.forecast_next(btc.assign(volume=btc["volume"].where(btc.index != "2018-05-03", np.inf)))


def test_zeros_are_still_filled_from_the_previous_value(btc):
    zeroed = btc.copy()
    zeroed.loc["2018-05-02", "volume"] = 0.0
    frame = build_inputs(zeroed, "close", None).frame
    assert frame.loc["2018-05-02", "volume"].item() == btc.loc["2018-05-01", "volume"].item()


def test_bootstrap_counts_the_resamples_it_leaves_out():
    rng = np.random.default_rng(0)
    x = np.zeros(60)
    x[30] = 1.0  # a single 1: about a third of the resamples miss it

    def ratio(v):  # undefined (0/0) on a resample without a 1
        return v.mean(axis=1) / v.max(axis=1)

    res = stats.block_bootstrap((x,), ratio, n_boot=500, block=4, seed=1)
    idx = stats.block_indices(60, 4, 500, np.random.default_rng(1))
    expected = int((x[idx].max(axis=1) == 0).sum())
    assert expected > 0 and res["dropped"] == expected
    assert stats.block_bootstrap((rng.normal(size=60),), lambda v: v.mean(axis=1), n_boot=200)["dropped"] == 0
    # a strategy that never trades has no Sharpe ratio: every resample is dropped, and said so
    prev = 100 + rng.normal(size=60).cumsum()
    table = pd.DataFrame({"actual": prev + rng.normal(size=60), "previous": prev, "model": prev + 1, "persistence": prev})
    cis = stats.headline_cis(table, returns={"model": np.zeros(60), "buy_and_hold": rng.normal(0, 0.01, 60)}, n_boot=100)
    assert cis["sharpe_minus_buy_and_hold"]["dropped"] == 100 and cis["sharpe_minus_buy_and_hold"]["lo"] is None
    assert cis["rmse_ratio"]["dropped"] == 0


def with_flat_stretch(btc: pd.DataFrame, jitter: float = 0.0, at: int = 400, days: int = 60) -> pd.DataFrame:
    """Real candles with `days` flat ones (every price the last close, real volumes) inserted at row `at`."""
    level = btc["close"].iloc[at - 1] * (1 + jitter * np.random.default_rng(0).standard_normal(days))
    flat = pd.DataFrame({c: level for c in ("open", "high", "low", "close")})
    flat["volume"] = btc["volume"].iloc[at : at + days].to_numpy()
    f = pd.concat([btc.iloc[:at].reset_index(drop=True), flat[list(btc.columns)], btc.iloc[at:].reset_index(drop=True)],
                  ignore_index=True)
    f.index = pd.date_range(btc.index[0], periods=len(f), freq="D", name="date")
    return f


@pytest.mark.parametrize("target", ["change", "window"])
def test_flat_stretch_keeps_revin_targets_bounded(btc, target):
    f = with_flat_stretch(btc)
    w = make_windows(f, "close", 20, Normaliser.fit(f, "close"), target, "revin")
    jump = abs(btc["close"].iloc[400] / btc["close"].iloc[399] - 1)  # the move out of the stretch
    assert 0.01 < jump < 0.05
    # at worst the move out of the flat stretch in basis points (1e-8 gave it in units of 1e-8: ~1e6)
    assert np.isfinite(w.y).all() and np.abs(w.y).max() <= jump / 1e-4 * 1.01
    assert np.abs(w.y[: 380]).max() < 50  # real windows before the stretch are untouched by the floor


def test_flat_stretch_does_not_amplify_sub_basis_point_jitter(btc):
    f = with_flat_stretch(btc, jitter=1e-7)
    w = make_windows(f, "close", 20, Normaliser.fit(f, "close"), "change", "revin")
    inside = (w.index > f.index[400 + 19]) & (w.index < f.index[459])  # windows wholly in the stretch
    close = list(f.columns).index("close")
    assert inside.sum() == 39 and np.abs(w.X[inside, :, close]).max() < 0.01  # noise stays noise, not unit moves
    assert np.abs(w.y[inside]).max() < 0.01


def test_fit_and_predict_through_a_flat_stretch(btc):
    f = with_flat_stretch(btc)
    model = Forecaster(tiny(window=20)).fit(f.iloc[:560])
    assert all(np.isfinite(h.loss).all() and max(h.loss) < 1e4 for h in model.histories_)
    p = model.predict(f, start=f.index[440])  # test windows run into, through and out of the stretch
    assert np.isfinite(p["predicted"]).all()
    assert (np.abs(p["predicted"] / p["previous"] - 1) < 0.5).all()
