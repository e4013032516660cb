"""The live service: its loop over the streams, and each stream's step in its phases.

Each tick (a candle close plus a grace period) runs every stream's step; each phase has its
module:

1. fetch the new closed candles into the store (`live/fetching.py`): the fetches of a pass run
   side by side in `fetch_threads` threads, so one slow exchange or market holds back only its
   own stream; the phases below run on the service's thread, one stream at a time, each stream's
   as soon as its own fetch is in (a daily stream's after the steps of its market's hourly
   streams: its realized measures come from their candles), in config order among those ready;
2. score the forecasts whose candle closed, apply the guard, decide a challenger whose shadow
   period is over (`live/scoring.py`);
3. collect finished trainings and start one when due (`live/training.py`: in the worker
   process or as Ray tasks, the `[service]` table's executor, so forecasting never waits);
4. forecast the candle now open (`live/forecasting.py`).

One stream's failure stays in its stream: any error in its step is recorded (a `failure`
decision, once per kind of error; the stream's `last_error`, which /ready and the dashboard
show), and the stream is tried again after a backoff (`failure_retry`, doubling, at most a bar
or MAX_RETRY) while the other streams go on. Commands from other threads (the HTTP API) run in
this thread right after the step in progress.

`log`: None sends each event through `logging` (`live/log.py`: a level and a timestamp on each
line); a callable receives the readable line instead (tests, embedding). `hold`: simulated
clocks only; "all": a training takes no simulated time (the clock is held while it runs), which
makes a replay deterministic; "first": only the streams' first models do (a demo then forecasts
from its first day).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import Callable

import pandas as pd

from coincast.data.store import Store
from coincast.errors import ConfigError
from coincast.live import fetching, forecasting, scoring, training
from coincast.live.config import LiveConfig, Stream
from coincast.live.control import Alarm, Control
from coincast.live.log import LOGGER, line
from coincast.live.registry import Registry
from coincast.live.risk import DAY, RiskFit
from coincast.live.worker import duration
from coincast.models.forecaster import Forecaster

MAX_RETRY = pd.Timedelta(hours=1)  # the longest wait between tries of a failing stream
FETCH_THREADS = 4  # fetches a pass runs at once (each thread has its own ccxt client per exchange)


def hourly_companions(streams: list[Stream]) -> dict[str, list[str]]:
    """Stream name -> the 1h streams of its exchange and symbol where it is daily (else none): a
    daily stream's realized measures come from their candles (`forecasting.intraday`), so its
    step comes after theirs in a pass."""
    hourly: dict[tuple[str, str], list[str]] = {}
    for s in streams:
        exchange, symbol, timeframe = s.market
        if timeframe == "1h":
            hourly.setdefault((exchange, symbol), []).append(s.name)
    return {s.name: hourly.get(s.market[:2], []) if s.bar == DAY else [] for s in streams}


@dataclass
class StreamState:
    stream: Stream
    last_seen: pd.Timestamp | None = None  # newest candle already scored against
    issued: pd.Timestamp | None = None  # newest target forecast (or recorded as stale/missed)
    forecast: pd.Timestamp | None = None  # newest target forecast
    fallback: bool = False  # serving persistence: the guard tripped
    risk_fallback: bool = False  # serving GARCH-t's distribution: the risk guard tripped
    stale: bool = False
    waiting_logged: bool = False
    last_error: str | None = None  # the last fetch, forecast or step failure, until the next success
    failures: int = 0  # the stream's steps that failed in a row
    failure: str | None = None  # while failing: the error of the last failed step
    retry_at: pd.Timestamp | None = None  # while failing: when its step is tried again
    resumed: bool = False  # picked up where a previous run stopped (`Service._resume`)


class Service:
    def __init__(self, config: LiveConfig, clock, client_for: Callable[[str], object],
                 log: Callable[[str], None] | None = None, grace: pd.Timedelta = pd.Timedelta(seconds=10),
                 hold: str = "none", threads: int | None = None, fetch_retries: int = 5, fetch_backoff_s: float = 1.0,
                 stale_retry: pd.Timedelta = pd.Timedelta(minutes=5), failure_retry: pd.Timedelta = pd.Timedelta(minutes=1),
                 fetch_threads: int = FETCH_THREADS):
        self.config, self.clock, self.client_for, self._log = config, clock, client_for, log
        if hold != "none" and not getattr(clock, "simulated", False):
            raise ValueError("only a simulated clock can be held for trainings")
        self.grace, self.hold = grace, hold
        self.stale_retry = stale_retry  # how soon a stale stream is checked again (at most bar / 12)
        self.failure_retry = failure_retry  # first wait after a failed step; doubles, up to a bar or MAX_RETRY
        self.fetch_retries, self.fetch_backoff_s, self.fetch_threads = fetch_retries, fetch_backoff_s, fetch_threads
        self.companions = hourly_companions(config.streams)
        self.states = [StreamState(s) for s in config.streams]
        self.worker = training.executor(config.service, threads)  # the local worker or Ray tasks
        self.jobs: dict[str, StreamState] = {}  # model id in training -> its stream
        self.held: set[str] = set()  # trainings that take no simulated time (`hold`): collected with the clock held
        self.loaded: dict[str, Forecaster] = {}
        # model id -> its risk models, fitted once (live/risk.py), or why they could not be
        self.risk_fits: dict[str, RiskFit | str] = {}
        self._clients = threading.local()  # each fetch thread's ccxt clients, by exchange
        self._fetcher: ThreadPoolExecutor | None = None  # the fetch threads, while `run` runs
        # What readers in other threads (the HTTP API) see: the store is open, how many passes over
        # every stream are done (the first catches up after a restart), the loop runs, why it ended.
        self.opened = threading.Event()
        self.passes = 0
        self.running = False
        self.failure: BaseException | None = None
        self.control = Control()

    def log(self, st: StreamState | None, text: str, level: int = logging.INFO) -> None:
        """One event: through `logging` with its level, or as a readable line to the `log` given."""
        now, name = self.clock.now(), st.stream.name if st else None
        if self._log is None:
            LOGGER.log(level, text, extra={"stream": name, "service_time": now})
        else:
            self._log(line(now, name, text))

    # -- the loop ------------------------------------------------------------------------
    def run(self, stop: threading.Event, until: pd.Timestamp | None = None) -> None:
        """Run until `stop` is set (SIGINT/SIGTERM) or the clock passes `until`; each step finishes first.

        Between ticks it sleeps; a command from another thread (`self.control.call`) wakes it and
        runs in this thread; during a pass, commands run right after the step in progress."""
        alarm = Alarm(stop, self.control.wake)
        try:
            with Store(self.config.store) as store:
                self.store, self.reg = store, Registry(store)
                for model_id in self.reg.discard_unfinished(self.clock.now()):
                    self.log(None, f"discarded unfinished training {model_id}; it is redone", logging.WARNING)
                for st in self.states:
                    self._isolated(st, self._resume)
                self._fetcher = ThreadPoolExecutor(self.fetch_threads, thread_name_prefix="coincast-fetch")
                self.opened.set()
                self.running = self.control.accepting = True
                self.worker.start()  # its start-up (imports, Ray) overlaps the first fetch
                try:
                    due = None
                    while not stop.is_set():
                        # cleared before the queue is read: a command queued from here on wakes the sleep below
                        self.control.wake.clear()
                        self.control.run_pending()
                        if due is None or self.clock.now() >= due:
                            self._pass(stop)
                            due = min(self._next_due(st) for st in self.states)
                            if until is not None and due > until:
                                break
                            continue  # commands that came during the pass run before the sleep
                        self.clock.sleep_until(due, alarm)
                finally:
                    self.running = False
                    self._fetcher.shutdown(cancel_futures=True)  # a fetch under way finishes first
                    self.control.close()
                    self.worker.stop()
        except BaseException as exc:
            self.failure = exc
            raise

    def _pass(self, stop: threading.Event) -> None:
        """Every stream's step (a failing stream's only once its retry is due): the fetches side by
        side in the fetch threads, each stream's step once its fetch is in, commands between steps."""
        waiting: dict[str, Future] = {}  # stream name -> its fetch, until its step has run
        for st in self.states:
            if st.retry_at is None or self.clock.now() >= st.retry_at:
                self._isolated(st, partial(self._start, waiting), recovers=False)
        while waiting:
            if stop.is_set():
                for fetched in waiting.values():  # those not started yet are dropped
                    fetched.cancel()
                break
            st = self._ready(waiting)
            self._isolated(st, partial(self._fetched, waiting.pop(st.stream.name)))
            self.control.run_pending()  # a command sent during the step: answered now
        training.collect(self, block=True)  # held trainings end with the pass
        self.passes += 1

    def _start(self, waiting: dict[str, Future], st: StreamState) -> None:
        """Hand the stream's fetch to a fetch thread (its resume first, if it failed at start)."""
        if not st.resumed:
            self._resume(st)
        waiting[st.stream.name] = self._fetcher.submit(fetching.start(self, st))

    def _fetched(self, fetched: Future, st: StreamState) -> None:
        """The rest of the stream's step once its fetch is in."""
        fetching.record(self, st, fetched)
        self.step(st)

    def _ready(self, waiting: dict[str, Future]) -> StreamState:
        """The first waiting stream, in config order, whose fetch is in and whose hourly companions'
        steps are done; waits for the next fetch while there is none."""
        while True:
            for st in self.states:
                name = st.stream.name
                if name in waiting and waiting[name].done() and not any(o in waiting for o in self.companions[name]):
                    return st
            wait([f for f in waiting.values() if not f.done()], return_when=FIRST_COMPLETED)

    def client(self, exchange: str):
        """This thread's ccxt client for `exchange`, made on first use: a ccxt client is not safe to
        share between threads, so each fetch thread has its own."""
        clients = self._clients.__dict__.setdefault("by_exchange", {})
        if exchange not in clients:
            clients[exchange] = self.client_for(exchange)
        return clients[exchange]

    def state(self, name: str) -> StreamState:
        """The stream called `name` (ConfigError naming the streams there are)."""
        for st in self.states:
            if st.stream.name == name:
                return st
        raise ConfigError(f"no stream {name!r}; streams: {', '.join(s.stream.name for s in self.states)}")

    def _resume(self, st: StreamState) -> None:
        """Pick up where a previous run stopped: fallback state, newest target issued or recorded."""
        name = st.stream.name
        st.fallback = self.reg.in_fallback(name)
        st.risk_fallback = self.reg.in_fallback(name, "risk_fallback")
        st.issued, st.forecast = self.reg.newest_target(name), self.reg.newest_forecast(name)
        st.resumed = True

    def step(self, st: StreamState) -> None:
        """One stream's tick once its fetch is in: score, training hand-off, forecast."""
        s = st.stream
        last = self.store.last_open_time(*s.market)
        if last is None:
            return
        champion = self.reg.with_status(s.name, "champion")
        if champion is not None:
            self.model(champion["id"])  # a champion that does not load fails the step now, not at the next forecast
        if st.last_seen != last:
            scoring.score(self, st, last)
            st.last_seen = last
        training.collect(self)
        training.train(self, st, last)
        forecasting.forecast(self, st, last)

    def model(self, model_id: str) -> Forecaster:
        """The model, loaded once (ModelFileError when its files do not load)."""
        if model_id not in self.loaded:
            self.loaded[model_id] = Forecaster.load(self.reg.folder(model_id))
        return self.loaded[model_id]

    # -- failures and timing -----------------------------------------------------------------
    def _isolated(self, st: StreamState, phase: Callable[[StreamState], None], recovers: bool = True) -> None:
        """Run one stream's `phase`; an error ends that stream's step, never the loop: it is
        recorded, shown in the stream's state, and the stream is tried again after a backoff.
        `recovers`: the phase ends the step, so its success ends a failing stream's failure."""
        try:
            phase(st)
        except Exception as exc:  # anything: a broken model file, a missing folder, a bug in one stream's data
            self._failed(st, exc)
            return
        if recovers and st.failures:
            self.log(st, f"recovered after {st.failures} failed attempt(s)")
            self.reg.decide(st.stream.name, self.clock.now(), "recovered",
                            reason=f"the stream's step succeeded again after {st.failures} failed attempt(s)")
            st.failures, st.failure, st.retry_at, st.last_error = 0, None, None, None

    def _failed(self, st: StreamState, exc: Exception) -> None:
        now = self.clock.now()
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        first = text != st.failure  # recorded once per kind of failure, not at every retry
        st.failures, st.failure = st.failures + 1, text
        longest = max(self.failure_retry, min(st.stream.bar, MAX_RETRY))
        wait = min(self.failure_retry * 2 ** min(st.failures - 1, 16), longest)
        st.retry_at = now + wait
        st.last_error = f"{text} (failed {st.failures} time(s); next try {st.retry_at:%Y-%m-%d %H:%M})"
        if first:
            self.reg.decide(st.stream.name, now, "failure",
                            reason=f"the stream's step failed: {text}; it is retried with a backoff, other streams go on")
        self.log(st, f"FAILED: {text}; next try in {duration(wait.total_seconds())} (the other streams go on)", logging.ERROR)

    def _next_due(self, st: StreamState) -> pd.Timestamp:
        if st.retry_at is not None:
            return st.retry_at
        now, bar = self.clock.now(), st.stream.bar
        if st.stale:
            return now + min(bar / 12, self.stale_retry)
        return now.floor(bar) + bar + self.grace if now >= now.floor(bar) + self.grace else now.floor(bar) + self.grace
