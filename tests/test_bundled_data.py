"""Bundled candles end on the last candle that had closed when their source was taken.

`coincast fetch` never stores the still-open candle; the bundled files keep the same rule.
Each candle dataset records its bar length and its source's snapshot time (the data notes in
coincast/data/datasets.py say how that time was established). The hourly series are byte copies
of ../shared/data/hourly/, and each hour of a complete day aggregates to the bundled daily candle.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coincast.data import load
from coincast.data.datasets import BINANCE_DAILY_SNAPSHOT, BINANCE_HOURLY_SNAPSHOT, COINS, DATASETS, bundled_path

DAILY = [f"{c}-usd" for c in COINS]
HOURLY = [f"{c}-usd-1h" for c in COINS]
CANDLES = DAILY + HOURLY
# ../shared/data/hourly beside the clone (the repository's parent folder holds `shared/`, in CI too)
SHARED_HOURLY = Path(__file__).resolve().parents[2] / "shared" / "data" / "hourly"
# rows of each hourly file and its first hour (../shared/data/hourly/README.md's table)
HOURLY_ROWS = {"btc": (73403, "2017-08-17 04:00"), "eth": (73404, "2017-08-17 04:00"), "ltc": (70579, "2017-12-13 03:00"),
               "xrp": (67200, "2018-05-04 08:00"), "ada": (67612, "2018-04-17 04:00"), "bnb": (71467, "2017-11-06 03:00")}


def test_every_candle_dataset_records_its_bar_and_snapshot():
    assert [d.name for d in DATASETS.values() if d.snapshot is not None] == CANDLES
    assert {DATASETS[n].snapshot for n in DAILY} == {BINANCE_DAILY_SNAPSHOT}
    assert {DATASETS[n].snapshot for n in HOURLY} == {BINANCE_HOURLY_SNAPSHOT}
    assert {DATASETS[n].bar for n in HOURLY} == {"1h"}


@pytest.mark.parametrize("name", CANDLES)
def test_last_candle_is_the_last_complete_one_at_the_snapshot(name):
    d = DATASETS[name]
    frame = load(name)
    bar = pd.Timedelta(d.bar)
    assert frame.index.to_series().diff().median() == bar  # the recorded bar is the data's
    last = frame.index[-1]
    assert last + bar <= d.snapshot, f"{name}: its last candle, {last}, was still open at {d.snapshot}"
    assert last + 2 * bar > d.snapshot, f"{name}: the candle after {last} had closed by {d.snapshot}"
    assert last == d.snapshot.floor(bar) - bar


def test_the_pinned_last_candles():
    # 2026-01-06 (daily) was the candle still open at the snapshot; the hourly files end at the cut
    for name in DAILY:
        assert load(name).index[-1] == pd.Timestamp("2026-01-05", tz="UTC"), name
    for coin, (rows, first) in HOURLY_ROWS.items():
        hourly = load(f"{coin}-usd-1h")
        assert len(hourly) == rows and hourly.index[0] == pd.Timestamp(first, tz="UTC"), coin
        assert hourly.index[-1] == pd.Timestamp("2026-01-05 23:00", tz="UTC"), coin


@pytest.mark.parametrize("coin", COINS)
def test_each_complete_day_of_hours_aggregates_to_the_daily_candle(coin):
    hourly, daily = load(f"{coin}-usd-1h"), load(f"{coin}-usd")
    days = hourly.groupby(hourly.index.floor("1D"))
    agg = days.agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    complete = agg[days.size() == 24]
    assert len(complete) > 0.99 * len(agg)  # the outage days are few (README: 26-30 per coin)
    expected = daily.loc[complete.index]
    for col in ("open", "high", "low", "close"):  # prices are copied, never computed: exactly equal
        assert (complete[col] == expected[col]).all(), f"{coin} {col} differs on {complete.index[complete[col] != expected[col]][:3]}"
    assert np.allclose(complete["volume"], expected["volume"], rtol=1e-9, atol=0), coin  # a sum of 24 floats


@pytest.mark.parametrize("coin", COINS)
def test_bundled_hourly_file_is_a_byte_copy_of_the_shared_one(coin):
    shared_file = SHARED_HOURLY / f"{coin.upper()}USDT_1h.csv"
    if not shared_file.exists():
        pytest.skip(f"{shared_file} is not beside the clone")
    bundled = gzip.decompress(bundled_path(f"{coin}-usd-1h").read_bytes())
    assert bundled == shared_file.read_bytes()
    assert bundled.startswith(b"timestamp,open,high,low,close,volume\n")
