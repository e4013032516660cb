"""The live service's resources: idle CPU between candles, and RSS with 4 streams over a month.

    .venv/bin/python benchmarks/live_resources.py [--idle-seconds 10] [--days 30]

1. Idle CPU: the service (2 daily streams, the demo's model) on a simulated clock running at
   real speed, started just after a candle close: once its first forecasts are out it waits
   ~24 h for the next candle. Over `--idle-seconds` of wall clock, the CPU time of this process
   (the service and the replay exchange's server thread) and of its training worker.
2. Memory: 4 daily streams (BTC and ETH, each warm and fresh) on virtual time for `--days`
   simulated days (a retrain every 7 candles, 7-candle shadow): the service's RSS after each
   simulated day and its peak (the training worker, a process of its own, is not counted).

Prints the figures and the CPU model, as BENCHMARKS.md's "Live service" section quotes them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from coincast.live.clock import SimClock
from coincast.live.config import LiveConfig, Stream, check
from coincast.live.demo import demo_settings
from coincast.live.replay import Replay, ReplayExchange
from coincast.live.service import Service
from coincast.machine import cpu_model

START = pd.Timestamp("2025-06-01", tz="UTC")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def streams(names: dict[str, tuple[str, str]], since: str) -> list[Stream]:
    return [Stream(name, f"store:binance/{symbol}/1d", demo_settings(), since, 7, refit, 7, 30)
            for name, (symbol, refit) in names.items()]


def idle_cpu(folder: Path, seconds: float) -> dict:
    clock = SimClock(START + pd.Timedelta(minutes=1), speed=1.0)  # real speed: the next candle is ~24 h away
    config = check(LiveConfig(streams({"btc-1d": ("BTC/USDT", "warm"), "eth-1d": ("ETH/USDT", "warm")}, "2022-06-01"),
                              folder / "idle.duckdb"))
    lines: list[str] = []
    stop = threading.Event()
    with ReplayExchange(Replay(clock, days_before_today=None)) as exchange:
        service = Service(config, clock, lambda name: exchange.client(), lines.append, grace=pd.Timedelta(minutes=1),
                          hold="first", threads=1)
        thread = threading.Thread(target=service.run, args=(stop,))
        thread.start()
        while sum("forecast for" in line for line in lines) < 2:
            time.sleep(0.05)
        time.sleep(0.5)  # the loop reaches its wait
        worker = service.worker.proc.pid
        me0, w0, t0 = cpu_s(os.getpid()), cpu_s(worker), time.monotonic()
        time.sleep(seconds)
        me, w, wall = cpu_s(os.getpid()) - me0, cpu_s(worker) - w0, time.monotonic() - t0
        stop.set()
        thread.join()
    return {"wall_s": wall, "service_cpu_s": me, "worker_cpu_s": w}


def month_rss(folder: Path, days: int) -> dict:
    names = {"btc-warm": ("BTC/USDT", "warm"), "btc-fresh": ("BTC/USDT", "fresh"),
             "eth-warm": ("ETH/USDT", "warm"), "eth-fresh": ("ETH/USDT", "fresh")}
    config = check(LiveConfig(streams(names, "2022-06-01"), folder / "month.duckdb"))
    clock = SimClock(START + pd.Timedelta(minutes=1))  # virtual time
    samples: dict[str, float] = {}
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        samples[f"{clock.now():%Y-%m-%d}"] = rss_mib(os.getpid())

    with ReplayExchange(Replay(clock, days_before_today=None)) as exchange:
        service = Service(config, clock, lambda name: exchange.client(), log, grace=pd.Timedelta(minutes=1),
                          hold="all", threads=1)
        start = time.monotonic()
        service.run(threading.Event(), until=START + pd.Timedelta(days=days, minutes=1))
        wall = time.monotonic() - start
    by_day = pd.Series(samples)
    return {"days": days, "wall_s": wall, "first_day_mib": by_day.iloc[0], "week_mib": by_day.iloc[min(7, len(by_day) - 1)],
            "last_mib": by_day.iloc[-1], "peak_mib": by_day.max(),
            "trainings": sum(" trained in " in line for line in lines),
            "forecasts": sum("forecast for" in line for line in lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        idle = idle_cpu(Path(tmp), args.idle_seconds)
        print(f"idle: {idle['service_cpu_s']:.3f} s CPU (service process) + {idle['worker_cpu_s']:.3f} s (worker) "
              f"over {idle['wall_s']:.1f} s wall = {100 * (idle['service_cpu_s'] + idle['worker_cpu_s']) / idle['wall_s']:.2f}%")
        rss = month_rss(Path(tmp), args.days)
        print(f"4 streams, {rss['days']} simulated days ({rss['wall_s']:.0f} s wall, {rss['trainings']} trainings, "
              f"{rss['forecasts']} forecasts): service RSS {rss['first_day_mib']:.0f} MiB on day 1, "
              f"{rss['week_mib']:.0f} MiB on day 8, {rss['last_mib']:.0f} MiB at the end, peak {rss['peak_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
