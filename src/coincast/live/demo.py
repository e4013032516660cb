"""`coincast live --demo`: the service against the replay exchange on a simulated clock.

Two streams (BTC/USDT and ETH/USDT daily; `coins` picks up to four) from the bundled candles,
a small model that trains in about a second, a retrain every 7 candles and a 7-candle shadow period: at one simulated
day per second the first retrain, its shadow period and the decision come within ~20 s.

Each stream's three years of history are enough for the network's risk head (`live/head.py`),
trained with each stream's first model (pooled with the other demo streams' candles; about a second
on one core at this size) and continued at each retrain, so the demo serves `network`, the
backtest's served model on daily candles alone (network_har needs an hourly stream of the same
market beside it). `head=False` serves GARCH-t's quantiles instead, as the tests that need only
the daily-only path do.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from coincast.config import Settings, preset
from coincast.data import load
from coincast.errors import ConfigError
from coincast.live.clock import SimClock
from coincast.live.config import LiveConfig, ServiceSettings, Stream, StreamRisk, check
from coincast.live.log import LOGGER
from coincast.live.replay import Replay, ReplayExchange
from coincast.live.service import Service
from coincast.models.shrinkage import MIN_RECORD

START = "2025-06-01"
HISTORY_DAYS = 1100  # candles fetched before the start: three years to train on
DAY_S = 86_400
GRACE = pd.Timedelta(minutes=1)
COINS = ("btc", "eth", "ltc", "bnb", "xrp", "ada")  # daily USDT markets the replay serves; a demo runs the first two unless told


def demo_settings() -> Settings:
    """A small model: trains in about a second on three years of daily candles on one core."""
    s = preset("default")
    s.data.window = 20
    s.model.hidden = [8, 8]
    s.train.epochs = 5
    s.train.batch_size = 256
    s.train.shards = 1
    return s  # shrinkage stays on, as by default: persistence's price until the record shows skill


DEMO_CHANGES = ("demo model: window 20, hidden [8, 8], 5 epochs, batches of 256 in one shard (small, so it trains "
                "in about a second); everything else as by default: shrinkage on, so forecasts are persistence's price until "
                "a stream's live record holds {n} scored forecasts with skill, and a challenger that ties "
                "its champion is not promoted")


def demo_config(store: Path, start: pd.Timestamp, settings: Settings | None = None, retrain_every: int = 7,
                shadow: int = 7, guard: int = 30, coins: tuple[str, ...] = COINS[:2],
                service: ServiceSettings | None = None, head: bool = True) -> LiveConfig:
    since = (start - pd.Timedelta(days=HISTORY_DAYS)).strftime("%Y-%m-%d")
    streams = [
        Stream(f"{coin}-1d", f"store:binance/{coin.upper()}/USDT/1d", settings or demo_settings(), since, retrain_every,
               "warm", shadow, guard, risk=StreamRisk(head=head))
        for coin in coins
    ]
    return check(LiveConfig(streams, Path(store), service or ServiceSettings()))


def demo_start(text: str | None) -> pd.Timestamp:
    """The replay's first simulated day: after three years of history, a week before the data ends."""
    data = load("btc-usd")
    try:
        start = pd.Timestamp(text or START, tz="UTC").normalize()
    except (ValueError, TypeError):
        raise ConfigError(f"--from '{text}' is not a date; write it as YYYY-MM-DD, e.g. --from {START}") from None
    first, last = data.index[0] + pd.Timedelta(days=HISTORY_DAYS), data.index[-1] - pd.Timedelta(days=7)
    if not first <= start <= last:
        raise ConfigError(f"--from {start.date()} is outside the replayable days {first.date()}..{last.date()}; "
                          f"pick a day in that range, e.g. --from {START}")
    return start


@contextmanager
def demo_service(store: Path, start: pd.Timestamp, speed: float | None, days: int | None,
                 log: Callable[[str], None] | None = print, settings: Settings | None = None, retrain_every: int = 7,
                 shadow: int = 7, guard: int = 30, threads: int | None = 1,
                 clock: SimClock | None = None, coins: tuple[str, ...] = COINS[:2],
                 fault_every: int = 0, service: ServiceSettings | None = None,
                 head: bool = True) -> Iterator[tuple[Service, pd.Timestamp]]:
    """The demo's service and the simulated time it stops at, while its replay exchange serves.

    `log`: a callable for readable lines, or None: through `logging` (`live/log.py`).
    `speed`: simulated seconds per real second; None: virtual time (each training and step takes
    no simulated time, so a run is deterministic and as fast as its work). `clock`: another
    simulated clock starting at `start` + GRACE (tests step one by hand). `service`: where its
    trainings run (the `[service]` table; default the local worker).
    """
    import torch

    torch.set_num_threads(1)  # the service forecasts one window at a time: threads only fight the worker
    config = demo_config(store, start, settings, retrain_every, shadow, guard, coins, service, head)
    clock = clock or SimClock(start + GRACE, speed)
    end = load("btc-usd").index[-1] + pd.Timedelta(days=1) + GRACE  # the last replayed candle closes
    until = min(end, start + pd.Timedelta(days=days) + GRACE) if days else end
    say = log or LOGGER.info
    replay = Replay(clock, days_before_today=None)
    replay.fault_every = fault_every
    with ReplayExchange(replay) as exchange:
        say(f"replay exchange on {exchange.url}: bundled {', '.join(f'{c.upper()}/USDT' for c in coins)} daily candles "
            f"from {start.date()}, " + (f"{speed / DAY_S:g} simulated day(s) per second" if speed else "virtual time")
            + (f"; every {fault_every}th request answered with a fault" if fault_every else ""))
        if settings is None:
            say(DEMO_CHANGES.format(n=MIN_RECORD))
        yield Service(config, clock, lambda name: exchange.client(timeout_ms=10_000), log, grace=GRACE,
                      hold="all" if clock.virtual else "first", threads=threads, fetch_backoff_s=0.05), until


def run_demo(store: Path, start: pd.Timestamp, speed: float | None, days: int | None, stop: threading.Event,
             log: Callable[[str], None] | None = print, settings: Settings | None = None, retrain_every: int = 7,
             shadow: int = 7, guard: int = 30, threads: int | None = 1, coins: tuple[str, ...] = COINS[:2],
             fault_every: int = 0, service: ServiceSettings | None = None, head: bool = True) -> None:
    """Run the demo until `stop` is set, `days` simulated days have passed, or the replay's data ends."""
    with demo_service(store, start, speed, days, log, settings, retrain_every, shadow, guard, threads,
                      coins=coins, fault_every=fault_every, service=service, head=head) as (svc, until):
        svc.run(stop, until=until)
