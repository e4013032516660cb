"""Joining daily series onto candles: the bundled Fear & Greed index and real news sentiment."""

from pathlib import Path

import pandas as pd
import pytest

from coincast.data import load
from coincast.data.exogenous import (
    exogenous_datasets,
    join_exogenous,
    join_series,
    read_series,
)
from coincast.errors import DataError

# Daily mean and count of the model sentiment scores of ../shared/data/sentiment/bitcoin_news_2021_2024.csv
# (aggregated once, so the tests do not depend on the shared folder being beside the clone).
NEWS_DAILY = Path(__file__).parent / "data" / "news_daily_2021_2024.csv"


def utc(text):
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture(scope="module")
def btc():
    return load("btc-usd")


def test_fear_greed_value_dated_d_is_first_used_by_candle_d(btc):
    joined = join_exogenous(btc, "fear-greed")
    fng = load("fear-greed")["value"]
    assert fng[utc("2020-03-12")] == 14 and fng[utc("2020-03-13")] == 10  # the COVID crash
    # Daily candle 03-12 closes at 00:00 on 03-13, exactly when 03-13's value appears: not after it.
    assert joined.loc[utc("2020-03-12"), "fear_greed"] == 14
    assert joined.loc[utc("2020-03-13"), "fear_greed"] == 10
    # Rows before the index starts (2018-02-01) are dropped, none filled; the rest all kept.
    assert joined.index[0] == utc("2018-02-01") and joined.index[-1] == btc.index[-1]
    assert joined.attrs["exogenous_dropped"] == (btc.index < utc("2018-02-01")).sum()
    pd.testing.assert_frame_equal(joined[btc.columns], btc.loc["2018-02-01":])
    # 2018-04-14..16 are missing from the index: the 04-13 value carries forward.
    assert (joined.loc["2018-04-13":"2018-04-16", "fear_greed"] == fng[utc("2018-04-13")]).all()
    assert exogenous_datasets() == ["fear-greed"]


def test_hourly_candles_use_the_value_from_the_first_hour_of_its_day():
    hourly = load("btc-usd-1h").loc["2020-03-12":"2020-03-14"]
    joined = join_exogenous(hourly, "fear-greed")
    assert joined.loc[utc("2020-03-12 23:00"), "fear_greed"] == 14  # closes 00:00 on 03-13: too early
    assert joined.loc[utc("2020-03-13 00:00"), "fear_greed"] == 10  # closes 01:00 on 03-13
    assert len(joined) == len(hourly)


def test_a_file_series_is_used_only_after_its_day_is_over(tmp_path, btc):
    series = pd.read_csv(NEWS_DAILY)
    series = series[series["date"] < "2023-12-20"]
    series.to_csv(tmp_path / "news.csv", index=False)
    joined = join_exogenous(btc, str(tmp_path / "news.csv"), max_age_days=10)
    value = series.set_index("date")
    # Candle 2022-11-09 (FTX collapse) sees the mean of 11-08's news, not its own day's.
    assert joined.loc[utc("2022-11-09"), "news_mean"] == pytest.approx(value.loc["2022-11-08", "mean"])
    assert joined.loc[utc("2022-11-09"), "news_count"] == value.loc["2022-11-08", "count"]
    assert joined.index[0] == utc(series["date"].iloc[0]) + pd.Timedelta(days=1)
    # Every candle whose previous day has news uses exactly that day's mean: never its own day's.
    means = read_series(tmp_path / "news.csv")["mean"]
    prev = joined.index - pd.Timedelta(days=1)
    has = prev.isin(means.index)
    assert has.sum() > 700
    assert (joined.loc[has, "news_mean"].to_numpy() == means.reindex(prev[has]).to_numpy()).all()


def test_a_stale_stretch_in_the_middle_is_an_error(btc):
    series = pd.read_csv(NEWS_DAILY, index_col="date")[["mean"]]
    series.index = pd.to_datetime(series.index).tz_localize("UTC")
    with pytest.raises(DataError, match=r"no value newer than 7 days for \d+ candles in 4 stretch\(es\), the first from 2021-12-08 00:00 to 2021-12-09"):
        join_series(btc, series, "news")


def test_no_date_column_and_future_dates_are_refused(tmp_path, btc):
    (tmp_path / "nodate.csv").write_text("score,count\n0.1,3\n0.2,4\n")
    with pytest.raises(DataError, match="nodate.csv has no date column"):
        join_exogenous(btc, str(tmp_path / "nodate.csv"))
    future = pd.Timestamp.now(tz="UTC").normalize() + pd.Timedelta(days=3)
    (tmp_path / "future.csv").write_text(f"date,score\n2024-01-01,0.1\n{future.date()},0.3\n")
    with pytest.raises(DataError, match="dates in the future"):
        join_exogenous(btc, str(tmp_path / "future.csv"))
    (tmp_path / "old.csv").write_text("date,score\n2001-01-01,0.1\n2001-01-02,0.3\n")
    with pytest.raises(DataError, match="does not overlap the data"):
        join_exogenous(btc, str(tmp_path / "old.csv"))
    with pytest.raises(DataError, match="already exist"):
        join_exogenous(join_exogenous(btc, "fear-greed"), "fear-greed")


def test_exogenous_columns_pass_through_the_feature_spec(btc):
    from coincast.prep.features import add_features

    feats = add_features(join_exogenous(btc, "fear-greed"), "close,rsi14,macd,fear_greed")
    assert list(feats.columns) == ["close", "rsi14", "macd", "macd_signal", "macd_hist", "fear_greed"]
    assert feats.index[0] == utc("2018-02-01") + pd.Timedelta(days=33)  # MACD warms up after the join
    # Indicators first, then the join: the warm-up is spent on candles the index does not cover.
    early = join_exogenous(add_features(btc, "close,rsi14,macd"), "fear-greed")
    assert early.index[0] == utc("2018-02-01") and not early.isna().any().any()
    # RSI/MACD are recursive: they depend on where the data starts, and forget it within months.
    assert (early.loc[feats.index[0]:, "rsi14"] - feats["rsi14"]).abs().iloc[0] > 0.5
    pd.testing.assert_frame_equal(early.loc["2019-01-01":], feats.loc["2019-01-01":], atol=1e-6)
    assert feats.attrs["normalisation"]["fear_greed"] == "standard"
