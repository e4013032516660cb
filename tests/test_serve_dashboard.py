"""The dashboard in a real browser: headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium) opens the page of a demo server (real uvicorn on 127.0.0.1, the tiny model,
a clock the test steps): no console errors, the chart holds as many forecast points as the API
returns, a new forecast appears once the simulated clock advances, no sideways scroll at phone
width, and screenshots in the test's temporary folder."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import one_torch_thread
from tests.serve_helpers import DAY, dashboard, wait_for

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


def served_count(base: str, stream: str) -> int:
    rows, cursor = 0, None
    with httpx.Client(base_url=base) as http:
        while True:
            page = http.get(f"/v1/streams/{stream}/forecasts", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}).json()
            rows += len(page["forecasts"])
            cursor = page["next_cursor"]
            if cursor is None:
                return rows


POINTS = "return window.coincast.charts.price.data[2].filter(v => v !== null).length"


def test_dashboard_in_a_real_browser(tmp_path):
    with dashboard(tmp_path, days=9) as page:  # the screenshots are the docs' pictures
        browser, base = page.browser, page.base
        browser.get(f"{base}/?poll=300#btc-1d")
        wait_for(lambda: browser.execute_script("return window.coincast && window.coincast.updates"), "the first update")
        expected = served_count(base, "btc-1d")
        assert expected == 10  # the first day and nine more
        assert browser.execute_script(POINTS) == expected
        assert browser.find_element("id", "next").text not in ("", "–")
        assert "btc-1d-m1" in browser.find_element("id", "models").text
        browser.save_screenshot(str(page.shots / "dashboard.png"))

        page.demo.clock.advance(DAY)  # a candle closes: the service scores it and forecasts the next
        assert served_count(base, "btc-1d") == expected + 1
        wait_for(lambda: browser.execute_script(POINTS) == expected + 1, "the new forecast on the chart")

        # the other stream's page: only the hash changes, so the page stays and redraws on
        # its hashchange event, asynchronously: wait for that redraw, not for any update
        browser.get(f"{base}/?poll=300#eth-1d")
        active = "return document.querySelector('nav a.active').textContent"
        wait_for(lambda: browser.execute_script(active) == "eth-1d", "the eth-1d page")
        wait_for(lambda: browser.execute_script(POINTS) == served_count(base, "eth-1d"), "the eth-1d chart")

        browser.set_window_size(390, 844)  # a phone
        time.sleep(0.5)
        size = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert size[0] <= size[1], size
        browser.save_screenshot(str(page.shots / "dashboard-phone.png"))
    assert (page.shots / "dashboard.png").stat().st_size > 10_000 and (page.shots / "dashboard-phone.png").exists()
