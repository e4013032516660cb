"""One statement each of the bar length, "up" and the model-vs-persistence test: every user of
them agrees, on real data, including the cases where a second, slightly different statement
would not (outages in the hourly data, flat days, a table of one year)."""

import numpy as np
import pandas as pd
import pytest

from coincast.backtest.trading import periods_per_year
from coincast.data import load
from coincast.data.exogenous import join_series
from coincast.data.frame import bar_length
from coincast.evaluation import stats
from coincast.evaluation.metrics import ALWAYS_UP, dm_vs_persistence, score, up
from coincast.prep.features import ALL_FEATURES, INDICATORS, add_features


def test_bar_length_of_hourly_data_with_outages():
    hourly = load("btc-usd-1h")
    steps = pd.Series(hourly.index).diff().dropna()
    assert (steps > pd.Timedelta(hours=1)).any()  # the file holds real outages
    assert bar_length(hourly.index) == pd.Timedelta(hours=1)
    assert periods_per_year(hourly.index) == 365 * 24
    assert periods_per_year(load("btc-usd").index) == 365
    # no dates, or one row: no bar length, and the trading year falls back to 365 steps
    assert bar_length(pd.RangeIndex(10)) is None and bar_length(hourly.index[:1]) is None
    assert periods_per_year(pd.RangeIndex(10)) == 365


def test_exogenous_join_uses_the_same_bar_length():
    """The join's "first candle that closes after publication" needs the candle length: by
    default it is the bar length, 1 hour on hourly candles despite their outages."""
    hourly = load("btc-usd-1h").iloc[-500:]
    fg = load("fear-greed")
    default = join_series(hourly, fg, "fg", known="start")
    assert default.equals(join_series(hourly, fg, "fg", known="start", candle=pd.Timedelta(hours=1)))
    assert not default.equals(join_series(hourly, fg, "fg", known="start", candle=pd.Timedelta(days=1)))


@pytest.fixture
def table():
    """A real stretch of BTC with forecasts that are sometimes flat: "tomorrow = today" exactly."""
    close = load("btc-usd")["close"].loc["2024-01-01":"2024-12-31"].to_numpy()
    rng = np.random.default_rng(0)
    model = close[:-1] * (1 + rng.normal(0, 0.01, len(close) - 1))
    model[::5] = close[:-1][::5]  # every fifth forecast is flat: not "up"
    index = load("btc-usd").loc["2024-01-02":"2024-12-31"].index
    return pd.DataFrame({"actual": close[1:], "previous": close[:-1], "base": close[:-1], "model": model,
                         "persistence": close[:-1]}, index=index)


def test_up_is_strictly_above_the_previous_close(table):
    assert up(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])).tolist() == [False, False, True]
    flat = table["model"].to_numpy() == table["previous"].to_numpy()
    assert flat.sum() == 73 and not up(table["model"], table["previous"])[flat].any()


def test_every_direction_figure_agrees(table):
    m = score(table, ["model", "persistence"])
    b = stats.binomial_tests(table)
    ci = stats.headline_cis(table, n_boot=50)
    year = stats.per_year(table, ["model", "persistence"])
    assert m["model"]["accuracy"] == pytest.approx(b["accuracy"], rel=1e-12)
    assert ci["direction_accuracy"]["estimate"] == pytest.approx(b["accuracy"], rel=1e-12)
    assert year.loc[2024, "accuracy"] == pytest.approx(b["accuracy"], rel=1e-12)
    # "always up" is right exactly on the days the price went up
    assert m[ALWAYS_UP]["accuracy"] == pytest.approx(b["always_up_rate"], rel=1e-12) == year.loc[2024, "up_rate"]


def test_every_dm_figure_is_the_same_test(table):
    stat, p = dm_vs_persistence(table)
    m = score(table, ["model", "persistence"])["model"]
    assert (m["dm_stat_vs_persistence"], m["dm_p_vs_persistence"]) == (stat, p)
    assert stats.dm_record(table)["p_one_sided"] == p
    assert stats.per_year(table, ["model", "persistence"]).loc[2024, "dm_p"] == p


def test_the_audit_default_is_every_indicator():
    names = ALL_FEATURES.split(",")
    assert names == ["close", "volume", *INDICATORS]
    frame = add_features(load("btc-usd").iloc[-400:], ALL_FEATURES)
    assert len(frame.columns) == 17  # macd, bb and gk give 3, 2 and 3 columns
