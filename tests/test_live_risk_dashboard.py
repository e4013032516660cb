"""The dashboard's risk panel in a real browser (headless Chromium over a real uvicorn server on
127.0.0.1, the demo service with the tiny model, a clock the test steps): the fan chart holds one
80%/95% band per served distribution the API returns, the realised closes beside them, the live
coverage is shown, a new candle adds its band, and the console has no errors."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import one_torch_thread
from tests.serve_helpers import DAY, dashboard, wait_for

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
BANDS = "return window.coincastRisk.chart.data[2].filter(v => v !== null).length"
CLOSES = "return window.coincastRisk.chart.data[1].filter(v => v !== null).length"


def test_the_fan_chart_and_live_coverage(tmp_path):
    with dashboard(tmp_path, days=6, head=True) as page, httpx.Client(base_url=page.base) as http:
        browser = page.browser
        served = lambda: http.get("/v1/streams/btc-1d/risk").json()["history"]  # noqa: E731
        history = served()
        assert len(history) == 7  # the first day and six more
        browser.get(f"{page.base}/?poll=300#btc-1d")
        wait_for(lambda: browser.execute_script("return window.coincastRisk && window.coincastRisk.updates"),
                 "the first update of the risk panel")
        assert browser.execute_script(BANDS) == len(history)
        assert browser.execute_script(CLOSES) == len(history) - 1  # the newest candle is still open
        text = browser.find_element("id", "risk-record").text
        assert history[-1]["risk"] == "network"  # the demo's served model: the network's head
        assert "live coverage" in text and f"{history[-1]['risk']} of {history[-1]['model']}" in text
        assert browser.find_element("id", "risk-chart").find_elements("css selector", "canvas")
        browser.execute_script("document.getElementById('risk').scrollIntoView()")
        browser.save_screenshot(str(page.shots / "dashboard-risk.png"))

        page.demo.clock.advance(DAY)
        assert len(served()) == len(history) + 1
        wait_for(lambda: browser.execute_script(BANDS) == len(history) + 1, "the new band on the fan chart")
