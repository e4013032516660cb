"""The server `make load` measures (benchmarks/load.py starts it): `coincast serve`'s own app and
uvicorn setup (coincast.api.server.serve) over the demo's two streams, with fixed data.

    .venv/bin/python benchmarks/load_server.py --folder runs/load [--days 1050] [--train-epochs 1000]

1. Fill (once; kept in FOLDER/filled): the demo on virtual time for `--days` simulated days up to
   the end of the bundled candles, so each stream has one served forecast per day (>= 1,000 rows
   for the history route's 1,000-row pages). Only the first models train (no scheduled retrains:
   they would only add minutes), so the fill takes a few minutes on 2 cores.
2. Serve: a copy of the filled store, on a clock held at the fill's last tick: no new candle
   closes while it is measured, so every answer is the same data. The write token is
   $COINCAST_TOKEN. Trainings use `--train-epochs` epochs and no early stop, so a retrain asked
   for through the API (POST /v1/streams/btc-1d/retrain) runs in the worker process for minutes,
   as long as the measurements. Prints "serving on URL/" once listening; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
from pathlib import Path

import duckdb
import pandas as pd

from coincast.api.app import create_app
from coincast.api.auth import load_tokens
from coincast.api.server import bind, serve, url
from coincast.data import load
from coincast.live.clock import SimClock
from coincast.live.demo import GRACE, demo_service, demo_settings

NO_RETRAIN = 100_000  # candles between scheduled trainings: none in the fill


class OneLineParser(argparse.ArgumentParser):
    """A bad option is one line, `error: ...`, and exit 2 (as coincast's own commands)."""

    def error(self, message: str):
        sys.stderr.write(f"error: {message}\n")
        sys.exit(2)


class HeldClock(SimClock):
    """Simulated time standing still at `at`: the service waits (for commands, or a stop) forever.

    Not virtual (a speed is set), so a training asked for by hand runs in the worker while the
    server answers, as on a wall clock, instead of holding the service until it is done."""

    def __init__(self, at: pd.Timestamp):
        super().__init__(at, speed=1.0)

    def now(self) -> pd.Timestamp:
        return self.start

    def sleep_until(self, when: pd.Timestamp, stop) -> None:
        if when > self.start:
            stop.wait()  # the service's Alarm: a stop, or a command woke it


def first_day(days: int) -> pd.Timestamp:
    return (load("btc-usd").index[-1] - pd.Timedelta(days=days)).normalize()


def served_rows(store: Path) -> int:
    with duckdb.connect(str(store), read_only=True) as con:
        return con.execute("SELECT min(n) FROM (SELECT count(*) AS n FROM forecasts WHERE served GROUP BY stream)").fetchone()[0] or 0


def fill(folder: Path, days: int, log) -> Path:
    """FOLDER/filled/live.duckdb after `days` simulated days (made once, reused while it has them)."""
    store = folder / "filled" / "live.duckdb"
    if store.exists() and served_rows(store) >= days - 7:
        return store
    shutil.rmtree(store.parent, ignore_errors=True)
    store.parent.mkdir(parents=True)
    log(f"filling {store}: {days} simulated days of the demo on virtual time (once; a few minutes)")
    stop = threading.Event()
    with demo_service(store, first_day(days), None, None, lambda line: None, retrain_every=NO_RETRAIN) as (service, until):
        service.run(stop, until=until)
    log(f"filled: {served_rows(store)} served forecasts per stream")
    return store


def main(argv: list[str] | None = None) -> None:
    ap = OneLineParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=Path("runs/load"), help="where the filled store is kept")
    ap.add_argument("--days", type=int, default=1050, help="simulated days in the store (>= 1050: 53 full 1,000-row history pages)")
    ap.add_argument("--train-epochs", type=int, default=1000, help="epochs of a training asked for by hand")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    if not 1050 <= args.days <= 1900:
        ap.error(f"--days {args.days}: give 1050..1900 (53 full 1,000-row pages; three years of history before the first)")
    if args.train_epochs < 1:
        ap.error(f"--train-epochs {args.train_epochs}: give at least 1")
    tokens = load_tokens()
    if tokens.write is None:
        ap.error("set COINCAST_TOKEN to the write token: the benchmark asks for a retrain through the API")
    log = lambda line: print(line, flush=True)  # noqa: E731
    filled = fill(args.folder, args.days, log)

    live = args.folder / "serve"
    shutil.rmtree(live, ignore_errors=True)
    shutil.copytree(filled.parent, live)
    settings = demo_settings()
    settings.train.epochs = settings.train.patience = args.train_epochs
    with bind("127.0.0.1", args.port) as sock:
        start = first_day(args.days)
        with demo_service(live / "live.duckdb", start, None, None, log, settings=settings, retrain_every=NO_RETRAIN,
                          clock=HeldClock(load("btc-usd").index[-1] + pd.Timedelta(days=1) + GRACE)) as (service, _):
            app = create_app(service, tokens)
            log(f"serving on {url(sock)}/")
            serve(service, app, sock, None, log)
    log("stopped cleanly")


if __name__ == "__main__":
    sys.exit(main())
