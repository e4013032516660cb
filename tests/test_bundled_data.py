"""Bundled candles end on the last candle that had closed when their source was taken.

`coincast fetch` never stores the still-open candle; the bundled files keep the same rule.
Each candle dataset records its bar length and its source's snapshot time (the data notes in
coincast/data/datasets.py say how that time was established).
"""

from __future__ import annotations

import pandas as pd
import pytest

from coincast.data import load
from coincast.data.datasets import BINANCE_DAILY_SNAPSHOT, BINANCE_HOURLY_SNAPSHOT, DATASETS

CANDLES = ["btc-usd", "eth-usd", "ltc-usd", "xrp-usd", "ada-usd", "bnb-usd", "btc-usd-1h"]


def test_every_candle_dataset_records_its_bar_and_snapshot():
    assert [d.name for d in DATASETS.values() if d.snapshot is not None] == CANDLES
    assert {DATASETS[n].snapshot for n in CANDLES[:6]} == {BINANCE_DAILY_SNAPSHOT}
    assert DATASETS["btc-usd-1h"].snapshot == BINANCE_HOURLY_SNAPSHOT


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
    # 2026-01-06 (daily) and 2025-12-02 05:00 (hourly) were the candles still open at the snapshots
    for name in CANDLES[:6]:
        assert load(name).index[-1] == pd.Timestamp("2026-01-05", tz="UTC"), name
    hourly = load("btc-usd-1h")
    assert hourly.index[-1] == pd.Timestamp("2025-12-02 04:00", tz="UTC") and len(hourly) == 72568
