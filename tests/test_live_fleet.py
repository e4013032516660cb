"""A fleet in the live loop (a [[fleet]] config, real ccxt clients against the replay exchange on
127.0.0.1, real DuckDB, the real worker process, virtual time): one market whose exchange answers
slowly holds back only its own stream's forecast, and a daily stream's step comes after that of
its market's hourly stream, whose candles give its realized measures.

No wall-clock timing: the slow market's answers are held back by the replay until the other
streams' forecasts have been logged, so only the order of events is asserted."""

import re
import threading

import duckdb
import pandas as pd
import torch

from coincast.live.clock import SimClock
from coincast.live.config import load_config
from coincast.live.replay import Replay, ReplayExchange
from coincast.live.service import Service
from tests.conftest import TINY_BATCH, TINY_EPOCHS, TINY_HIDDEN, tiny

UTC = "UTC"
START, RESTART = pd.Timestamp("2025-06-01 00:01", tz=UTC), pd.Timestamp("2025-06-03 00:01", tz=UTC)
GRACE, DAY = pd.Timedelta(minutes=1), pd.Timedelta(days=1)


# the suite's tiny model, as a fleet's shared settings tables
TINY = f"""
[fleet.settings.data]
window = 20
[fleet.settings.model]
hidden = {TINY_HIDDEN}
shrink = false
risk_head = false
[fleet.settings.train]
epochs = {TINY_EPOCHS}
batch_size = {TINY_BATCH}
shards = 1
"""


def fleet(tmp_path, body: str):
    path = tmp_path / "live.toml"
    path.write_text(f'store = "{tmp_path / "live.duckdb"}"\n' + body + TINY)
    config = load_config(path)
    tiny_settings = tiny(window=20, model={"shrink": False}, train={"shards": 1})
    assert all(s.settings == tiny_settings for s in config.streams)
    return config


def run(config, replay, start, until, log, timeout_ms=2000) -> Service:
    clock = replay.clock
    clock.sleep_until(start, threading.Event())
    with ReplayExchange(replay) as exchange:
        service = Service(config, clock, lambda name: exchange.client(timeout_ms=timeout_ms), log, grace=GRACE,
                          hold="all", threads=1, fetch_retries=1, fetch_backoff_s=0.01)
        service.run(threading.Event(), until=until)
    return service


def stored(store, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(store), read_only=True) as con:
        return con.execute(sql).df()


def forecast_line(stream: str, target: pd.Timestamp) -> re.Pattern:
    return re.compile(rf"\[\S+ \S+\] {stream}\s+forecast for the {target:%Y-%m-%d %H:%M} candle's close")


def test_a_slow_market_holds_back_only_its_own_streams_forecast(tmp_path):
    config = fleet(tmp_path, """
[[fleet]]
exchange = "binance"
symbols = ["BTC/USDT", "ETH/USDT", "LTC/USDT"]
timeframes = ["1d"]
since = "2024-06-01"
retrain_every = 30
shadow = 3
guard = 10
""")
    store, lines = config.store, []
    replay = Replay(SimClock(START), days_before_today=None)
    run(config, replay, START, RESTART - DAY, lines.append)  # every stream gets its champion
    assert all(any(forecast_line(s.name, START.floor("D") + DAY).match(x) for x in lines) for s in config.streams)

    # BTC/USDT, the first stream, answers only once ETH's and LTC's forecasts of the next candle are out
    target, healthy = RESTART.floor("D"), ("eth-usdt-1d", "ltc-usdt-1d")
    released = replay.stalled[("BTCUSDT", "1d")] = threading.Event()
    lines.clear()

    def log(line: str) -> None:
        lines.append(line)
        if all(any(forecast_line(name, target).match(x) for x in lines) for name in healthy):
            released.set()

    try:  # a client timeout far beyond the two healthy steps (about a second): answered once released
        service = run(config, replay, RESTART, RESTART + GRACE, log, timeout_ms=60_000)
    finally:
        released.set()
    assert service.failure is None and all(st.last_error is None for st in service.states), lines

    def first(pattern: str) -> int:
        return next(k for k, x in enumerate(lines) if re.match(pattern, x))

    btc_fetched = first(r"\[\S+ \S+\] btc-usdt-1d\s+(fetched|fetch failed)")
    assert "fetched 1 new candle(s)" in lines[btc_fetched]  # once released, its answer came in time
    for name in healthy:
        assert first(forecast_line(name, target).pattern) < btc_fetched, "\n".join(lines)
    assert first(forecast_line("btc-usdt-1d", target).pattern) > btc_fetched

    served = stored(store, "SELECT stream, target_time FROM forecasts WHERE served ORDER BY ALL")
    days = [t.tz_localize(None) for t in pd.date_range(START.floor("D"), target, freq="D")]
    for s in config.streams:  # every candle of every stream forecast once, the slow one's included
        assert list(served.loc[served["stream"] == s.name, "target_time"]) == days, served
    kinds = set(stored(store, "SELECT kind FROM decisions")["kind"])
    assert not kinds & {"missed", "failure", "stale", "no_forecast"}, kinds


def test_a_daily_stream_steps_after_its_markets_hourly_stream(tmp_path):
    """BTC/USDT on 1d and 1h, the daily stream listed first: at each day's pass its forecast comes
    after the hourly stream's step has stored the day's last hour, and its models serve the backtest's served
    model: the network's risk head averaged with HAR-RV on those hours (network_har)."""
    config = fleet(tmp_path, f"""
[[fleet]]
exchange = "binance"
symbols = ["BTC/USDT"]
timeframes = ["1d", "1h"]
since = "{(START - 1100 * DAY):%Y-%m-%d}"
retrain_every = 30
shadow = 2
guard = 2
[fleet.timeframe.1h]
since = "{(START - 90 * DAY):%Y-%m-%d}"
retrain_every = 10000
""")
    assert [(s.name, s.retrain_every) for s in config.streams] == [("btc-usdt-1d", 30), ("btc-usdt-1h", 10000)]
    lines, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(config, Replay(SimClock(START), days_before_today=None), START, START + 2 * DAY, lines.append)
    finally:
        torch.set_num_threads(threads)
    for target in (START.floor("D") + DAY, START.floor("D") + 2 * DAY):
        last_hour = target - pd.Timedelta(hours=1)
        hour = re.compile(rf"\[\S+ \S+\] btc-usdt-1h\s+fetched \d+ new candle\(s\); newest opens {last_hour:%Y-%m-%d %H:%M}")
        daily = forecast_line("btc-usdt-1d", target)
        at = [k for k, x in enumerate(lines) if hour.match(x)], [k for k, x in enumerate(lines) if daily.match(x)]
        assert len(at[0]) == len(at[1]) == 1 and at[0][0] < at[1][0], "\n".join(lines)
    risks = stored(config.store, "SELECT DISTINCT stream, risk FROM risk_forecasts ORDER BY ALL")
    assert list(risks.itertuples(index=False, name=None)) == [("btc-usdt-1d", "garch_t"), ("btc-usdt-1d", "network_har")]
