"""VADER daily sentiment on real slices of the shared tweets (COVID crash) and news (FTX collapse).

tests/data holds rows copied from ../shared/data/sentiment: every tweet of 2020-03-10..14
(the source has none on 03-12) and every news item of 2022-11-06..12.
"""

from pathlib import Path

import pandas as pd
import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from coincast.data import load
from coincast.data.exogenous import join_exogenous
from coincast.data.sentiment import build_sentiment, daily_sentiment, read_texts
from coincast.errors import DataError
from tests.conftest import assert_user_error

DATA = Path(__file__).parent / "data"
TWEETS = DATA / "btc_tweets_2020-03-10_14.csv"
NEWS = DATA / "bitcoin_news_2022-11-06_12.csv"


def day(text):
    return pd.Timestamp(text, tz="UTC")


def test_daily_series_from_tweets_matches_vader_by_hand():
    series = daily_sentiment(read_texts(TWEETS))
    assert list(series.columns) == ["compound_mean", "positive_share", "negative_share", "count"]
    # 40 tweets a day; 03-12 has no tweets in the source, so it has no row (no made-up zero).
    assert series.index.tolist() == [day(d) for d in ["2020-03-10", "2020-03-11", "2020-03-13", "2020-03-14"]]
    assert (series["count"] == 40).all()
    raw = pd.read_csv(TWEETS, dtype=str)
    texts = raw.loc[raw["timestamp_utc"].str.startswith("2020-03-13"), "text"]
    scores = pd.Series([SentimentIntensityAnalyzer().polarity_scores(t)["compound"] for t in texts])
    row = series.loc[day("2020-03-13")]
    assert row["compound_mean"] == pytest.approx(scores.mean())
    assert row["positive_share"] == pytest.approx((scores >= 0.05).mean())
    assert row["negative_share"] == pytest.approx((scores <= -0.05).mean())
    # The day after the crash is the only net-negative day of the five.
    assert series["compound_mean"].idxmin() == day("2020-03-13") and row["compound_mean"] < 0


def test_news_turn_negative_in_the_ftx_collapse():
    series = daily_sentiment(read_texts(NEWS))
    assert series["count"].sum() == 81
    before = series.loc[:"2022-11-08", "compound_mean"].mean()
    during = series.loc["2022-11-09":, "compound_mean"].mean()
    assert before > 0 > during
    assert series.loc[day("2022-11-09"), "negative_share"] > 0.5


def test_built_series_joins_onto_candles_as_known_at_end_of_day(tmp_path):
    out = tmp_path / "out" / "tweets.csv"
    built = build_sentiment(TWEETS, out)
    assert out.read_text().splitlines()[0] == "date,compound_mean,positive_share,negative_share,count"
    assert not (tmp_path / "out" / "tweets.csv.tmp").exists()
    btc = load("btc-usd").loc["2020-03-01":"2020-03-20"]
    joined = join_exogenous(btc, str(out), max_age_days=3)
    # Candle 03-14 sees 03-13's tweets (the crash-day gloom); 03-13's candle sees 03-11's (03-12 has none).
    assert joined.loc[day("2020-03-14"), "tweets_compound_mean"] == pytest.approx(built.loc[day("2020-03-13"), "compound_mean"])
    assert joined.loc[day("2020-03-13"), "tweets_compound_mean"] == pytest.approx(built.loc[day("2020-03-11"), "compound_mean"])
    assert joined.index[0] == day("2020-03-11") and joined.index[-1] == day("2020-03-17")


def test_missing_text_or_date_column_is_a_one_line_error(tmp_path):
    (tmp_path / "notext.csv").write_text("date,likes\n2020-01-01,3\n")
    with pytest.raises(DataError, match="notext.csv has no text column.*rename one of its columns \\(date, likes\\)"):
        read_texts(tmp_path / "notext.csv")
    (tmp_path / "nodate.csv").write_text("text\nbitcoin to the moon\n")
    with pytest.raises(DataError, match="has no date column"):
        read_texts(tmp_path / "nodate.csv")
    with pytest.raises(DataError, match="has no column 'body'"):
        read_texts(TWEETS, text_column="body")
    with pytest.raises(DataError, match="texts file not found"):
        read_texts(tmp_path / "missing.csv")


def test_sentiment_build_command(cli, tmp_path):
    done = cli("sentiment", "build", str(NEWS), "--out", str(tmp_path / "news.csv"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "7 days (2022-11-06 to 2022-11-12), 81 texts" in done.stdout
    written = pd.read_csv(tmp_path / "news.csv", index_col="date", parse_dates=True)
    pd.testing.assert_frame_equal(written, daily_sentiment(read_texts(NEWS)).tz_localize(None), check_freq=False,
                                  check_dtype=False, check_index_type=False, check_names=False)
    bad = cli("sentiment", "build", str(NEWS), "--out", str(tmp_path / "x.csv"), "--text-column", "body", cwd=tmp_path)
    assert_user_error(bad, "no column 'body'")
    assert not (tmp_path / "x.csv").exists()
