"""Realized measures (prep/realized.py) on real Binance hourly candles against hand computations:
a full day, a day with one missing hour (scaled to 24), an outage day (too few hours: NaN), and a
day that uses only its own hours."""

import math

import numpy as np
import pandas as pd
import pytest

from coincast import load
from coincast.errors import DataError
from coincast.prep import realized


@pytest.fixture(scope="module")
def hourly():
    frame = load("btc-usd-1h")  # the bundled Binance hourly candles
    return frame.loc["2018-02-07":"2018-02-10"], frame.loc["2023-03-23":"2023-03-25"], frame.loc["2024-01-09":"2024-01-11"]


def by_hand(day: pd.DataFrame) -> dict:
    """The measures of one day's candles with plain loops (percent returns of each candle)."""
    rows = list(day.itertuples())
    r = [100 * math.log(row.close / row.open) for row in rows]
    n = len(r)
    pairs = [abs(r[i]) * abs(r[i - 1]) for i in range(1, n)
             if rows[i].Index - rows[i - 1].Index == pd.Timedelta(hours=1)]
    scale = 24 / n
    return {"rv": scale * sum(x * x for x in r), "bv": (math.pi / 2) * 24 * sum(pairs) / len(pairs),
            "rs_pos": scale * sum(x * x for x in r if x > 0), "rs_neg": scale * sum(x * x for x in r if x < 0),
            "rq": 24 / 3 * scale * sum(x**4 for x in r), "hours": n}


def check(measures: pd.DataFrame, day: str, candles: pd.DataFrame, hours: int) -> None:
    want = by_hand(candles.loc[day])
    got = measures.loc[pd.Timestamp(day, tz="UTC")]
    assert want["hours"] == got["hours"] == hours
    for k in realized.MEASURES:
        assert got[k] == pytest.approx(want[k], rel=1e-12), k
    assert got["rs_pos"] + got["rs_neg"] == pytest.approx(got["rv"], rel=1e-12)


def test_a_full_day_by_hand(hourly):
    candles = hourly[2]
    m = realized.daily_measures(candles)
    check(m, "2024-01-10", candles, 24)
    # a full day is the plain sum: RV is the sum of the 24 squared returns, no scaling
    r = 100 * np.log(candles.loc["2024-01-10", "close"] / candles.loc["2024-01-10", "open"])
    assert m.loc[pd.Timestamp("2024-01-10", tz="UTC"), "rv"] == pytest.approx(float((r**2).sum()), rel=1e-12)


def test_a_day_with_a_missing_hour_is_scaled_to_24(hourly):
    candles = hourly[1]
    assert len(candles.loc["2023-03-24"]) == 23  # 13:00 is missing (the README's outage table)
    m = realized.daily_measures(candles)
    check(m, "2023-03-24", candles, 23)


def test_an_outage_day_has_no_measures(hourly):
    candles = hourly[0]
    m = realized.daily_measures(candles)
    day = m.loc[pd.Timestamp("2018-02-08", tz="UTC")]
    assert day["hours"] == 1 and day[list(realized.MEASURES)].isna().all()
    assert m.loc[pd.Timestamp("2018-02-09", tz="UTC"), "hours"] == 14  # 10:00..23:00: under 18, NaN too
    assert np.isnan(m.loc[pd.Timestamp("2018-02-09", tz="UTC"), "rv"])
    check(m, "2018-02-07", candles, 24)


def test_a_day_uses_only_its_own_hours(hourly):
    candles = hourly[2]
    moved = candles.copy()
    moved.loc["2024-01-09":"2024-01-09 23:00", ["open", "close"]] *= 1.5  # the day before
    moved.loc["2024-01-11", ["open", "close"]] *= 0.5  # the day after
    a, b = realized.daily_measures(candles), realized.daily_measures(moved)
    pd.testing.assert_series_equal(a.loc[pd.Timestamp("2024-01-10", tz="UTC")], b.loc[pd.Timestamp("2024-01-10", tz="UTC")])
    days = pd.DatetimeIndex(["2024-01-10", "2024-01-12"], tz="UTC")
    aligned = realized.on_days(a, days)
    assert aligned["hours"].tolist() == [24, 0] and np.isnan(aligned["rv"].iloc[1])


def test_bad_hourly_candles_are_explained(hourly):
    candles = hourly[2]
    with pytest.raises(DataError, match="missing close"):
        realized.daily_measures(candles.drop(columns="close"))
    with pytest.raises(DataError, match="UTC open times"):
        realized.daily_measures(candles.tz_localize(None))
    with pytest.raises(DataError, match="positive"):
        realized.daily_measures(candles.assign(open=0.0))
    with pytest.raises(DataError, match="on the hour"):
        realized.daily_measures(candles.set_axis(candles.index + pd.Timedelta(minutes=30)))
