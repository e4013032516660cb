"""One stream's failure stays in its stream (real ccxt clients against two replay exchanges on
127.0.0.1, real DuckDB, the real worker process, virtual time). Three streams: btc-1d, whose
champion's weights were truncated while the service was stopped; down-1d, whose exchange
answers 500 to every request; eth-1d, healthy. The loop keeps running: eth-1d forecasts every
candle, btc-1d's failure is recorded (decision, the state /ready and the dashboard read) and
retried with a growing backoff, down-1d's fetch failures are logged and it never forecasts."""

import re
import threading

import duckdb
import pandas as pd

from coincast.live.clock import SimClock
from coincast.live.config import LiveConfig, Stream, check
from coincast.live.registry import models_dir
from coincast.live.replay import Replay, ReplayExchange
from coincast.live.service import Service
from tests.conftest import tiny

UTC = "UTC"
START, RESTART, END = (pd.Timestamp(t, tz=UTC) for t in ("2025-06-01 00:01", "2025-06-03 00:01", "2025-06-08 00:01"))


def streams(*names) -> list[Stream]:
    settings = tiny(window=20, model={"shrink": False}, train={"shards": 1})
    data = {"btc-1d": "store:binance/BTC/USDT/1d", "eth-1d": "store:binance/ETH/USDT/1d",
            "down-1d": "store:kraken/BTC/USDT/1d"}  # kraken: served by the exchange that is down
    return [Stream(n, data[n], settings, "2024-06-01", 30, "warm", 3, 10) for n in names]


def run(store, names, start, until, lines) -> Service:
    clock = SimClock(start)  # virtual time
    up, down = Replay(clock, days_before_today=None), Replay(clock, days_before_today=None)
    down.down = True
    with ReplayExchange(up) as good, ReplayExchange(down) as bad:
        clients = {"binance": good, "kraken": bad}
        service = Service(check(LiveConfig(streams(*names), store)), clock,
                          lambda name: clients[name].client(timeout_ms=1000), lines.append,
                          grace=pd.Timedelta(minutes=1), hold="all", threads=1, fetch_retries=1, fetch_backoff_s=0.01,
                          stale_retry=pd.Timedelta(hours=6), failure_retry=pd.Timedelta(minutes=10))
        service.run(threading.Event(), until=until)
    return service


def test_a_broken_stream_and_a_down_exchange_leave_the_healthy_stream_forecasting(tmp_path):
    store, lines = tmp_path / "live.duckdb", []
    run(store, ["btc-1d", "eth-1d"], START, RESTART, lines)  # both get a champion
    weights = models_dir(store) / "btc-1d-m1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])

    lines.clear()
    service = run(store, ["btc-1d", "down-1d", "eth-1d"], RESTART, END, lines)
    assert service.failure is None
    with duckdb.connect(str(store), read_only=True) as con:
        served = con.execute("SELECT stream, target_time FROM forecasts WHERE served ORDER BY ALL").df()
        failures = con.execute("SELECT stream, decided_at, model, reason FROM decisions WHERE kind = 'failure' "
                               "ORDER BY id").df()
    days = list(pd.date_range("2025-06-01", "2025-06-08", freq="D"))
    assert list(served.loc[served["stream"] == "eth-1d", "target_time"]) == days  # every candle, none lost
    assert list(served.loc[served["stream"] == "btc-1d", "target_time"]) == days[:3]  # before the damage only
    assert "down-1d" not in set(served["stream"])

    # btc-1d: recorded once (not at every retry), shown in its state, retried with a growing backoff
    assert list(failures["stream"]) == ["btc-1d"] and failures["model"].isna().all(), failures.to_string()
    assert "model.safetensors is corrupt or truncated" in failures["reason"].iloc[0]
    btc = service.state("btc-1d")
    assert "model.safetensors is corrupt or truncated" in btc.last_error and btc.failures > 3
    tries = [pd.Timestamp(m.group(1), tz=UTC) for line in lines
             if (m := re.match(r"\[(\S+ \S+)\] btc-1d\s+FAILED", line))]
    assert len(tries) == btc.failures
    gaps = [b - a for a, b in zip(tries, tries[1:])]
    assert gaps[:3] == [pd.Timedelta(minutes=m) for m in (10, 20, 40)] and max(gaps) <= pd.Timedelta(hours=1)

    down = service.state("down-1d")
    assert down.last_error.startswith("fetch failed: binance kept failing after 1 retries")
    assert any(re.match(r"\[\S+ \S+\] eth-1d\s+forecast for the 2025-06-08 00:00 candle", line) for line in lines)


def test_a_finished_training_whose_files_vanished_is_a_failed_training(tmp_path):
    """The worker reports success but the staging folder is gone (deleted by hand, a full disk):
    the model is recorded failed with the reason, the loop goes on and the stream trains again."""
    from coincast.live.worker import Worker

    class Vanishing(Worker):
        def poll(self, timeout=0.0):
            result = super().poll(timeout)
            if result is not None and result["id"] == "btc-1d-m1":
                import shutil

                shutil.rmtree(result_staging[0])
            return result

        def submit(self, job, timeout_s=None):
            result_staging[:] = [job["staging"]]
            super().submit(job, timeout_s)

    result_staging, store, lines = [], tmp_path / "live.duckdb", []
    clock = SimClock(START)
    with ReplayExchange(Replay(clock, days_before_today=None)) as exchange:
        service = Service(check(LiveConfig(streams("btc-1d"), store)), clock, lambda name: exchange.client(),
                          lines.append, grace=pd.Timedelta(minutes=1), hold="all", threads=1, fetch_backoff_s=0.01)
        service.worker = Vanishing(threads=1)
        service.run(threading.Event(), until=pd.Timestamp("2025-06-02 00:01", tz=UTC))
    assert service.failure is None
    with duckdb.connect(str(store), read_only=True) as con:
        status = dict(con.execute("SELECT id, status FROM models").fetchall())
        failures = con.execute("SELECT model, reason FROM decisions WHERE kind = 'failure'").fetchall()
        served = con.execute("SELECT model, target_time FROM forecasts WHERE served").fetchall()
    assert status == {"btc-1d-m1": "failed", "btc-1d-m2": "champion"}
    assert failures[0][0] == "btc-1d-m1" and failures[0][1].startswith("its files could not be moved into place")
    assert [m for m, _ in served] == ["btc-1d-m2"]  # 06-02: the first candle after a model was in place
