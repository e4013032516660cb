"""The served distribution over HTTP: a real uvicorn server on 127.0.0.1 over the demo service
(tiny model, a clock the test steps) answers /v1/streams/{name}/risk and exports the live risk
record on /metrics; every figure equals the registry's rows read independently."""

from __future__ import annotations

import math
import threading

import duckdb
import httpx
import numpy as np
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from coincast.api.server import bind, url
from coincast.evaluation.risk import LEVELS
from tests.conftest import one_torch_thread
from tests.serve_helpers import DAY, demo_api

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
DAYS = 9


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with demo_api(tmp_path_factory.mktemp("risk-api") / "live.duckdb", DAYS, head=True) as demo:
        sock = bind("127.0.0.1", 0)
        server = uvicorn.Server(uvicorn.Config(demo.app, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            with httpx.Client(base_url=url(sock), timeout=30) as http:
                while not server.started:
                    thread.join(0.05)
                yield demo, http
        finally:
            server.should_exit = True
            thread.join(timeout=30)


def table(demo, sql: str, args=None) -> list[tuple]:
    con = duckdb.connect(str(demo.store))
    try:
        return con.execute(sql, args or []).fetchall()
    finally:
        con.close()


def test_the_latest_served_distribution_and_its_history(served):
    demo, http = served
    body = http.get("/v1/streams/btc-1d/risk", params={"limit": 5}).json()
    (target, model, risk, previous, q, lo80, var5), = table(
        demo, "SELECT target_time, model, risk, previous, quantiles, lo80, var5 FROM risk_forecasts "
              "WHERE stream = 'btc-1d' AND served ORDER BY target_time DESC LIMIT 1")
    latest = body["latest"]
    assert latest["target_time"] == target.strftime("%Y-%m-%dT%H:%M:%SZ") and latest["model"] == model
    assert latest["risk"] == risk == "network" and body["fallback"] is False  # the head, no hourly stream in the demo
    assert latest["levels"] == LEVELS.tolist() and latest["quantiles"] == q
    assert latest["price_quantiles"] == pytest.approx([previous * math.exp(v / 100) for v in q], rel=1e-12)
    assert (latest["lo80"], latest["var5"]) == (lo80, var5)
    history = body["history"]
    assert len(history) == 5 and history[-1]["target_time"] == latest["target_time"]
    assert history[-1]["actual"] is None  # the open candle
    closes = dict(table(demo, "SELECT open_time, close FROM candles WHERE symbol = 'BTC/USDT' AND timeframe = '1d'"))
    for h in history[:-1]:
        close = closes[np.datetime64(h["target_time"].rstrip("Z")).astype("datetime64[us]").item()]
        assert h["close"] == pytest.approx(close, rel=1e-12)
        assert h["hit80"] == (h["lo80"] <= close <= h["hi80"]) and h["hit95"] == (h["lo95"] <= close <= h["hi95"])


def test_live_records_and_metrics_equal_the_stored_scores(served):
    demo, http = served
    body = http.get("/v1/streams/btc-1d/risk").json()
    rows = table(demo, "SELECT model, risk, target_time, crps, hit80, hit95, var5_breach FROM risk_forecasts "
                       "WHERE stream = 'btc-1d' AND actual IS NOT NULL ORDER BY target_time")
    assert len(body["live"]) >= 2  # the champion and its challenger
    for rec in body["live"]:
        mine = [r for r in rows if r[:2] == (rec["model"], rec["risk"])]
        window = mine[-body["guard"]:]
        assert rec["n"] == len(mine) and rec["window_n"] == len(window)
        assert rec["crps"] == pytest.approx(np.mean([r[3] for r in mine]), rel=1e-12)
        assert rec["coverage_80"] == pytest.approx(np.mean([r[4] for r in mine]))
        assert rec["window_coverage_95"] == pytest.approx(np.mean([r[5] for r in window]))
        assert rec["var5_breaches"] == sum(r[6] for r in mine)
    metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(http.get("/metrics").text) for s in fam.samples}
    for rec in body["live"]:
        key = {"stream": "btc-1d", "model": rec["model"], "risk": rec["risk"]}
        assert metrics[("coincast_risk_coverage", tuple(sorted({**key, "level": "80"}.items())))] == pytest.approx(rec["coverage_80"])
        assert metrics[("coincast_risk_var5_breaches_total", tuple(sorted(key.items())))] == rec["var5_breaches"]
        assert metrics[("coincast_risk_scored_total", tuple(sorted(key.items())))] == rec["n"]
    assert metrics[("coincast_risk_fallback", (("stream", "btc-1d"),))] == 0.0


def test_a_new_candle_adds_its_scores_and_an_unknown_stream_is_a_404(served):
    demo, http = served
    before = http.get("/v1/streams/eth-1d/risk").json()
    demo.clock.advance(DAY)
    after = http.get("/v1/streams/eth-1d/risk").json()
    assert after["latest"]["target_time"] > before["latest"]["target_time"]
    scored = lambda body: sum(r["n"] for r in body["live"])  # noqa: E731
    assert scored(after) == scored(before) + len(after["live"])  # the champion's and challenger's for the new close
    missing = http.get("/v1/streams/doge-1d/risk")
    assert missing.status_code == 404 and missing.json()["detail"].startswith("no stream 'doge-1d'")
    assert "btc-1d" not in missing.text and "eth-1d" not in missing.text  # a 404 names nothing that exists
