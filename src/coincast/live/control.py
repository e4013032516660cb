"""Commands for a running service from other threads (the HTTP API): retrain, promote, roll back.

The service's thread is the store's one writer, so a command never runs in the caller's thread:
`Control.call` queues it, wakes the service's wait between ticks (`Alarm`) and returns its result
(or raises its error) once the service thread has run it. A command waits for the step in
progress (at most `timeout` seconds), never for a training: trainings run in the worker process.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, Callable

from coincast.errors import CoincastError
from coincast.live import training

if TYPE_CHECKING:
    from coincast.live.service import Service

POLL_S = 0.25  # how often a wait woken only by `wake` looks at the stop event as well


class Busy(CoincastError):
    """The service did not reach the command in time (a long step, or it has stopped)."""


class Refused(CoincastError):
    """The command does not apply now (a challenger is already training, nothing to roll back...)."""


class Alarm:
    """What the service's sleep waits on: the stop event or a wake-up from `Control.call`.

    Quacks like the threading.Event clocks wait on (`wait`, `is_set`)."""

    def __init__(self, stop: threading.Event, wake: threading.Event):
        self.stop, self.wake = stop, wake

    def is_set(self) -> bool:
        return self.stop.is_set() or self.wake.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = POLL_S if end is None else min(POLL_S, end - time.monotonic())
            if left <= 0:
                return False
            self.wake.wait(left)
        return True


class Control:
    """The queue of commands for the service thread."""

    def __init__(self):
        self.wake = threading.Event()
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self.accepting = False  # True while the service loop runs

    def call(self, command: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run `command` in the service thread; its result, or its exception raised here."""
        if not self.accepting:
            raise Busy("the live service is not running (starting, stopped or failed): see /ready")
        future: Future = Future()
        self._queue.put((command, future))
        self.wake.set()
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            future.cancel()
            raise Busy(f"the live service did not take the command within {timeout:g} s (a long step); retry") from None

    def run_pending(self) -> None:
        """In the service thread: run every queued command."""
        while True:
            try:
                command, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(command())
            except Exception as exc:  # handed to the caller, who turns it into an answer
                future.set_exception(exc)

    def close(self) -> None:
        """The loop ended: refuse new commands and fail the queued ones."""
        self.accepting = False
        while True:
            try:
                _, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(Busy("the live service stopped before running the command"))


# -- the commands (each runs in the service thread) -------------------------------------------
def retrain(service: Service, stream: str) -> str:
    """Start a training for `stream` now; returns the new model id."""
    st = service.state(stream)
    name = st.stream.name
    if len(service.jobs) >= service.worker.capacity:
        raise Refused(f"the trainings executor is full ({', '.join(service.jobs)} training): retry when one has finished")
    for status in ("training", "shadow"):
        m = service.reg.with_status(name, status)
        if m is not None:
            raise Refused(f"{m['id']} is in {status} for {name}: one challenger at a time; retry after its decision")
    last = service.store.last_open_time(*st.stream.market)
    if last is None:
        raise Refused(f"stream {name} has no candles yet: nothing to train on")
    model_id = training.train(service, st, last, force=True)
    if model_id is None:
        raise Refused(f"no training started for {name}")
    return model_id


def promote(service: Service, model_id: str, by: str, reason: str) -> dict:
    """Make a shadow or retired model its stream's champion by hand (recorded with who and why)."""
    row = service.reg.promotable(model_id)
    service.model(model_id)  # its files load, or nothing changes
    replaced = service.reg.swap(row["stream"], model_id, service.clock.now(), "manual_promotion", by, reason)
    return {"stream": row["stream"], "champion": model_id, "retired": replaced}


def rollback(service: Service, model_id: str, by: str, reason: str) -> dict:
    """`model_id` is its stream's champion: give the role back to the champion it replaced."""
    row = service.reg.model_row(model_id)
    stream = row["stream"]
    previous, champion = service.reg.previous_champion(stream)
    if champion != model_id:
        raise Refused(f"{model_id} is not the champion of {stream} ({champion} is): only the champion can be rolled back")
    service.model(previous)
    service.reg.swap(stream, previous, service.clock.now(), "rollback", by, reason)
    return {"stream": stream, "champion": previous, "retired": model_id}
