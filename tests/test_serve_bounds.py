"""A bounded, private API over a real running demo service (tiny model, clock stepped by the test):
every list comes in pages with a cursor and a maximum size; /metrics reads only the rows added
since its last scrape; a 404 names nothing that exists; /ready tells callers without the read
token only whether it is ready; a promotion records the name of the token that asked for it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from coincast.api.app import create_app
from coincast.api.auth import load_tokens
from coincast.live.clock import SimClock
from coincast.data.store import Store
from coincast.live.config import LiveConfig, Stream, check
from coincast.live.registry import Registry
from coincast.live.service import Service
from tests.conftest import one_torch_thread, tiny
from tests.serve_helpers import DAY, START, demo_api

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
ANA, BOB, READER = "tok-ana-0123456789", "tok-bob-0123456789", "tok-read-0123456789"
HISTORY = 1_000_000  # rows of forecasts and of decisions a store holds from a stream served for years before
ROW_GROUP = 122_880  # DuckDB's rows per row group: what a scan reads at least, past its zone maps


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens"
    path.write_text(f"# who may do what\nana {ANA}\nbob {BOB}\n\nreader {READER} read\n")
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tokens):
    store = tmp_path_factory.mktemp("bounds") / "live.duckdb"
    with Store(store) as db:  # a long history: a stream served for years, since removed from the config
        con = Registry(db).con
        con.execute("INSERT INTO forecasts (stream, model, target_time, issued_at, data_through, role, served, point, "
                    "persistence, actual, error, persistence_error, direction_hit, realised_at) "
                    "SELECT 'old-1m', 'old-1m-m1', TIMESTAMP '2020-01-01' + to_minutes(range), TIMESTAMP '2020-01-01', "
                    "TIMESTAMP '2020-01-01', 'champion', true, 1, 1, 1, 0, 0, true, TIMESTAMP '2020-01-01' "
                    f"FROM range({HISTORY})")
        con.execute("INSERT INTO decisions (stream, decided_at, kind, target_time, figures, reason) "
                    "SELECT 'old-1m', TIMESTAMP '2020-01-01', 'missed', TIMESTAMP '2020-01-01' + to_minutes(range), '{}', "
                    f"'old' FROM range({HISTORY})")
        # and scored risk forecasts of a stream still served, by a point model long retired
        con.execute("INSERT INTO risk_forecasts (stream, model, risk, target_time, issued_at, data_through, served, "
                    "previous, quantiles, actual, crps, hit80, hit95, var5_breach, realised_at) "
                    "SELECT 'btc-1d', 'btc-1d-old', 'garch_t', TIMESTAMP '2000-01-01' + to_minutes(range), "
                    "TIMESTAMP '2000-01-01', TIMESTAMP '2000-01-01', false, 1, [0.0], 0, (range % 7) / 4, "
                    "range % 5 <> 0, range % 20 <> 0, range % 19 = 0, TIMESTAMP '2000-01-01' "
                    f"FROM range({HISTORY})")
    with demo_api(store, 12, load_tokens(tokens_file=tokens, env={})) as d:
        yield d


@pytest.fixture(scope="module")
def client(demo):
    with TestClient(demo.app) as c:
        yield c


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def table(demo, sql: str) -> list[tuple]:
    con = duckdb.connect(str(demo.store))  # joins the service's open database
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def pages(client, url: str, key: str, limit: int, **params) -> list[list[dict]]:
    out, cursor = [], None
    while True:
        page = client.get(url, params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})},
                          headers=auth(READER))
        assert page.status_code == 200, page.text
        out.append(page.json()[key])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return out


def test_models_come_in_pages_with_a_cursor(demo, client):
    got = pages(client, "/v1/models", "models", limit=3)
    ids = [m["id"] for page in got for m in page]
    assert [len(p) for p in got[:-1]] == [3] * (len(got) - 1) and 1 <= len(got[-1]) <= 3
    assert ids == [i for (i,) in table(demo, "SELECT id FROM models ORDER BY stream, created, id")]
    eth = [m["id"] for page in pages(client, "/v1/models", "models", limit=2, stream="eth-1d") for m in page]
    assert eth == [i for (i,) in table(demo, "SELECT id FROM models WHERE stream = 'eth-1d' ORDER BY created, id")]
    first = client.get("/v1/models", headers=auth(READER)).json()
    assert len(first["models"]) == len(ids) and first["next_cursor"] is None  # the default page (100) holds them all
    assert client.get("/v1/models", params={"limit": 1001}, headers=auth(READER)).status_code == 422
    bad = client.get("/v1/models", params={"cursor": "bm90IGEgY3Vyc29y"}, headers=auth(READER))
    assert bad.status_code == 422 and "cursor" in bad.json()["detail"]


def test_decisions_page_newest_first_past_the_old_limit_of_1000(demo, client):
    # an old history of 1,500 missed candles, recorded as a service running for years would have
    table(demo, "INSERT INTO decisions (stream, decided_at, kind, target_time, figures, reason) "
                "SELECT 'eth-1d', TIMESTAMP '2001-01-01' + to_days(range::INT), 'missed', "
                "TIMESTAMP '2001-01-01' + to_days(range::INT), '{}', 'old' FROM range(1500)")
    got = pages(client, "/v1/streams/eth-1d/decisions", "decisions", limit=400)
    ids = [d["id"] for page in got for d in page]
    assert len(ids) > 1000 and [len(p) for p in got[:-1]] == [400] * (len(got) - 1) and 1 <= len(got[-1]) <= 400
    assert ids == [i for (i,) in table(demo, "SELECT id FROM decisions WHERE stream = 'eth-1d' ORDER BY id DESC")]
    mine = pages(client, "/v1/streams/eth-1d/decisions", "decisions", limit=5, model="eth-1d-m1")
    assert mine[0] and all("eth-1d-m1" in (d["model"], d["other"]) for page in mine for d in page)
    assert client.get("/v1/streams/eth-1d/decisions", params={"limit": 1001}, headers=auth(READER)).status_code == 422
    one = client.get("/v1/models/eth-1d-m1", headers=auth(READER)).json()
    assert one["decisions"] and one["decisions_cursor"] is None  # a model's own decisions: its newest page


@pytest.mark.parametrize("url", ["/v1/streams/nope", "/v1/streams/nope/forecast", "/v1/streams/nope/forecasts",
                                 "/v1/streams/nope/candles", "/v1/streams/nope/decisions", "/v1/models/btc-1d-m99",
                                 "/v1/streams/btc-1d/forecasts?model=zz", "/v1/models?stream=nope", "/v1/nothing"])
def test_a_404_names_nothing_that_exists(client, url):
    answer = client.get(url, headers=auth(READER))
    assert answer.status_code == 404
    assert answer.json()["detail"].startswith("no ")
    for name in ("btc-1d-m1", "eth-1d", "/v1/streams/{name}"):
        assert name not in answer.text, (name, answer.text)


def test_ready_tells_only_ready_or_not_to_callers_without_the_read_token(demo, client, tmp_path):
    assert client.get("/ready").json() == {"ready": True}
    assert client.get("/ready", headers=auth("wrong")).json() == {"ready": True}
    full = client.get("/ready", headers=auth(READER)).json()
    assert full["ready"] and full["store"] == str(demo.store) and [s["name"] for s in full["streams"]] == ["btc-1d", "eth-1d"]
    assert client.get("/ready", headers=auth(ANA)).json() == full  # a write token reads too
    # not ready: a service that has not started; its reason only for a token holder
    stream = Stream("btc-1d", "store:binance/BTC/USDT/1d", tiny(window=20), "2024-06-01")
    idle = Service(check(LiveConfig([stream], tmp_path / "live.duckdb")), SimClock(START), lambda name: None)
    with TestClient(create_app(idle, demo.app.state.tokens)) as c:
        closed = c.get("/ready")
        assert closed.status_code == 503 and closed.json() == {"ready": False}
        told = c.get("/ready", headers=auth(READER))
        assert told.status_code == 503 and told.json()["reason"].startswith("starting")


def test_a_promotion_records_the_name_of_the_token_not_the_body(demo, client):
    models = {m["id"]: m["status"] for m in client.get("/v1/models", headers=auth(READER)).json()["models"]}
    retired = next(i for i, s in models.items() if s in ("shadow", "retired"))
    assert client.post(f"/v1/models/{retired}/promote", json={"reason": "x"}, headers=auth(READER)).status_code == 403
    claimed = client.post(f"/v1/models/{retired}/promote", json={"reason": "x", "by": "mallory"}, headers=auth(ANA))
    assert claimed.status_code == 422 and "token" in claimed.json()["detail"]
    done = client.post(f"/v1/models/{retired}/promote", json={"reason": "steadier"}, headers=auth(BOB))
    assert done.status_code == 200, done.text
    back = client.post(f"/v1/models/{retired}/rollback", json={"reason": "jumpy"}, headers=auth(ANA))
    assert back.status_code == 200, back.text
    made = {(d["kind"], d["reason"], d["figures"].get("by")) for d in client.get(f"/v1/models/{retired}",
                                                                              headers=auth(READER)).json()["decisions"]}
    assert {("manual_promotion", "by bob: steadier", "bob"), ("rollback", "by ana: jumpy", "ana")} <= made


def test_metrics_read_only_the_rows_added_since_the_last_scrape(demo, client, tmp_path):
    """After one scrape, the next reads at most the row groups being appended to (DuckDB's own
    count of the rows its scans read), not the store's HISTORY rows of forecasts, decisions and
    risk forecasts; and its figures match the store's, counted over every row."""
    reader, metrics = demo.app.state.reader, demo.app.state.metrics
    cursor = reader._cursor()  # this thread's connection: DuckDB profiles the scrape's queries on it
    profile = tmp_path / "profile.json"
    cursor.execute("PRAGMA enable_profiling = 'json'")
    cursor.execute(f"PRAGMA profiling_output = '{profile}'")
    scanned = []
    rows = reader.rows

    def counted(sql, args=None):
        out = rows(sql, args)
        scanned.append(json.loads(profile.read_text())["query"]["total_rows_scanned"])
        return out

    reader.rows = counted
    try:
        metrics.render()  # the first scrape reads everything once
        demo.clock.advance(DAY)  # a pass: new forecasts, realised ones, decisions
        scanned.clear()
        text = metrics.render().decode()
    finally:
        reader.rows = rows
        cursor.execute("PRAGMA disable_profiling")
    assert scanned and sum(scanned) < 2 * ROW_GROUP < HISTORY / 4, scanned
    live = "stream IN ('btc-1d', 'eth-1d')"
    for stream, role, n in table(demo, f"SELECT stream, role, count(*) FROM forecasts WHERE {live} GROUP BY ALL"):
        assert f'coincast_forecasts_issued_total{{role="{role}",stream="{stream}"}} {float(n)}' in text
    for stream, n in table(demo, f"SELECT stream, count(*) FROM forecasts WHERE {live} AND actual IS NOT NULL GROUP BY ALL"):
        assert f'coincast_forecasts_realised_total{{stream="{stream}"}} {float(n)}' in text
    for stream, kind, n in table(demo, f"SELECT stream, kind, count(*) FROM decisions WHERE {live} AND kind = 'missed' "
                                       "GROUP BY ALL"):
        assert f'coincast_forecasts_missed_total{{stream="{stream}",why="{kind}"}} {float(n)}' in text
    for stream, status, n in table(demo, "SELECT stream, status, count(*) FROM models GROUP BY ALL"):
        assert f'coincast_trainings_total{{status="{status}",stream="{stream}"}} {float(n)}' in text
    risk = table(demo, f"SELECT stream, model, risk, count(*), avg(hit80::INT), avg(hit95::INT), sum(var5_breach::INT), "
                       f"avg(crps) FROM risk_forecasts WHERE {live} AND actual IS NOT NULL GROUP BY ALL")
    assert len(risk) >= 3 and ("btc-1d", "btc-1d-old", "garch_t", HISTORY) in [r[:4] for r in risk]
    exported = {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in text_string_to_metric_families(text)
                for s in fam.samples if s.name.startswith("coincast_risk_")}
    for stream, model, name, n, c80, c95, breaches, crps in risk:
        key = {"stream": stream, "model": model, "risk": name}
        got = lambda metric, **more: exported[(metric, tuple(sorted({**key, **more}.items())))]  # noqa: E731
        assert got("coincast_risk_scored_total") == n and got("coincast_risk_var5_breaches_total") == breaches
        assert got("coincast_risk_coverage", level="80") == pytest.approx(c80, rel=1e-12)
        assert got("coincast_risk_coverage", level="95") == pytest.approx(c95, rel=1e-12)
        assert got("coincast_risk_crps") == pytest.approx(crps, rel=1e-9)
    assert len([k for k in exported if k[0] == "coincast_risk_scored_total"]) == len(risk)
    assert client.get("/metrics", headers=auth(READER)).text.count("coincast_forecasts_issued_total{") == \
        text.count("coincast_forecasts_issued_total{")
