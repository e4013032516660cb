"""The HTTP API with FastAPI's test client over a real running demo service (tiny model, clock
stepped by the test): every route, tokens, 404/413/422/500 bodies, metrics, readiness."""

from __future__ import annotations

import json
import sys
import threading

import duckdb
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from coincast.api import auth
from coincast.api.app import create_app
from coincast.api.auth import Tokens
from coincast.live.clock import SimClock
from coincast.live.config import LiveConfig, Stream, check
from coincast.live.replay import Replay, ReplayExchange
from coincast.live.service import Service
from tests.conftest import one_torch_thread, tiny
from tests.serve_helpers import DAY, START, demo_api

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
TOKEN = "s3cret-token"
DAYS = 12


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with demo_api(tmp_path_factory.mktemp("serve") / "live.duckdb", DAYS, Tokens(write=TOKEN)) as d:
        yield d


@pytest.fixture(scope="module")
def client(demo):
    with TestClient(demo.app) as c:
        yield c


def table(demo, sql: str) -> list[tuple]:
    """The store read independently of the API (a connection of its own to the open database)."""
    con = duckdb.connect(str(demo.store))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def all_pages(client, url: str, key: str, **params) -> list[dict]:
    rows, cursor = [], None
    while True:
        page = client.get(url, params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        rows += page.json()[key]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return rows


def test_health_ready_and_the_openapi_schema(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] and body["service"] == "running" and body["passes"] >= DAYS
    assert [s["name"] for s in body["streams"]] == ["btc-1d", "eth-1d"]
    assert all(s["newest_candle"] == "2025-06-12T00:00:00Z" and s["last_error"] is None for s in body["streams"])
    assert all(0 < s["data_age_s"] < 86_400 for s in body["streams"])  # the newest candle closed within the day
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/health", "/ready", "/metrics", "/v1/streams", "/v1/streams/{name}/forecast", "/v1/streams/{name}/forecasts",
                 "/v1/streams/{name}/candles", "/v1/models", "/v1/models/{model_id}", "/v1/streams/{name}/retrain",
                 "/v1/models/{model_id}/promote", "/v1/models/{model_id}/rollback"):
        assert path in paths, path
    assert client.get("/docs").status_code == 404  # its viewer would load from a CDN


def test_streams_and_the_latest_forecast_match_the_store(demo, client):
    streams = client.get("/v1/streams").json()["streams"]
    assert [(s["name"], s["symbol"], s["timeframe"], s["retrain_every"]) for s in streams] == \
        [("btc-1d", "BTC/USDT", "1d", 7), ("eth-1d", "ETH/USDT", "1d", 7)]
    for s in streams:
        latest = client.get(f"/v1/streams/{s['name']}/forecast").json()
        ((target, model, point, lo95, fallback, network, shrink),) = table(
            demo, "SELECT target_time, model, point, lo95, role = 'fallback', network, shrink "
                  f"FROM forecasts WHERE stream = '{s['name']}' AND served ORDER BY target_time DESC LIMIT 1")
        assert latest["target_time"] == f"{target:%Y-%m-%dT%H:%M:%S}Z" == "2025-06-13T00:00:00Z"
        assert (latest["model"], latest["point"], latest["lo95"], latest["fallback"]) == (model, point, lo95, fallback)
        assert (latest["network"], latest["shrink"]) == (network, shrink)  # the a the point was shrunk with
        assert latest["data_through"] == "2025-06-12T00:00:00Z" and latest["actual"] is None
        assert s["champion"] and s["next_retrain_after"] and not s["stale"]


def test_forecast_history_pages_through_every_served_row_with_realised_errors(demo, client):
    rows = all_pages(client, "/v1/streams/btc-1d/forecasts", "forecasts", limit=4)
    (n,) = table(demo, "SELECT count(*) FROM forecasts WHERE stream = 'btc-1d' AND served")[0]
    assert len(rows) == n == DAYS + 1
    times = [r["target_time"] for r in rows]
    assert times == sorted(times) and len(set(times)) == len(times)
    realised = [r for r in rows if r["actual"] is not None]
    assert len(realised) == DAYS
    assert all(r["error"] == pytest.approx(r["point"] - r["actual"]) for r in realised)
    one = client.get("/v1/streams/btc-1d/forecasts", params={"start": "2025-06-03", "end": "2025-06-05T00:00:00Z"}).json()
    assert [r["target_time"] for r in one["forecasts"]] == ["2025-06-03T00:00:00Z", "2025-06-04T00:00:00Z"]
    shadow = client.get("/v1/streams/btc-1d/forecasts", params={"model": "btc-1d-m2", "limit": 1000}).json()["forecasts"]
    assert shadow and all(r["model"] == "btc-1d-m2" for r in shadow)


def test_candles_page_and_decisions(demo, client):
    candles = all_pages(client, "/v1/streams/eth-1d/candles", "candles", limit=1000)
    (n,) = table(demo, "SELECT count(*) FROM candles WHERE symbol = 'ETH/USDT'")[0]
    assert len(candles) == n and candles[-1]["open_time"] == "2025-06-12T00:00:00Z"
    assert candles[-1]["close_time"] == "2025-06-13T00:00:00Z"
    decisions = all_pages(client, "/v1/streams/btc-1d/decisions", "decisions", limit=2)
    assert decisions[-1]["kind"] == "first" and decisions[-1]["model"] == "btc-1d-m1"


def test_models_and_one_model(client):
    models = client.get("/v1/models").json()["models"]
    assert {m["id"] for m in models} >= {"btc-1d-m1", "btc-1d-m2", "eth-1d-m1", "eth-1d-m2"}
    assert sum(m["status"] == "champion" for m in models if m["stream"] == "btc-1d") == 1
    assert all(m["stream"] == "eth-1d" for m in client.get("/v1/models", params={"stream": "eth-1d"}).json()["models"])
    m1 = client.get("/v1/models/btc-1d-m1").json()
    assert m1["settings"]["model"]["hidden"] == [4, 4] and "q95" in m1["figures"]
    assert m1["live"]["n"] >= 1 and "rmse_ratio" in m1["live"]
    assert m1["decisions"][-1]["kind"] == "first"  # newest first
    assert m1["node"] is None  # trained by the local worker (a Ray training names its node)


@pytest.mark.parametrize("url, field", [
    ("/v1/streams/btc-1d/forecasts?limit=abc", "query parameter limit"),
    ("/v1/streams/btc-1d/forecasts?limit=0", "query parameter limit"),
    ("/v1/streams/btc-1d/candles?limit=1001", "query parameter limit"),
    ("/v1/streams/btc-1d/forecasts?start=yesterday", "query parameter start"),
    ("/v1/streams/btc-1d/forecasts?cursor=%25%25", "cursor"), ("/v1/streams/btc-1d/candles?cursor=bm90IGEgdGltZQ", "cursor"),
])
def test_malformed_values_answer_422_naming_the_field(client, url, field):
    answer = client.get(url)
    assert answer.status_code == 422
    assert field in answer.json()["detail"]


def test_write_routes_need_the_right_token(client):
    url = "/v1/streams/btc-1d/retrain"
    missing = client.post(url)
    assert missing.status_code == 401 and "Authorization: Bearer" in missing.json()["detail"]
    wrong = client.post(url, headers={"Authorization": "Bearer not-it"})
    assert wrong.status_code == 403 and "not valid" in wrong.json()["detail"]
    near = client.post(url, headers={"Authorization": f"Bearer {TOKEN}x"})
    assert near.status_code == 403
    body = client.post("/v1/models/btc-1d-m1/promote", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert body.status_code == 422 and "body field reason" in body.json()["detail"]


def test_no_token_configured_means_writes_answer_403_and_say_why(demo):
    with TestClient(create_app(demo.service)) as c:
        for url in ("/v1/streams/btc-1d/retrain", "/v1/models/btc-1d-m1/promote", "/v1/models/btc-1d-m1/rollback"):
            answer = c.post(url, json={"reason": "x"}, headers={"Authorization": "Bearer anything"})
            assert answer.status_code == 403, url
            assert "no token is configured" in answer.json()["detail"] and "COINCAST_TOKEN" in answer.json()["detail"]


def test_a_read_token_protects_the_get_routes_but_not_health(demo):
    with TestClient(create_app(demo.service, Tokens(write=TOKEN, read="reader"))) as c:
        assert c.get("/v1/streams").status_code == 401
        assert c.get("/metrics").status_code == 401
        assert c.get("/v1/streams", headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert c.get("/v1/streams", headers={"Authorization": "Bearer reader"}).status_code == 200
        assert c.get("/v1/streams", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200
        assert c.get("/").status_code == 200  # the page itself holds no data


def test_tokens_are_compared_in_constant_time():
    """Observed, not mocked: the profiler sees the real hmac.compare_digest run for each token."""
    calls = []

    def profile(frame, event, arg):
        if event == "c_call" and getattr(arg, "__name__", "") == "compare_digest":
            calls.append(arg)

    tokens = Tokens(write="wr1te", read="r3ad")
    sys.setprofile(profile)
    try:
        with pytest.raises(auth.Denied):
            auth.check(tokens, "Bearer guess", write=False)
        auth.check(tokens, "Bearer wr1te", write=False)
    finally:
        sys.setprofile(None)
    assert len(calls) == 4  # both tokens compared each time: no early exit


def test_a_body_over_64_kb_is_refused_with_413(client):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    big = json.dumps({"reason": "x" * 70_000})
    answer = client.post("/v1/models/btc-1d-m1/promote", content=big, headers={**headers, "Content-Type": "application/json"})
    assert answer.status_code == 413 and "64 KB" in answer.json()["detail"]
    chunks = (b"x" * 10_000 for _ in range(8))  # no Content-Length: counted as it streams
    answer = client.post("/v1/models/btc-1d-m1/promote", content=chunks, headers={**headers, "Content-Type": "application/json"})
    assert answer.status_code == 413
    small = client.post("/v1/models/btc-1d-m1/promote", json={"reason": "x" * 600}, headers=headers)
    assert small.status_code == 422  # read, and refused for its content (reason over 500 characters)


def test_a_route_that_raises_answers_json_500_without_a_traceback(demo):
    app = create_app(demo.service)

    @app.get("/v1/boom")
    def boom():
        raise RuntimeError("secret internals at /home/x/y.py line 3")

    with TestClient(app, raise_server_exceptions=False) as c:
        answer = c.get("/v1/boom")
    assert answer.status_code == 500 and answer.headers["content-type"] == "application/json"
    assert answer.json()["detail"].startswith("internal error")
    assert "Traceback" not in answer.text and "secret" not in answer.text


def test_cors_is_off(client):
    answer = client.get("/v1/streams", headers={"Origin": "https://elsewhere.example"})
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers
    preflight = client.options("/v1/streams", headers={"Origin": "https://elsewhere.example",
                                                       "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers


def test_metrics_have_their_own_registry_and_the_stores_figures(demo, client):
    client.get("/v1/streams/btc-1d/forecast")
    text = client.get("/metrics").text
    (issued,) = table(demo, "SELECT count(*) FROM forecasts WHERE stream = 'btc-1d' AND role = 'champion'")[0]
    assert f'coincast_forecasts_issued_total{{role="champion",stream="btc-1d"}} {float(issued)}' in text
    assert 'coincast_http_requests_total{method="GET",route="/v1/streams/{name}/forecast",status="200"}' in text
    for name in ("coincast_data_age_seconds{stream=\"eth-1d\"}", "coincast_training_seconds_count{stream=\"btc-1d\"}",
                 "coincast_live_rmse_ratio{", "coincast_service_running 1.0", "coincast_http_request_seconds_bucket"):
        assert name in text, name
    with TestClient(create_app(demo.service)) as other:  # a second app counts its own requests only
        assert "coincast_http_requests_total{" not in other.get("/metrics").text


def test_retrain_promote_and_rollback_by_hand(demo, client):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    before = {m["id"]: m["status"] for m in client.get("/v1/models", params={"stream": "eth-1d"}).json()["models"]}
    if "shadow" in before.values():  # one challenger at a time: refused while one is in shadow
        answer = client.post("/v1/streams/eth-1d/retrain", headers=headers)
        assert answer.status_code == 409 and "one challenger at a time" in answer.json()["detail"]
        demo.clock.advance(3 * DAY)  # its shadow period ends with a decision
    started = client.post("/v1/streams/eth-1d/retrain", headers=headers)
    assert started.status_code == 202, started.text
    new = started.json()["model"]
    again = client.post("/v1/streams/eth-1d/retrain", headers=headers)
    assert again.status_code == 409 and new in again.json()["detail"]
    champion = client.get("/v1/streams/eth-1d").json()["champion"]
    promoted = client.post(f"/v1/models/{new}/promote", json={"reason": "looks good"}, headers=headers)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json() == {"stream": "eth-1d", "champion": new, "retired": champion}
    twice = client.post(f"/v1/models/{new}/promote", json={"reason": "again"}, headers=headers)
    assert twice.status_code == 409 and "only a shadow or retired model" in twice.json()["detail"]
    wrong = client.post(f"/v1/models/{champion}/rollback", json={"reason": "x"}, headers=headers)
    assert wrong.status_code == 409 and "is not the champion" in wrong.json()["detail"]
    back = client.post(f"/v1/models/{new}/rollback", json={"reason": "too jumpy"}, headers=headers)
    assert back.status_code == 200 and back.json()["champion"] == champion
    kinds = [(d["kind"], d["reason"]) for d in client.get(f"/v1/models/{new}").json()["decisions"]]
    assert ("manual_promotion", "by write-token: looks good") in kinds and ("rollback", "by write-token: too jumpy") in kinds
    demo.clock.advance(DAY)  # the service forecasts with the restored champion
    assert client.get("/v1/streams/eth-1d/forecast").json()["model"] == champion


def test_the_answers_kept_in_memory_follow_each_pass(demo, client):
    history = "/v1/streams/btc-1d/forecasts"
    before, page_before = client.get("/v1/streams/btc-1d/forecast").json(), all_pages(client, history, "forecasts", limit=1000)
    assert client.get("/v1/streams/btc-1d/forecast").json() == before  # the second answers come from memory
    assert all_pages(client, history, "forecasts", limit=1000) == page_before
    demo.clock.advance(DAY)  # one pass: a new candle closes, the old forecast is realised, a new one issued
    after, page_after = client.get("/v1/streams/btc-1d/forecast").json(), all_pages(client, history, "forecasts", limit=1000)
    assert after["target_time"] == f"{pd.Timestamp(before['target_time']) + DAY:%Y-%m-%dT%H:%M:%SZ}"
    assert after == {"stream": "btc-1d", **page_after[-1]}
    assert len(page_after) == len(page_before) + 1
    assert page_before[-1]["actual"] is None and page_after[-2]["actual"] is not None  # realised in the pass


def test_ready_is_503_until_the_service_has_caught_up(tmp_path):
    """The first pass (here slowed by a replay that answers its first klines requests late) must
    finish before /ready says 200; /health answers all along."""
    settings = tiny(window=20, model={"shrink": False}, train={"shards": 1})
    stream = Stream("btc-1d", "store:binance/BTC/USDT/1d", settings, "2024-06-01", 7, "warm", 3, 10)
    config = check(LiveConfig([stream], tmp_path / "live.duckdb"))
    clock = SimClock(START + pd.Timedelta(minutes=1), speed=1.0)
    stop = threading.Event()
    replay = Replay(clock, days_before_today=None)
    replay.faults = {1: "timeout"}
    with ReplayExchange(replay) as exchange:
        service = Service(config, clock, lambda name: exchange.client(timeout_ms=10_000), lambda line: None,
                          grace=pd.Timedelta(minutes=1), hold="first", threads=1)
        with TestClient(create_app(service)) as c:
            starting = c.get("/ready")
            assert starting.status_code == 503 and starting.json()["reason"].startswith("starting")
            thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
            thread.start()
            try:
                assert service.opened.wait(60)
                catching = c.get("/ready")
                assert catching.status_code == 503 and catching.json()["reason"].startswith("catching up"), catching.text
                assert c.get("/health").status_code == 200
                for _ in range(600):
                    if service.passes:
                        break
                    stop.wait(0.1)
                assert c.get("/ready").status_code == 200
            finally:
                stop.set()
                thread.join(timeout=60)
            stopped = c.get("/ready")
            assert stopped.status_code == 503 and "stopped" in stopped.json()["reason"]


def test_api_sits_above_live_and_below_cli():
    """No module below api/ imports it, and api/ imports neither cli/ nor flows/."""
    import ast
    from pathlib import Path

    import coincast

    root = Path(coincast.__file__).parent
    for path in root.rglob("*.py"):
        layer = path.relative_to(root).parts[0]
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        if layer == "api":
            assert not {n for n in names if n.startswith(("coincast.cli", "coincast.flows"))}, path
        elif layer != "cli":
            assert not {n for n in names if n.startswith("coincast.api")}, path
