"""A demo service for the serve tests: the real service, replay exchange (real ccxt client on
127.0.0.1), DuckDB and worker process, with the tiny model, on a simulated clock that moves only
when a test advances it (so what the API shows is known when a test looks); and `dashboard`, the
same served by a real uvicorn server on 127.0.0.1 to headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) for the dashboard tests."""

from __future__ import annotations

import os
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import uvicorn

from coincast.api.app import create_app
from coincast.api.server import bind, url
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


def chromium():
    """Headless Chromium through chromedriver, its console log kept (skipped where they are not
    installed; CI must have them)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        why = "chromium or chromedriver is not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run the dashboard tests; .ci/run installs them")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def wait_for(check, what: str, seconds: float = 60):
    """`check()`'s value once it is true (a page that redraws asynchronously, a server that starts)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def dashboard(tmp_path: Path, days: int, head: bool = False):
    """`demo_api` served on 127.0.0.1 by uvicorn, and a headless Chromium to open it: yields demo,
    browser, base (the server's URL) and shots (the screenshots' folder: $COINCAST_SCREENSHOTS, else
    the test's own). A test that ends without an error also ends with no error in the browser's console."""
    shots = Path(os.environ.get("COINCAST_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    browser = chromium()
    try:
        with demo_api(tmp_path / "live.duckdb", days=days, head=head) as demo:
            sock = bind("127.0.0.1", 0)
            server = uvicorn.Server(uvicorn.Config(demo.app, log_level="warning"))
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
            thread.start()
            try:
                wait_for(lambda: server.started, "the server to start")
                yield SimpleNamespace(demo=demo, browser=browser, base=url(sock), shots=shots)
                errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
                assert not errors, errors
            finally:
                server.should_exit = True
                thread.join(timeout=30)
    finally:
        browser.quit()
