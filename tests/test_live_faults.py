"""Exchange faults inside the live loop (real ccxt client against the replay exchange on
127.0.0.1, real DuckDB, the real worker process, virtual time): 429s, 500s, a timeout, an
empty page, duplicated and out-of-order candles and a candle revised after close are retried
or absorbed, every candle is stored once with the exchange's latest values, the service never
crashes, and a tick whose fetch fails is shown as stale and caught up soon after."""

import threading

import duckdb
import pandas as pd

from coincast.live.clock import SimClock
from coincast.live.config import LiveConfig, Stream, StreamRisk, check
from coincast.live.replay import Replay, ReplayExchange
from coincast.live.service import Service
from tests.conftest import tiny

UTC = "UTC"
DAY = pd.Timedelta(days=1)


def service(store, clock, exchange, lines, retries=5):
    settings = tiny(window=20, model={"shrink": False}, train={"shards": 1})
    stream = Stream("btc-1d", "store:binance/BTC/USDT/1d", settings, "2022-06-01", 30, "warm", 3, 10, risk=StreamRisk(head=False))
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


def test_a_429_waits_as_long_as_its_retry_after_says(tmp_path, monkeypatch):
    """The real ccxt client against the replay exchange: a 429 with Retry-After: 7 waits 7 s (not
    the backoff's 0.01 s), a 500 waits the backoff, and a Retry-After beyond what a fetch will
    wait is a FetchError saying so. The waits are recorded, not slept."""
    from types import SimpleNamespace

    import pytest

    from coincast.data import exchange as exchange_module
    from coincast.data.exchange import FetchError, fetch

    waits = []
    monkeypatch.setattr(exchange_module, "time", SimpleNamespace(sleep=waits.append))
    replay = Replay(SimClock(pd.Timestamp("2025-06-01 00:01", tz=UTC)), days_before_today=None)
    replay.faults, replay.retry_after = {1: "429", 2: "500"}, "7"
    with ReplayExchange(replay) as server:
        got = fetch(server.client(), "BTC/USDT", "1d", since="2025-05-01", store=tmp_path / "a.duckdb",
                    retries=3, backoff_s=0.01, progress=False)
        assert waits == [7.0, 0.02] and got.inserted == 31  # the 429's wait, then the 500's backoff (2nd try)
        replay.faults, replay.retry_after = {len(replay.klines) + 1: "429"}, "86400"
        with pytest.raises(FetchError, match=r"binance asks to wait 86400 s before the next request \(HTTP 429"):
            fetch(server.client(), "BTC/USDT", "1d", since="2025-05-01", store=tmp_path / "b.duckdb",
                  retries=3, backoff_s=0.01, progress=False)


def test_a_candle_revised_after_its_forecast_was_scored_keeps_the_first_actual_and_scores_the_final(tmp_path):
    """The exchange revises a candle whose forecast was already scored: the row keeps the actual
    it was first scored on (history is not rewritten), records the final value and when it came,
    and the live record is computed on final values."""
    import json

    import numpy as np
    import pytest

    store, lines = tmp_path / "live.duckdb", []
    clock = SimClock(pd.Timestamp("2025-06-01 00:01", tz=UTC))
    replay = Replay(clock, days_before_today=None)
    with ReplayExchange(replay) as exchange:
        service(store, clock, exchange, lines).run(threading.Event(), until=pd.Timestamp("2025-06-05", tz=UTC))
        _, scored, _ = stored(store)
        revised = pd.Timestamp("2025-06-03", tz=UTC)  # stored, and its forecast scored at the 06-04 tick
        first = scored.loc[scored["target_time"] == revised.tz_localize(None), "actual"].iloc[0]
        assert not np.isnan(first)
        frame = replay.candles
        frame.loc[revised, "close"] *= 1.02
        frame.loc[revised, "high"] = max(frame.loc[revised, "high"], frame.loc[revised, "close"])
        final = round(frame.loc[revised, "close"], 8)
        service(store, clock, exchange, lines).run(threading.Event(), until=pd.Timestamp("2025-06-07", tz=UTC))
    with duckdb.connect(str(store), read_only=True) as con:
        rows = con.execute("SELECT * FROM forecasts ORDER BY target_time").df()
        live = json.loads(con.execute("SELECT live FROM models WHERE status = 'champion'").fetchone()[0])
        decisions = con.execute("SELECT target_time, reason FROM decisions WHERE kind = 'revision'").df()
    row = rows[rows["target_time"] == revised.tz_localize(None)].iloc[0]
    assert row["actual"] == first and row["error"] == row["point"] - first  # as first scored
    assert row["final_actual"] == final and pd.notna(row["revised_at"])
    others = rows[rows["target_time"] != revised.tz_localize(None)]
    assert others["final_actual"].isna().all()  # only the revised candle
    assert list(decisions["target_time"]) == [revised.tz_localize(None)]
    assert f"{first:,.2f}" in decisions["reason"].iloc[0] and f"{final:,.2f}" in decisions["reason"].iloc[0]
    real = rows.dropna(subset=["actual"]).tail(10)
    actual = real["final_actual"].fillna(real["actual"])
    assert live["rmse"] == pytest.approx(np.sqrt(np.mean((real["point"] - actual) ** 2)), rel=1e-12)  # on final values
    assert any("revised after it was scored" in line for line in lines)
