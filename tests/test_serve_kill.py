"""SIGKILL a real `coincast serve --demo` process while a client is reading from it, restart it on
the same store some simulated months later, and check:

* no forecast row is lost: every row stored before the kill is there after the restart, equal
  in its issued fields (the realised ones may since have been filled in), and every forecast
  the API answered before the kill is among them;
* the API answers the served forecasts of before the kill with the same issued fields;
* /ready answers 503 while the restarted service catches up (the candles that closed while it
  was down: recorded as missed, never forecast after the fact), then 200, and not 503 again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pandas as pd

from coincast.live.registry import ISSUED

FIRST_DAY = pd.Timestamp("2025-03-01")
GAP_DAYS = 120  # simulated days the service is down: the restart catches up on them
ISSUED_FIELDS = ("target_time", "issued_at", "data_through", "model", "role", "served", "point", "lo80", "hi80",
                 "lo95", "hi95", "persistence")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(store: Path, port: int, day: pd.Timestamp, speed: float) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("COINCAST_TOKEN", "COINCAST_READ_TOKEN")}
    return subprocess.Popen([sys.executable, "-m", "coincast", "serve", "--demo", "--port", str(port), "--speed", str(speed),
                             "--from", f"{day:%Y-%m-%d}", "--store", str(store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


class Reader(threading.Thread):
    """The load: the latest forecast and the history page, over and over, with the answers kept."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.base, self.stop = base, threading.Event()
        self.latest: list[dict] = []
        self.pages: list[list[dict]] = []
        self.failures = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as http:
            while not self.stop.is_set():
                try:
                    latest = http.get("/v1/streams/btc-1d/forecast")
                    page = http.get("/v1/streams/btc-1d/forecasts", params={"limit": 1000})
                except httpx.HTTPError:
                    self.failures += 1
                    time.sleep(0.02)
                    continue
                if latest.status_code == 200:
                    self.latest.append(latest.json())
                if page.status_code == 200:
                    self.pages.append(page.json()["forecasts"])


def wait_for(check, what: str, proc: subprocess.Popen, seconds: float = 180):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited ({proc.returncode}) while waiting for {what}: {proc.stderr.read()}")
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def ready_status(http: httpx.Client) -> int | None:
    try:
        return http.get("/ready").status_code
    except httpx.HTTPError:
        return None  # not listening yet


def stored_forecasts(store: Path) -> pd.DataFrame:
    with duckdb.connect(str(store), read_only=True) as con:
        return con.execute(f"SELECT {', '.join(ISSUED)} FROM forecasts ORDER BY ALL").df()


def issued(row: dict) -> dict:
    return {k: row[k] for k in ISSUED_FIELDS}


def test_sigkill_under_load_loses_no_forecast_and_ready_waits_for_the_catch_up(tmp_path):
    store, port = tmp_path / "live.duckdb", free_port()
    base = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=base, timeout=10)
    first = start(store, port, FIRST_DAY, speed=2)
    load = Reader(base)
    try:
        wait_for(lambda: ready_status(http) == 200, "the first run to be ready", first)
        load.start()
        # a few days of forecasts, then the kill while the reader is at it
        wait_for(lambda: len({f["target_time"] for f in load.latest}) >= 4, "four days of forecasts", first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    latest_before, pages_before = list(load.latest), list(load.pages)
    assert latest_before and pages_before

    before = stored_forecasts(store)  # the process is gone: its lock too
    last_target = before["target_time"].max()
    answered = {(f["model"], f["target_time"]) for f in latest_before}
    stored = {(r.model, f"{r.target_time:%Y-%m-%dT%H:%M:%SZ}") for r in before.itertuples()}
    assert answered <= stored, "the API answered a forecast the store does not hold"

    restart_day = (last_target + pd.Timedelta(days=GAP_DAYS)).normalize()
    second = start(store, port, restart_day, speed=0.05)
    statuses: list[int] = []
    try:
        def ready() -> bool:
            status = ready_status(http)
            if status is not None:
                statuses.append(status)
            return status == 200

        wait_for(ready, "the restarted server to be ready", second)
        # caught up: the days it was down are recorded as missed, the restart day is forecast
        decisions = http.get("/v1/streams/btc-1d/decisions", params={"limit": 1000}).json()["decisions"]
        missed = {d["target_time"] for d in decisions if d["kind"] == "missed"}
        down = pd.date_range(last_target + pd.Timedelta(days=1), restart_day - pd.Timedelta(days=1), freq="D")
        assert {f"{t:%Y-%m-%dT%H:%M:%SZ}" for t in down} <= missed
        assert http.get("/v1/streams/btc-1d/forecast").json()["target_time"] == f"{restart_day:%Y-%m-%dT%H:%M:%SZ}"
        for _ in range(10):  # ready stays ready
            statuses.append(http.get("/ready").status_code)
        # the served forecasts answered before the kill, answered again with the same issued fields
        after = {f["target_time"]: issued(f) for f in http.get("/v1/streams/btc-1d/forecasts",
                                                               params={"limit": 1000}).json()["forecasts"]}
        for page in pages_before:
            for f in page:
                assert after[f["target_time"]] == issued(f)
        load.stop.set()
        load.join(timeout=30)
    finally:
        load.stop.set()
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=120)
        http.close()
    assert second.returncode == 0, err

    first_ok = statuses.index(200)
    assert statuses[:first_ok] and set(statuses[:first_ok]) == {503}, statuses  # 503 while catching up
    assert set(statuses[first_ok:]) == {200}, statuses
    key = ["stream", "model", "target_time"]
    now = stored_forecasts(store).set_index(key)
    missing = before.set_index(key).index.difference(now.index)
    assert missing.empty, f"{len(missing)} forecast rows lost, e.g. {list(missing[:2])}"
    pd.testing.assert_frame_equal(now.loc[before.set_index(key).index], before.set_index(key))  # issued fields unchanged
    # the reader was at it across the kill: answers before, refusals while down, answers after
    assert load.failures >= 1 and len(load.latest) > len(latest_before)
