"""`fetch` with timeframe 1h keeps a store's hourly companion current: the real ccxt binance client
against the replay exchange (coincast.live.replay) on a simulated clock, at the candles' real dates.

Daily data `store:binance/BTC/USDT/1d` take the store's 1h candles of the same market by default
(data/intraday.py); a companion fetched less recently than the daily candles is used with a
warning that names the fix, and the next hourly fetch resumes after its newest hour.
"""

from __future__ import annotations

import threading
import warnings

import pandas as pd

from coincast.data import load
from coincast.data.exchange import fetch
from coincast.data.intraday import resolve
from coincast.live.clock import SimClock
from coincast.live.replay import Replay, ReplayExchange

DAILY, HOURLY = "store:binance/BTC/USDT/1d", "store:binance/BTC/USDT/1h"
SINCE = pd.Timestamp("2025-12-01", tz="UTC")


def _resolve():
    """The default hourly series of the store's daily candles, and the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = resolve(None, {DAILY: load(DAILY)})
    return got, [str(w.message) for w in caught]


def test_fetching_1h_keeps_the_daily_candles_hourly_companion_current(tmp_path, monkeypatch):
    store = tmp_path / "s.duckdb"
    monkeypatch.setenv("COINCAST_STORE", str(store))
    clock = SimClock("2026-01-03 06:30")  # virtual: moves only when told
    replay = Replay(clock=clock, days_before_today=None)
    with ReplayExchange(replay) as exchange:
        client = exchange.client()

        def get(timeframe: str, since=None):
            return fetch(client, "BTC/USDT", timeframe, since=since, store=store, limit=1000, backoff_s=0.01,
                         progress=False)

        get("1d", SINCE)
        assert resolve(None, {DAILY: load(DAILY)}).frame is None  # no hourly candles held yet: none
        hourly = get("1h", SINCE)
        assert hourly.last == pd.Timestamp("2026-01-03 05:00", tz="UTC")  # 06:00 is still open: not stored
        got, warned = _resolve()
        assert got.series == HOURLY and not warned
        assert got.frame.index[-1] == pd.Timestamp("2026-01-02 23:00", tz="UTC")  # the daily data's last day

        clock.sleep_until(pd.Timestamp("2026-01-05 02:10", tz="UTC"), threading.Event())
        get("1d")  # the daily candles move on to 2026-01-04; the companion lags
        got, warned = _resolve()
        assert got.frame.index[-1] == pd.Timestamp("2026-01-03 05:00", tz="UTC")
        assert warned == [f"--intraday {HOURLY}: its last hour (2026-01-03 05:00:00+00:00) is before {DAILY}'s last "
                          "day (2026-01-04), so the days after it have no hours: bring it up to date with coincast "
                          "fetch --timeframe 1h"]
        replay.klines.clear()
        resumed = get("1h")
        assert replay.klines[0]["interval"] == "1h"
        assert int(replay.klines[0]["startTime"]) == pd.Timestamp("2026-01-03 06:00", tz="UTC").value // 10**6
        assert resumed.inserted == 44 and resumed.last == pd.Timestamp("2026-01-05 01:00", tz="UTC")
        got, warned = _resolve()
        assert not warned and got.frame.index[-1] == pd.Timestamp("2026-01-04 23:00", tz="UTC")
        expected = load("btc-usd-1h").loc[SINCE : pd.Timestamp("2026-01-04 23:00", tz="UTC")]
        pd.testing.assert_frame_equal(got.frame, expected, check_freq=False)


def test_without_a_store_file_the_default_is_none(tmp_path, monkeypatch, btc):
    monkeypatch.setenv("COINCAST_STORE", str(tmp_path / "none.duckdb"))  # nothing fetched yet: no companion, no error
    assert resolve(None, {DAILY: btc}).frame is None
    assert not (tmp_path / "none.duckdb").exists()  # looking did not create a store
