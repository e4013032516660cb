"""Stale data: the replay exchange's candle feed stops from 06-05 to 06-07 12:00 (simulated).
No forecast is issued from data older than two bars, that is recorded, and forecasting resumes
as soon as the feed does, for the candle then open (never for one already closed)."""

import threading

import duckdb
import pandas as pd

from coincast.data import load
from coincast.live.clock import SimClock
from coincast.live.config import LiveConfig, Stream, StreamRisk, check
from coincast.live.replay import Replay, ReplayExchange
from coincast.live.service import Service
from tests.conftest import tiny

UTC = "UTC"


def test_no_forecast_from_stale_data_and_recovery_mid_candle(tmp_path):
    store = tmp_path / "live.duckdb"
    settings = tiny(window=20, model={"shrink": False}, train={"shards": 1})
    stream = Stream("btc-1d", "store:binance/BTC/USDT/1d", settings, "2022-06-01", 7, "warm", 3, 10, risk=StreamRisk(head=False))
    config = check(LiveConfig([stream], store))
    clock = SimClock(pd.Timestamp("2025-06-01 00:01", tz=UTC))  # virtual time
    replay = Replay(clock, days_before_today=None)
    replay.outage = (pd.Timestamp("2025-06-05 00:00", tz=UTC), pd.Timestamp("2025-06-07 12:00", tz=UTC))
    lines = []
    with ReplayExchange(replay) as exchange:
        service = Service(config, clock, lambda name: exchange.client(), lines.append, grace=pd.Timedelta(minutes=1),
                          hold="all", threads=1, fetch_backoff_s=0.01, stale_retry=pd.Timedelta(hours=6))
        service.run(threading.Event(), until=pd.Timestamp("2025-06-09 00:01", tz=UTC))
    con = duckdb.connect(str(store), read_only=True)
    try:
        served = con.execute("SELECT target_time, issued_at, data_through FROM forecasts WHERE served "
                             "ORDER BY target_time").df()
        stale = con.execute("SELECT target_time, reason FROM decisions WHERE kind = 'stale' ORDER BY id").df()
        missed = con.execute("SELECT count(*) FROM decisions WHERE kind = 'missed'").fetchone()[0]
    finally:
        con.close()
    day = lambda d: pd.Timestamp(f"2025-06-{d:02d}")  # noqa: E731 (stored naive UTC)
    # 06-05: its tick (00:01) still saw the 06-04 candle: fresh. 06-06: stale all its life.
    # 06-07: stale at its tick, then at 12:01 the feed is back: forecast from the 06-06 candle.
    assert list(served["target_time"]) == [day(d) for d in (1, 2, 3, 4, 5, 7, 8, 9)]
    late = served.set_index("target_time").loc[day(7)]
    assert late["issued_at"] == pd.Timestamp("2025-06-07 12:01") and late["data_through"] == day(6)
    assert list(stale["target_time"]) == [day(6), day(7)]  # once per candle, not at every retry
    assert "newest candle opens 2025-06-04 00:00" in stale["reason"].iloc[0]
    assert missed == 0
    with duckdb.connect(str(store), read_only=True) as con:  # the candles stored are the real ones, none partial
        closes = con.execute("SELECT open_time, close FROM candles WHERE open_time >= '2025-06-01'").df()
    real = load("btc-usd")["close"]
    assert list(closes["close"]) == list(real.loc[[pd.Timestamp(t, tz=UTC) for t in closes["open_time"]]])
    assert len(closes) == 8  # 06-01 .. 06-08
    assert any("STALE: newest candle opens 2025-06-04 00:00; no forecast for 2025-06-06 00:00" in l for l in lines)
