"""The live service as a process of its own, for tests/test_live_kill.py (which SIGKILLs it).

`serve` runs in a child of a multiprocessing fork server that has already imported coincast
and torch (so each restart takes a fraction of a second); it runs the service on the replay
exchange at `args["url"]` with a simulated clock that reads the test's (same start, speed and
t0) and sends each progress line through `conn`. SIGTERM stops it cleanly.
"""

import signal
import threading
from pathlib import Path

import pandas as pd

from coincast.config import Settings
from coincast.live.clock import SimClock
from coincast.live.config import LiveConfig, Stream, check
from coincast.live.replay import replay_client
from coincast.live.service import Service

PRELOAD = ["torch", "coincast.live.service", "coincast.live.replay", __name__]


def serve(args: dict, conn) -> None:
    import torch

    torch.set_num_threads(1)  # one window at a time: threads only fight the worker
    clock = SimClock(pd.Timestamp(args["start"]), args["speed"], t0=args["t0"])
    settings = Settings.from_dict(args["settings"])
    streams = [Stream(name, f"store:binance/{symbol}/1d", settings, "2022-06-01", args["retrain_every"], "warm",
                      args["shadow"], args["guard"]) for name, symbol in (("btc-1d", "BTC/USDT"), ("eth-1d", "ETH/USDT"))]
    config = check(LiveConfig(streams, Path(args["store"])))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service = Service(config, clock, lambda name: replay_client(args["url"], clock, timeout_ms=2000), conn.send,
                      grace=pd.Timedelta(minutes=1), threads=1, fetch_backoff_s=0.01)
    conn.send("started")
    service.run(stop)
    conn.send("stopped cleanly")
