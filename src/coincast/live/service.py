"""The live service: per stream, fetch, check staleness, score, retrain, shadow, decide, forecast.

Each tick (a candle close plus a grace period) runs every stream's step in turn:

1. fetch the new closed candles into the store (ccxt, retries and backoff as `coincast fetch`),
   re-reading the last two stored ones: a candle the exchange revised after close replaces its row;
2. score: fill the realised fields of forecasts whose candle closed, update each model's
   rolling live record, apply the guard, and decide a challenger whose shadow period is over;
3. collect a finished training (registered as shadow, or as champion if the stream had none)
   and start one when `retrain_every` candles have closed since the last (warm or fresh, in the
   worker process, so forecasting never waits);
4. forecast the candle now open with the champion (or persistence while the guard holds),
   and with the challenger in shadow, both shrunk towards persistence with the a of the
   stream's live record when `model.shrink` is on (`live/skill.py`); a stream whose newest
   candle is older than two bars is stale and gets no forecast; candles that closed while the
   service was down are recorded as missed, never forecast after the fact.

`log` receives one progress line per event. `hold`: simulated clocks only; "all": a training
takes no simulated time (the clock is held while it runs), which makes a replay deterministic;
"first": only the streams' first models do (a demo then forecasts from its first day).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from coincast.data.exchange import FetchError, fetch
from coincast.data.store import Store
from coincast.errors import ConfigError, DataError
from coincast.live import judge, skill
from coincast.live.config import LiveConfig, Stream
from coincast.live.control import Alarm, Control
from coincast.live.registry import Registry, utc
from coincast.live.worker import Worker, default_timeout
from coincast.models.forecaster import Forecaster

REREAD = 2  # stored candles fetched again at each tick, so a revision after close is picked up
MAX_RETRY = pd.Timedelta(hours=1)  # the longest wait between tries of a failing stream


@dataclass
class StreamState:
    stream: Stream
    last_seen: pd.Timestamp | None = None  # newest candle already scored against
    issued: pd.Timestamp | None = None  # newest target forecast (or recorded as stale/missed)
    forecast: pd.Timestamp | None = None  # newest target forecast
    fallback: bool = False  # serving persistence: the guard tripped
    stale: bool = False
    waiting_logged: bool = False
    last_error: str | None = None  # the last fetch, forecast or step failure, until the next success
    failures: int = 0  # the stream's steps that failed in a row
    failure: str | None = None  # while failing: the error of the last failed step
    retry_at: pd.Timestamp | None = None  # while failing: when its step is tried again


class Service:
    def __init__(self, config: LiveConfig, clock, client_for: Callable[[str], object], log: Callable[[str], None] = print,
                 grace: pd.Timedelta = pd.Timedelta(seconds=10), hold: str = "none",
                 threads: int | None = None, fetch_retries: int = 5, fetch_backoff_s: float = 1.0,
                 stale_retry: pd.Timedelta = pd.Timedelta(minutes=5), failure_retry: pd.Timedelta = pd.Timedelta(minutes=1)):
        self.config, self.clock, self.client_for, self._log = config, clock, client_for, log
        if hold != "none" and not getattr(clock, "simulated", False):
            raise ValueError("only a simulated clock can be held for trainings")
        self.grace, self.hold = grace, hold
        self.stale_retry = stale_retry  # how soon a stale stream is checked again (at most bar / 12)
        self.failure_retry = failure_retry  # first wait after a failed step; doubles, up to a bar or MAX_RETRY
        self.fetch_retries, self.fetch_backoff_s = fetch_retries, fetch_backoff_s
        self.states = [StreamState(s) for s in config.streams]
        self.worker = Worker(threads)
        self.jobs: dict[str, StreamState] = {}  # model id in training -> its stream
        self.loaded: dict[str, Forecaster] = {}
        self.clients: dict[str, object] = {}
        # What readers in other threads (the HTTP API) see: the store is open, how many passes over
        # every stream are done (the first catches up after a restart), the loop runs, why it ended.
        self.opened = threading.Event()
        self.passes = 0
        self.running = False
        self.failure: BaseException | None = None
        self.control = Control()

    def log(self, st: StreamState | None, text: str) -> None:
        who = f"{st.stream.name:<8} " if st else ""
        self._log(f"[{self.clock.now():%Y-%m-%d %H:%M}] {who}{text}")

    # -- the loop ------------------------------------------------------------------------
    def run(self, stop: threading.Event, until: pd.Timestamp | None = None) -> None:
        """Run until `stop` is set (SIGINT/SIGTERM) or the clock passes `until`; each step finishes first.

        Between ticks it sleeps; a command from another thread (`self.control.call`) wakes it, runs
        in this thread, and the sleep goes on."""
        alarm = Alarm(stop, self.control.wake)
        try:
            with Store(self.config.store) as store:
                self.store, self.reg = store, Registry(store)
                for model_id in self.reg.discard_unfinished(self.clock.now()):
                    self.log(None, f"discarded unfinished training {model_id}; it is redone")
                for st in self.states:
                    self._isolated(st, self._resume)
                self.opened.set()
                self.running = self.control.accepting = True
                self.worker.start()  # its start-up (imports) overlaps the first fetch
                try:
                    due = None
                    while not stop.is_set():
                        # cleared before the queue is read: a command queued from here on wakes the sleep below
                        self.control.wake.clear()
                        self.control.run_pending()
                        if due is None or self.clock.now() >= due:
                            for st in self.states:
                                if stop.is_set():
                                    break
                                if st.retry_at is None or self.clock.now() >= st.retry_at:
                                    self._isolated(st, self.step)
                                self.control.run_pending()  # a command sent during the step: answered now
                            self._collect()
                            self.passes += 1
                            due = min(self._next_due(st) for st in self.states)
                            if until is not None and due > until:
                                break
                            continue  # commands that came during the pass run before the sleep
                        self.clock.sleep_until(due, alarm)
                finally:
                    self.running = False
                    self.control.close()
                    self.worker.stop()
        except BaseException as exc:
            self.failure = exc
            raise

    def state(self, name: str) -> StreamState:
        """The stream called `name` (ConfigError naming the streams there are)."""
        for st in self.states:
            if st.stream.name == name:
                return st
        raise ConfigError(f"no stream {name!r}; streams: {', '.join(s.stream.name for s in self.states)}")

    def _resume(self, st: StreamState) -> None:
        """Pick up where a previous run stopped: fallback state, newest target, champion loads."""
        name = st.stream.name
        flags = self.reg.decisions(name)
        flags = flags[flags["kind"].isin(["fallback", "fallback_end"])]
        st.fallback = not flags.empty and flags["kind"].iloc[-1] == "fallback"
        st.issued = self._newest_target(name)
        (newest,) = self.reg.con.execute("SELECT max(target_time) FROM forecasts WHERE stream = ?", [name]).fetchone()
        st.forecast = utc(newest)

    def _isolated(self, st: StreamState, phase: Callable[[StreamState], None]) -> None:
        """Run one stream's `phase`; an error ends that stream's step, never the loop: it is
        recorded, shown in the stream's state, and the stream is tried again after a backoff."""
        try:
            phase(st)
        except Exception as exc:  # anything: a broken model file, a missing folder, a bug in one stream's data
            self._failed(st, exc)
            return
        if st.failures:
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
        self.log(st, f"FAILED: {text}; next try in {wait} (the other streams go on)")

    def _next_due(self, st: StreamState) -> pd.Timestamp:
        if st.retry_at is not None:
            return st.retry_at
        now, bar = self.clock.now(), st.stream.bar
        if st.stale:
            return now + min(bar / 12, self.stale_retry)
        return now.floor(bar) + bar + self.grace if now >= now.floor(bar) + self.grace else now.floor(bar) + self.grace

    def step(self, st: StreamState) -> None:
        s = st.stream
        exchange, symbol, timeframe = s.market
        self._fetch(st)
        last = self.store.last_open_time(exchange, symbol, timeframe)
        if last is None:
            return
        champion = self.reg.with_status(s.name, "champion")
        if champion is not None:
            self.model(champion["id"])  # a champion that does not load fails the step now, not at the next forecast
        if st.last_seen != last:
            self._score(st, last)
            st.last_seen = last
        self._collect()
        self._train_if_due(st, last)
        self._forecast(st, last)

    # -- 1. fetch --------------------------------------------------------------------------
    def _fetch(self, st: StreamState) -> None:
        s = st.stream
        exchange, symbol, timeframe = s.market
        if exchange not in self.clients:  # one client per exchange: markets load once, rate limits hold
            self.clients[exchange] = self.client_for(exchange)
        client = self.clients[exchange]
        newest = self.store.last_open_time(exchange, symbol, timeframe)
        # Re-read the last REREAD stored candles: one the exchange revised after close replaces its row.
        since = s.since if newest is None else newest - REREAD * s.bar
        try:
            got = fetch(client, symbol, timeframe, since=since, store=self.store.path,
                        retries=self.fetch_retries, backoff_s=self.fetch_backoff_s, progress=False)
        except FetchError as exc:
            st.last_error = f"fetch failed: {exc}"
            self.log(st, st.last_error)
            return
        st.last_error = None
        if got.inserted or got.replaced:
            self.log(st, f"fetched {got.inserted} new candle(s){f', {got.replaced} revised' if got.replaced else ''}; "
                         f"newest opens {got.last:%Y-%m-%d %H:%M}")

    # -- 2. score, guard, shadow decisions --------------------------------------------------
    def _score(self, st: StreamState, last: pd.Timestamp) -> None:
        s, now = st.stream, self.clock.now()
        if not self.reg.realise(s.name, *s.market, now):
            return
        champion = self.reg.with_status(s.name, "champion")
        if champion is not None:
            rec = self.reg.live_record(s.name, champion["id"], s.guard)
            if rec["n"]:  # (a champion promoted by hand may have no realised forecast yet)
                self.log(st, f"scored through {last:%Y-%m-%d %H:%M}: champion {champion['id']} live RMSE "
                             f"{_ratio(rec)} persistence's over its last {rec['n']} (DM p {_p(rec.get('dm_p_better'))}), "
                             f"direction {rec['direction_accuracy']:.0%}")
            self._guard(st, champion["id"], rec)
        shadow = self.reg.with_status(s.name, "shadow")
        if shadow is not None:
            self.reg.live_record(s.name, shadow["id"], s.guard)
            if champion is not None:
                self._judge_shadow(st, shadow["id"], champion["id"])

    def _guard(self, st: StreamState, champion: str, rec: dict) -> None:
        s, now = st.stream, self.clock.now()
        if not st.fallback and judge.guard_trips(rec, s.guard):
            st.fallback = True
            self.reg.decide(s.name, now, "fallback", champion, figures=rec,
                            reason=f"live RMSE {rec['rmse_ratio']:.3f}x persistence over {rec['n']} forecasts, "
                                   f"DM p {rec['dm_p_worse']:.3g} < {judge.ALPHA}: serving persistence")
            self.log(st, f"GUARD: {champion} is significantly worse than persistence; serving persistence (fallback)")
        elif st.fallback and judge.guard_clears(rec, s.guard):
            st.fallback = False
            self.reg.decide(s.name, now, "fallback_end", champion, figures=rec, reason="the champion beats persistence again")
            self.log(st, f"guard lifted: {champion} beats persistence again")

    def _judge_shadow(self, st: StreamState, challenger: str, champion: str) -> None:
        s, now = st.stream, self.clock.now()
        rows = self.reg.scored(s.name, challenger)
        verdict = judge.shadow_verdict(rows, self.reg.scored(s.name, champion), s.shadow)
        if verdict is None:
            return
        both = (f"shadow RMSE {verdict['challenger_rmse']:,.2f} vs champion {verdict['champion_rmse']:,.2f} "
                f"on the same {verdict['n']} candles (persistence {verdict['persistence_rmse']:,.2f}, DM p {verdict['dm_p']:.3g})")
        if verdict["promote"]:
            lifted = st.fallback and verdict["challenger_rmse"] < verdict["persistence_rmse"]
            with self.reg.transaction():  # a kill never leaves a stream with no champion, or two
                self.reg.set_status(champion, "retired")
                self.reg.set_status(challenger, "champion")
                self.reg.decide(s.name, now, "promotion", challenger, champion, figures=verdict, reason=both)
                if lifted:
                    self.reg.decide(s.name, now, "fallback_end", challenger, figures=verdict,
                                    reason="the promoted model's shadow record beats persistence")
            self.loaded.pop(champion, None)
            st.fallback = st.fallback and not lifted
            self.log(st, f"DECISION: promoted {challenger} over {champion}: {both}")
        else:
            why = "tie" if verdict["tie"] else "challenger worse"
            with self.reg.transaction():
                self.reg.set_status(challenger, "retired")
                self.reg.decide(s.name, now, "rejection", challenger, champion, figures=verdict, reason=f"kept: {why}: {both}")
            self.loaded.pop(challenger, None)
            self.log(st, f"DECISION: kept {champion} ({why}), retired {challenger}: {both}")

    # -- 3. training -------------------------------------------------------------------------
    def _train_if_due(self, st: StreamState, last: pd.Timestamp) -> None:
        self.train(st, last)

    def next_retrain(self, name: str) -> pd.Timestamp | None:
        """Open time of the last candle the stream's next scheduled training will see (None: no model yet)."""
        models = self.reg.models(name)
        scheduled = models[models["status"] != "discarded"]
        if scheduled.empty:
            return None
        st = self.state(name)
        return utc(scheduled["trained_through"].max()) + st.stream.retrain_every * st.stream.bar

    def train(self, st: StreamState, last: pd.Timestamp, force: bool = False) -> str | None:
        """Start a training if one is due (or `force`d: by hand) and none is running; its model id."""
        s, now = st.stream, self.clock.now()
        if self.worker.busy or any(self.reg.with_status(s.name, k) is not None for k in ("training", "shadow")):
            return None
        champion = self.reg.with_status(s.name, "champion")
        due = self.next_retrain(s.name)
        if not force and champion is not None and due is not None and last < due:
            return None
        candles = self.store.candles(*s.market)
        warm = s.refit == "warm" and champion is not None
        model_id = self.reg.new_model(s.name, now, last, s.settings.to_dict())
        self.jobs[model_id] = st
        self.worker.submit({"id": model_id, "settings": s.settings.to_dict(), "candles": candles,
                            "init": str(self.reg.folder(champion["id"])) if warm else None,
                            "staging": str(self.reg.staging(model_id))}, self.train_timeout(s, len(candles)))
        kind = "first model" if champion is None else f"challenger to {champion['id']}, {'warm' if warm else 'fresh'}"
        kind += ", by hand" if force else ""
        self.log(st, f"training {model_id} on {len(candles)} candles through {last:%Y-%m-%d %H:%M} ({kind})")
        if self.hold == "all" or (self.hold == "first" and champion is None):
            with self.clock.held():
                self._collect(block=True)
        return model_id

    @staticmethod
    def train_timeout(s: Stream, candles: int) -> float:
        """Seconds a training of the stream on `candles` candles may take: its train_timeout, or
        a default from its size (`live.worker.default_timeout`)."""
        if s.train_timeout is not None:
            return pd.Timedelta(s.train_timeout).total_seconds()
        return default_timeout(candles, s.settings.train.epochs)

    def _collect(self, block: bool = False) -> None:
        result = self.worker.wait() if block else self.worker.poll()
        if result is None:
            return
        st = self.jobs.pop(result["id"])
        name, now, model_id = st.stream.name, self.clock.now(), result["id"]
        first = self.reg.with_status(name, "champion") is None
        fig = result.get("figures")
        if result["ok"]:
            try:
                with self.reg.transaction():  # registered and recorded together (the files move first)
                    self.reg.finish_model(model_id, fig, "champion" if first else "shadow")
                    if first:
                        self.reg.decide(name, now, "first", model_id, figures=fig,
                                        reason="the stream's first model: nothing to compare with")
            except OSError as exc:  # its staging folder is gone or cannot be moved: a failed training
                result = {"ok": False, "reason": f"its files could not be moved into place ({exc})"}
        if not result["ok"]:
            with self.reg.transaction():
                self.reg.set_status(model_id, "failed")
                self.reg.decide(name, now, "failure", model_id, reason=result["reason"])
            self.log(st, f"training {model_id} FAILED: {result['reason']}")
            return
        role = "champion (first model)" if first else f"shadow for the next {st.stream.shadow} candles"
        self.log(st, f"model {model_id} trained in {fig['seconds']:.1f} s ({fig['epochs_run']} epochs, "
                     f"{fig['windows']} windows): {role}")

    def model(self, model_id: str) -> Forecaster:
        if model_id not in self.loaded:
            self.loaded[model_id] = Forecaster.load(self.reg.folder(model_id))
        return self.loaded[model_id]

    # -- 4. forecast -------------------------------------------------------------------------
    def _forecast(self, st: StreamState, last: pd.Timestamp) -> None:
        s, now = st.stream, self.clock.now()
        name, target = s.name, now.floor(s.bar)
        if st.forecast is not None and st.forecast >= target:
            return  # this candle already has its forecast
        champion = self.reg.with_status(name, "champion")
        if champion is None:
            if not st.waiting_logged:
                self.log(st, "no model yet: forecasts start once the first training is done")
                st.waiting_logged = True
            return
        self._record_missed(st, target)
        st.stale = now - last > 2 * s.bar
        if st.stale and st.issued is not None and st.issued >= target:
            return  # recorded as stale already; checked again soon
        if st.stale:
            self.reg.decide(name, now, "stale", champion["id"], target_time=target,
                            reason=f"newest candle opens {last:%Y-%m-%d %H:%M}, {now - last} ago: more than two bars")
            self.log(st, f"STALE: newest candle opens {last:%Y-%m-%d %H:%M}; no forecast for {target:%Y-%m-%d %H:%M}")
            st.issued = target
            return
        candles = self.store.candles(*s.market)
        rows, shadow = [], self.reg.with_status(name, "shadow")
        record = skill.record_a(self.reg, name, target)  # (a, forecasts it is fitted on): targets before this one
        for row, m in ((not st.fallback, champion), (False, shadow)):
            if m is None:
                continue
            try:
                rows.append(self._row(st, m, candles, target, record, served=row, role=m["status"]))
            except DataError as exc:
                st.last_error = f"no forecast from {m['id']}: {exc}"
                self.reg.decide(name, now, "no_forecast", m["id"], target_time=target, reason=str(exc))
                self.log(st, f"no forecast from {m['id']}: {exc}")
        if st.fallback:
            close = float(candles["close"].iloc[-1])
            rows.append({"model": "persistence", "role": "fallback", "served": True, "point": close,
                         **{k: None for k in ("lo80", "hi80", "lo95", "hi95", "network", "shrink")},
                         **self._common(st, target, last, close)})
        if shadow is not None and pd.isna(shadow["shadow_from"]):
            self.reg.set_status(shadow["id"], "shadow", shadow_from=target)
        self.reg.issue(rows)
        st.issued = st.forecast = target
        for r in rows:
            what = "serves" if r["served"] else "shadow"
            band = f" (80% {r['lo80']:,.2f}..{r['hi80']:,.2f})" if r["lo80"] is not None else ""
            a = f"; shrunk a {r['shrink']:.3f} (live record of {r['record_n']})" if r.get("record_n") is not None else ""
            self.log(st, f"forecast for the {target:%Y-%m-%d %H:%M} candle's close: {r['point']:,.2f}{band} by {r['model']} [{what}]; "
                         f"persistence {r['persistence']:,.2f}{a}")

    def _common(self, st, target, last, close) -> dict:
        return {"stream": st.stream.name, "target_time": target, "issued_at": self.clock.now(),
                "data_through": last, "persistence": close}

    def _row(self, st: StreamState, m: dict, candles: pd.DataFrame, target, record: tuple[float, int],
             served: bool, role: str) -> dict:
        """The model's forecast row: its network's price shrunk with the record's a (`model.shrink`
        on) or as it is (a = 1), the conformal band around that point."""
        f = self.model(m["id"])
        fc = f.forecast_next(candles, network=True)
        if pd.Timestamp(fc["date"]) != target:
            raise DataError(f"the model forecasts {fc['date']}, not the open candle {target}")
        shrinks = f.settings.model.shrink
        a = record[0] if shrinks else 1.0
        close = fc["last_price"]
        return {"model": m["id"], "role": role, "served": served,
                **skill.served(fc["network_price"], close, a, json.loads(m["figures"] or "{}")),
                "record_n": record[1] if shrinks else None, **self._common(st, target, candles.index[-1], close)}

    def _record_missed(self, st: StreamState, target: pd.Timestamp) -> None:
        """Candles between the newest forecast target and this one closed unforecast: missed."""
        if st.issued is None:
            return
        t = st.issued + st.stream.bar
        while t < target:
            self.reg.decide(st.stream.name, self.clock.now(), "missed", target_time=t,
                            reason="the candle closed while the service was down or behind; never forecast after the fact")
            self.log(st, f"missed {t:%Y-%m-%d %H:%M} (closed while the service was not running)")
            t += st.stream.bar

    def _newest_target(self, name: str) -> pd.Timestamp | None:
        (a,) = self.reg.con.execute("SELECT max(target_time) FROM forecasts WHERE stream = ?", [name]).fetchone()
        (b,) = self.reg.con.execute("SELECT max(target_time) FROM decisions WHERE stream = ? AND kind IN "
                                    "('stale', 'missed', 'no_forecast')", [name]).fetchone()
        times = [utc(x) for x in (a, b) if x is not None]
        return max(times) if times else None


def _ratio(rec: dict) -> str:
    return f"{rec['rmse_ratio']:.3f}x" if rec.get("rmse_ratio") is not None else "n/a x"


def _p(p) -> str:
    return "n/a" if p is None else f"{p:.3g}"
