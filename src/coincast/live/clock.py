"""Clocks the live service and the replay exchange share: the wall clock, or a simulated one.

A simulated clock starts at a given time and runs `speed` simulated seconds per real second;
with no speed it is virtual: time stands still while work is done and jumps forward when
the service sleeps, so a simulated month takes as long as its work (tests, benchmarks).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pandas as pd


class WallClock:
    """Real UTC time; sleeping waits for real (a stop event ends the wait at once)."""

    simulated = False

    def now(self) -> pd.Timestamp:
        return pd.Timestamp.now(tz="UTC")

    def ms(self) -> int:
        return time.time_ns() // 1_000_000

    def sleep_until(self, when: pd.Timestamp, stop: threading.Event) -> None:
        stop.wait(max(0.0, (when - self.now()).total_seconds()))


class SimClock:
    """Simulated UTC time from `start`: `speed` simulated seconds per real second, or virtual (None)."""

    simulated = True

    def __init__(self, start: str | pd.Timestamp, speed: float | None = None, t0: float | None = None):
        stamp = pd.Timestamp(start)
        self.start = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        self.speed = speed
        self._lock = threading.Lock()
        self._virtual = self.start  # the virtual clock's reading
        # the monotonic time at which it read `start`: another process on this machine given the
        # same start, speed and t0 reads the same time (a test's service process and its replay)
        self._t0 = time.monotonic() if t0 is None else t0
        self._frozen: pd.Timestamp | None = None  # the reading while held

    @property
    def t0(self) -> float:
        return self._t0

    @property
    def virtual(self) -> bool:
        return self.speed is None

    def now(self) -> pd.Timestamp:
        if self.virtual:
            with self._lock:
                return self._virtual
        if self._frozen is not None:
            return self._frozen
        return self.start + pd.Timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    def ms(self) -> int:
        return int(self.now().value // 1_000_000)

    @contextmanager
    def held(self):
        """Simulated time stands still inside this block (a virtual clock always does)."""
        if self.virtual:
            yield
            return
        self._frozen, paused = self.now(), time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._t0 += time.monotonic() - paused
                self._frozen = None

    def sleep_until(self, when: pd.Timestamp, stop: threading.Event) -> None:
        if self.virtual:
            with self._lock:
                self._virtual = max(self._virtual, when)
            return
        stop.wait(max(0.0, (when - self.now()).total_seconds() / self.speed))
