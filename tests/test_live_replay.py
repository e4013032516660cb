"""The replay exchange on a simulated clock: only candles closed by the simulated "now" are
stored, the clock moves the market forward, both bundled markets are served, and the extra
faults (empty, shuffled, revised pages) are survived with each candle stored once."""

import threading

import pandas as pd
import pytest

from coincast.data import load
from coincast.data.exchange import fetch
from coincast.data.store import Store
from coincast.live.clock import SimClock
from coincast.live.replay import Replay, ReplayExchange


@pytest.fixture
def exchange():
    clock = SimClock("2025-06-01 00:05")  # virtual: moves only when slept
    with ReplayExchange(Replay(clock, days_before_today=None)) as ex:
        yield ex


def stored(store, symbol="BTC/USDT"):
    with Store(store, read_only=True) as db:
        return db.candles("binance", symbol, "1d")


def test_only_candles_closed_by_the_simulated_now_are_stored(exchange, tmp_path):
    store, clock = tmp_path / "s.duckdb", exchange.replay.clock
    fetch(exchange.client(), "BTC/USDT", "1d", since="2025-05-01", store=store, progress=False)
    got = stored(store)
    btc = load("btc-usd")
    assert got.index[0] == pd.Timestamp("2025-05-01", tz="UTC")
    assert got.index[-1] == pd.Timestamp("2025-05-31", tz="UTC")  # 06-01 is still open at 00:05
    pd.testing.assert_frame_equal(got, btc.loc["2025-05-01":"2025-05-31", list(got.columns)], check_freq=False)
    clock.sleep_until(pd.Timestamp("2025-06-03 00:01", tz="UTC"), threading.Event())
    again = fetch(exchange.client(), "BTC/USDT", "1d", store=store, progress=False)
    assert again.inserted == 2 and stored(store).index[-1] == pd.Timestamp("2025-06-02", tz="UTC")
    assert stored(store).loc["2025-06-02", "close"] == btc.loc["2025-06-02", "close"]
    fetch(exchange.client(), "ETH/USDT", "1d", since="2025-05-30", store=store, progress=False)
    eth = stored(store, "ETH/USDT")
    assert list(eth.index.day) == [30, 31, 1, 2]
    assert eth["close"].iloc[-1] == load("eth-usd").loc["2025-06-02", "close"]


def test_still_open_candle_is_served_partial_and_never_stored(exchange, tmp_path):
    page = exchange.replay.page({"symbol": "BTCUSDT", "interval": "1d",
                                 "startTime": int(pd.Timestamp("2025-05-31", tz="UTC").value // 10**6)})
    assert len(page) == 2  # 05-31 (closed) and 06-01 (open for 5 minutes)
    opened = page[1]
    assert opened[1] == opened[4]  # flat at the open: nothing of its future is leaked
    assert float(opened[5]) < 0.01 * load("btc-usd").loc["2025-06-01", "volume"]


def test_empty_shuffled_and_revised_pages_are_survived(exchange, tmp_path):
    store = tmp_path / "s.duckdb"
    replay = exchange.replay
    replay.faults = {1: "shuffled", 2: "empty"}
    first = fetch(exchange.client(), "BTC/USDT", "1d", since="2025-04-01", store=store, limit=20, progress=False)
    assert first.pages == 2 and first.inserted == 20  # the empty 2nd page ends this fetch
    again = fetch(exchange.client(), "BTC/USDT", "1d", store=store, progress=False)
    assert again.inserted == 41 and len(stored(store)) == 61
    replay.faults = {len(replay.klines) + 1: "revised"}
    revised = fetch(exchange.client(), "BTC/USDT", "1d", since="2025-05-31", store=store, progress=False)
    assert (revised.inserted, revised.replaced) == (0, 1)
    got = stored(store)
    assert got.loc["2025-05-31", "close"] == pytest.approx(load("btc-usd").loc["2025-05-31", "close"] * 1.01)
    assert got.index.is_unique and len(got) == 61
