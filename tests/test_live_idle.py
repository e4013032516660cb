"""Idle CPU: between candles the live service sleeps. The service (real ccxt client against
the replay exchange on 127.0.0.1, real DuckDB, the real worker process) runs on a simulated
clock at real speed, started just after a candle closed; once its first forecast is out the
next candle is ~24 h away, and over 3 s of wall clock it and its worker use under 10% of one
core (a property, not a speed: a loop that polls instead of sleeping uses ~100%)."""

import os
import threading
import time
from pathlib import Path

import pandas as pd

from coincast.live.clock import SimClock
from coincast.live.config import LiveConfig, Stream, check
from coincast.live.replay import Replay, ReplayExchange
from coincast.live.service import Service
from tests.conftest import tiny

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime, all threads


def test_idle_cpu_between_candles_is_near_zero(tmp_path):
    settings = tiny(window=20, model={"shrink": False}, train={"shards": 1})
    stream = Stream("btc-1d", "store:binance/BTC/USDT/1d", settings, "2024-06-01", 7, "warm", 3, 10)
    config = check(LiveConfig([stream], tmp_path / "live.duckdb"))
    clock = SimClock(pd.Timestamp("2025-06-01 00:01", tz="UTC"), speed=1.0)
    lines, stop = [], threading.Event()
    with ReplayExchange(Replay(clock, days_before_today=None)) as exchange:
        service = Service(config, clock, lambda name: exchange.client(), lines.append, grace=pd.Timedelta(minutes=1),
                          hold="first", threads=1)
        thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while not any("forecast for" in line for line in lines) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert any("forecast for" in line for line in lines), "\n".join(lines)
            time.sleep(0.3)  # the loop reaches its wait
            worker = service.worker.proc.pid
            me0, w0, t0 = cpu_s(os.getpid()), cpu_s(worker), time.monotonic()
            time.sleep(3)
            used = cpu_s(os.getpid()) - me0 + cpu_s(worker) - w0
            wall = time.monotonic() - t0
        finally:
            stop.set()
            thread.join(timeout=30)
    assert not thread.is_alive()
    assert used < 0.10 * wall, f"{used:.2f} s CPU in {wall:.1f} s idle"
    assert clock.now() < pd.Timestamp("2025-06-01 00:02", tz="UTC")  # still far from the next candle
