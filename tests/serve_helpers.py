"""A demo service for the serve tests: the real service, replay exchange (real ccxt client on
127.0.0.1), DuckDB and worker process, with the tiny model, on a simulated clock that moves only
when a test advances it (so what the API shows is known when a test looks)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from coincast.api.app import create_app
from coincast.api.auth import Tokens
from coincast.live.clock import SimClock
from coincast.live.demo import GRACE, demo_service
from tests.conftest import tiny

START = pd.Timestamp("2025-06-01", tz="UTC")
DAY = pd.Timedelta(days=1)


class StepClock(SimClock):
    """Virtual time that runs only up to `limit`: the service's sleep waits there until `advance`."""

    def __init__(self, start: pd.Timestamp):
        super().__init__(start, None)
        self.limit = self.start
        self._cond = threading.Condition()
        self._waiting = False

    def sleep_until(self, when: pd.Timestamp, stop) -> None:
        with self._cond:
            while when > self.limit and not stop.is_set():
                self._waiting = True
                self._cond.notify_all()
                self._cond.wait(0.05)
            self._waiting = False
        if when <= self.limit:
            with self._lock:
                self._virtual = max(self._virtual, when)

    def settle(self, timeout: float = 120) -> None:
        """Wait until the service sleeps at the limit (everything due by then is done)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._waiting, timeout):
                raise TimeoutError("the service did not reach the clock's limit")

    def advance(self, by: pd.Timedelta, timeout: float = 120) -> None:
        with self._cond:
            self.limit += by
            self._waiting = False
            self._cond.notify_all()
        self.settle(timeout)


@contextmanager
def demo_api(store: Path, days: int, tokens: Tokens = Tokens(), head: bool = False):
    """The demo's two streams served by an app; the clock advanced `days` candles past the start
    (`head`: the network's risk head on, as in the demo itself; off, GARCH-t's distribution)."""
    clock = StepClock(START + GRACE)
    settings = tiny(window=20, model={"shrink": False}, train={"shards": 1})
    lines: list[str] = []
    stop = threading.Event()
    with demo_service(store, START, None, None, lines.append, settings=settings, retrain_every=7, shadow=3,
                      guard=10, clock=clock, head=head) as (service, _):
        thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
        thread.start()
        app = create_app(service, tokens)
        try:
            clock.settle()
            clock.advance(days * DAY)
            yield SimpleNamespace(service=service, clock=clock, app=app, lines=lines, store=store)
        finally:
            stop.set()
            thread.join(timeout=60)
            app.state.reader.close()
