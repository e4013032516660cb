"""Model inputs from raw candles: columns, indicators, exogenous series, on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coincast import load
from coincast.data.frame import select_columns
from coincast.errors import ConfigError, DataError
from coincast.prep.features import add_features
from coincast.prep.inputs import build_inputs, uses_extras
from coincast.prep.windows import fill_zeros


def test_columns_only_is_the_plain_selection(tutorial_frame):
    got = build_inputs(tutorial_frame, "Bitcoin Price", ["20", "3"])
    want, target = select_columns(tutorial_frame, "Bitcoin Price", ["20", "3"])
    pd.testing.assert_frame_equal(got.frame, fill_zeros(want))
    assert got.target == target and got.plain == list(want.columns) and not got.indicators and not got.declared
    assert not uses_extras(["0", "CLOSE"], None, ["close"]) and uses_extras(["close", "rsi14"], None, ["close"])
    assert uses_extras(None, ["fear-greed"], ["close"])


def test_indicators_and_fear_greed_on_btc(btc):
    got = build_inputs(btc, "close", ["close", "volume", "rsi14", "macd"], ["fear-greed"])
    f = got.frame
    assert list(f.columns) == ["close", "volume", "rsi14", "macd", "macd_signal", "macd_hist", "fear_greed"]
    assert got.plain == ["close", "volume"] and got.exogenous == ["fear_greed"]
    assert got.declared == {"rsi14": "standard", "macd": "standard", "macd_signal": "standard",
                            "macd_hist": "standard", "fear_greed": "standard"}
    assert not f.isna().any().any()
    # Fear & Greed starts 2018-02-01 (known at the start of its day): the first usable candle
    assert f.index[0] == pd.Timestamp("2018-02-01", tz="UTC") and f.index[-1] == btc.index[-1]
    assert got.dropped == {"in all": 168, "indicator warm-up": 33, "outside the exogenous dates": 168}
    # indicators come from the full history, not from the rows left after the join
    full = add_features(btc, ["rsi14", "macd"])
    np.testing.assert_array_equal(f["rsi14"], full["rsi14"].loc[f.index])
    fg = load("fear-greed")["value"]
    assert f["fear_greed"].iloc[0] == fg.loc["2018-02-01"]


def test_target_is_added_and_comes_first(btc):
    got = build_inputs(btc, None, ["rsi14", "logret1"])
    assert list(got.frame.columns) == ["close", "rsi14", "logret1"] and got.target == "close"
    assert got.declared["logret1"] == "none"


def test_inputs_of_a_prefix_are_a_prefix_of_the_inputs(btc):
    """Causal and computed from the same first row: training on the first rows sees exactly
    the values the full-history inputs hold there (what lets fit and predict agree)."""
    spec = (["close", "rsi14", "macd", "bb20", "atr14", "obv"], ["fear-greed"])
    full = build_inputs(btc, "close", *spec).frame
    part = build_inputs(btc.iloc[:1500], "close", *spec).frame
    pd.testing.assert_frame_equal(part, full.loc[: part.index[-1]], check_freq=False)


def test_exogenous_columns_may_be_named_in_features(btc):
    got = build_inputs(btc, "close", ["fear_greed", "rsi14"], ["fear-greed"])
    assert list(got.frame.columns) == ["close", "rsi14", "fear_greed"]


def test_unknown_indicator_says_what_exists(btc):
    with pytest.raises(ConfigError, match=r"unknown feature 'rsx14'.*rsi14"):
        build_inputs(btc, "close", ["close", "rsx14"])


def test_exogenous_file_problems(tmp_path, btc):
    nodate = tmp_path / "nodate.csv"
    nodate.write_text("value\n1\n2\n3\n")
    with pytest.raises(DataError, match="no date column"):
        build_inputs(btc, "close", ["close"], [str(nodate)])
    future = tmp_path / "future.csv"
    future.write_text("date,value\n2020-01-01,1\n2999-01-01,2\n")
    with pytest.raises(DataError, match="dates in the future"):
        build_inputs(btc, "close", ["close"], [str(future)])
    with pytest.raises(DataError, match="file not found"):
        build_inputs(btc, "close", ["close"], [str(tmp_path / "missing.csv")])


def test_exogenous_series_on_hourly_candles():
    hourly = load("btc-usd-1h").iloc[:6000]
    got = build_inputs(hourly, "close", ["close", "rsi14"], ["fear-greed"])
    # the hourly candle opening 00:00 on 2018-02-01 closes after that day's value is published
    assert got.frame.index[0] == pd.Timestamp("2018-02-01 00:00", tz="UTC")
    assert np.all(np.diff(got.frame["fear_greed"].loc["2018-02-01"].to_numpy()) == 0)


def test_exogenous_values_carry_forward_at_most_max_age_days(tmp_path, btc):
    fg = load("fear-greed")
    holed = fg.drop(fg.loc["2020-03-01":"2020-03-10"].index)  # a 10-day hole in the series
    path = tmp_path / "holed.csv"
    holed.to_csv(path)
    with pytest.raises(DataError, match="no value newer than 7 days"):
        build_inputs(btc, "close", ["close"], [str(path)])
    got = build_inputs(btc, "close", ["close"], [str(path)], max_age_days=12)
    assert got.frame.loc["2020-03-11", "holed"] == fg.loc["2020-02-29", "value"]  # the last value published before
