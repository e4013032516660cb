"""TA-Lib indicators on the bundled daily BTC candles: values, warm-up, causality, errors."""

import numpy as np
import pandas as pd
import pytest

from coincast.data import load
from coincast.errors import ConfigError, DataError
from coincast.prep.features import (
    FEATURE_NORMALISATION,
    add_features,
    normalisation,
    parse_spec,
)

ALL = "close,volume,rsi14,macd,bb20,atr14,obv,ema20,sma50,logret1,vol20,gk"
COLUMNS = ["close", "volume", "rsi14", "macd", "macd_signal", "macd_hist", "bb20_pctb", "bb20_width",
           "atr14", "obv", "ema20", "sma50", "logret1", "vol20", "gk1", "gk7", "gk30"]


@pytest.fixture(scope="module")
def btc():
    return load("btc-usd")


def test_every_indicator_with_warm_up_dropped(btc):
    feats = add_features(btc, ALL)
    assert list(feats.columns) == COLUMNS
    assert not feats.isna().any().any()
    assert feats.index[0] == btc.index[49]  # sma50 is the last to warm up: 49 rows dropped, none zero-filled
    assert (feats.index == btc.index[49:]).all()
    assert feats["rsi14"].between(0, 100).all()
    np.testing.assert_allclose(feats["logret1"], np.log(btc["close"] / btc["close"].shift(1)).iloc[49:])
    np.testing.assert_allclose(feats["macd_hist"], feats["macd"] - feats["macd_signal"], atol=1e-12)
    assert feats["bb20_width"].gt(0).all() and feats["atr14"].gt(0).all()
    # gk: the square root of the mean Garman-Klass variance over the last 1, 7 and 30 candles
    o, h, lo, c = (np.log(btc[k]) for k in ("open", "high", "low", "close"))
    gk = 0.5 * (h - lo) ** 2 - (2 * np.log(2) - 1) * (c - o) ** 2
    for n in (1, 7, 30):
        np.testing.assert_allclose(feats[f"gk{n}"], np.sqrt(gk.rolling(n).mean()).iloc[49:], rtol=1e-12)


def test_indicators_read_the_covid_crash(btc):
    feats = add_features(btc, ALL)
    crash = feats.loc[pd.Timestamp("2020-03-12", tz="UTC")]
    calm = feats.loc["2019-01-01":"2019-12-31"]
    assert crash["rsi14"] < 30  # oversold on the day BTC lost ~40 %
    assert crash["logret1"] < -0.3
    assert crash["bb20_pctb"] < 0  # closed below the lower Bollinger band
    assert feats.loc[pd.Timestamp("2020-03-13", tz="UTC"), "vol20"] > 2 * calm["vol20"].median()
    assert crash["ema20"] < 0.8
    assert crash["gk1"] > 4 * calm["gk1"].median() and crash["gk7"] > crash["gk30"]  # the day's range, then the week's


@pytest.mark.parametrize("token", ["rsi14", "macd", "bb20", "atr14", "obv", "ema20", "sma50", "logret1", "vol20", "gk", "rsi3", "macd5_10_4", "gk2_5_10"])
def test_every_indicator_is_causal(btc, token):
    """Change every candle after a cut: every value before the cut stays bit-for-bit the same."""
    cut = 1500
    rng = np.random.default_rng(0)
    future = btc.copy()
    scale = rng.uniform(0.5, 2.0, size=len(btc) - cut)
    for col in ["open", "high", "low", "close"]:
        future.iloc[cut:, future.columns.get_loc(col)] *= scale
    future.iloc[cut:, future.columns.get_loc("volume")] *= rng.uniform(0.1, 10, size=len(btc) - cut)
    before, after = add_features(btc, token), add_features(future, token)
    end = btc.index[cut - 1]
    pd.testing.assert_frame_equal(before.loc[:end], after.loc[:end], check_exact=True)
    assert not before.loc[btc.index[cut]:].equals(after.loc[btc.index[cut]:])


def test_normalisation_is_declared_for_every_column(btc):
    feats = add_features(btc, ALL + ",rsi7,logret5")
    assert feats.attrs["normalisation"]["close"] == "ratio"
    assert feats.attrs["normalisation"]["logret5"] == "none"
    assert feats.attrs["normalisation"]["rsi7"] == "standard"
    assert set(FEATURE_NORMALISATION[c] for c in COLUMNS) <= {"ratio", "standard", "none"}
    assert {c: normalisation(c) for c in COLUMNS} == {c: FEATURE_NORMALISATION[c] for c in COLUMNS}


def test_spec_parsing_and_errors(btc):
    assert parse_spec(" close, RSI14 ,close,") == ["close", "rsi14"]
    with pytest.raises(ConfigError, match="unknown feature 'rsx14'.*indicator: rsi14, macd12_26_9"):
        add_features(btc, "close,rsx14")
    with pytest.raises(ConfigError, match="feature 'macd12' takes 3 positive period"):
        add_features(btc, "macd12")
    with pytest.raises(ConfigError, match="empty"):
        add_features(btc, " , ")
    with pytest.raises(DataError, match="needs column.*volume"):
        add_features(btc[["close"]], "obv")
    with pytest.raises(DataError, match="feature 'sma50' looks back 50 rows but the data has 30"):
        add_features(btc.iloc[:30], "sma50")
