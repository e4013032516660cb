"""Exchange faults inside the live loop (real ccxt client against the replay exchange on
127.0.0.1, real DuckDB, the real worker process, virtual time): 429s, 500s, a timeout, an
empty page, duplicated and out-of-order candles and a candle revised after close are retried
or absorbed, every candle is stored once with the exchange's latest values, the service never
crashes, and a tick whose fetch fails is shown as stale and caught up soon after."""

import threading

import duckdb
import pandas as pd

from coincast.live.clock import SimClock
from coincast.live.config import LiveConfig, Stream, check
from coincast.live.replay import Replay, ReplayExchange
from coincast.live.service import Service
from tests.conftest import tiny

UTC = "UTC"
DAY = pd.Timedelta(days=1)


def service(store, clock, exchange, lines, retries=5):
    settings = tiny(window=20, model={"shrink": False}, train={"shards": 1})
    stream = Stream("btc-1d", "store:binance/BTC/USDT/1d", settings, "2022-06-01", 30, "warm", 3, 10)
    return Service(check(LiveConfig([stream], store)), clock, lambda name: exchange.client(timeout_ms=1000),
                   lines.append, grace=pd.Timedelta(minutes=1), hold="all", threads=1, fetch_retries=retries,
                   fetch_backoff_s=0.01, stale_retry=pd.Timedelta(hours=2))


def stored(store) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    with duckdb.connect(str(store), read_only=True) as con:
        candles = con.execute("SELECT open_time, open, high, low, close, volume FROM candles ORDER BY open_time").df()
        forecasts = con.execute("SELECT * FROM forecasts ORDER BY target_time, model").df()
        decisions = con.execute("SELECT * FROM decisions ORDER BY id").df()
    candles.index = pd.DatetimeIndex(candles.pop("open_time")).tz_localize(UTC).as_unit("ns")
    return candles, forecasts, decisions


def test_faults_are_retried_stored_once_and_a_failed_tick_shows_stale(tmp_path):
    store, lines = tmp_path / "live.duckdb", []
    clock = SimClock(pd.Timestamp("2025-06-01 00:01", tz=UTC))  # virtual time
    replay = Replay(clock, days_before_today=None)
    # klines requests 1-3 are the first fetch (1,096 candles in pages of 500), then one or two a tick
    replay.faults = {2: "429", 5: "500", 6: "timeout", 8: "empty", 10: "duplicate", 12: "shuffled",
                     14: "revised", 16: "500", 17: "500", 18: "500"}  # 16-18: three in a row beat 2 retries
    with ReplayExchange(replay) as exchange:
        service(store, clock, exchange, lines, retries=2).run(threading.Event(), until=pd.Timestamp("2025-06-12", tz=UTC))
    candles, forecasts, decisions = stored(store)

    # every closed candle once, equal to the exchange's; the one revised after close with its revision
    served = replay.candles.loc["2022-06-01":"2025-06-10"]  # 06-11 closes at the end
    expected = served[list(candles.columns)].copy()
    revised = pd.Timestamp(int(replay.klines[13]["startTime"]), unit="ms", tz=UTC)
    assert revised in candles.index[:-1]  # a candle that was already stored when its revision came
    expected.loc[revised, "close"] = float(f"{served.loc[revised, 'close'] * 1.01:.8f}")
    expected.loc[revised, "high"] = max(expected.loc[revised, "high"], expected.loc[revised, "close"])
    pd.testing.assert_frame_equal(candles, expected, check_freq=False, check_names=False)
    assert any("new candle(s), 1 revised" in line for line in lines), "\n".join(lines)

    # the ticks whose fetch failed or came back empty are shown stale, then caught up within the candle
    stale = decisions[decisions["kind"] == "stale"]
    assert len(stale) == 2 and any("fetch failed: binance kept failing after 2 retries" in line for line in lines)
    assert any("STALE: newest candle opens" in line for line in lines)
    days = pd.date_range("2025-06-01", "2025-06-11", freq="D").tz_localize(None)
    assert list(forecasts.loc[forecasts["served"], "target_time"]) == list(days)  # one each, none lost
    assert not forecasts.duplicated(["stream", "model", "target_time"]).any()
    assert not (decisions["kind"].isin(["missed", "no_forecast"])).any()


def test_a_candle_revised_after_it_was_stored_replaces_its_row(tmp_path):
    store, lines = tmp_path / "live.duckdb", []
    clock = SimClock(pd.Timestamp("2025-06-01 00:01", tz=UTC))
    replay = Replay(clock, days_before_today=None)
    with ReplayExchange(replay) as exchange:
        service(store, clock, exchange, lines).run(threading.Event(), until=pd.Timestamp("2025-06-05", tz=UTC))
        before, issued, _ = stored(store)
        newest = before.index[-1]
        assert newest == pd.Timestamp("2025-06-03", tz=UTC)
        frame = replay.candles  # the exchange revises its newest closed candle (already stored) after close
        frame.loc[newest, "close"] *= 1.02
        frame.loc[newest, "high"] = max(frame.loc[newest, "high"], frame.loc[newest, "close"])
        service(store, clock, exchange, lines).run(threading.Event(), until=pd.Timestamp("2025-06-07", tz=UTC))
    after, forecasts, _ = stored(store)
    assert after.loc[newest, "close"] == round(frame.loc[newest, "close"], 8) != before.loc[newest, "close"]
    assert len(after) == len(before) + 2 and after.index.is_unique
    pd.testing.assert_frame_equal(after.drop(index=newest).iloc[:len(before) - 1], before.drop(index=newest))
    assert any("fetched 0 new candle(s), 1 revised" in line for line in lines)  # the restart re-reads at once
    kept = forecasts.set_index(["model", "target_time"]).loc[issued.set_index(["model", "target_time"]).index]
    assert (kept["point"].to_numpy() == issued["point"].to_numpy()).all()  # issued forecasts never change
