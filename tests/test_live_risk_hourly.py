"""An hourly stream of the same market feeds the daily stream's realized measures: the daily
models then serve the GARCH-t + HAR-RV average, fitted on the stored hourly candles, and the risk
guard compares its live CRPS with GARCH-t's (serving GARCH-t's distribution when it has no skill).

Replay exchange, virtual time, a tiny point model; figures checked by hand from the stored candles."""

import json
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from coincast.data.store import Store
from coincast.evaluation import risk
from coincast.live import judge
from coincast.live.clock import SimClock
from coincast.live.config import LiveConfig, Stream, StreamRisk, check
from coincast.live.registry import Registry
from coincast.live.replay import Replay, ReplayExchange
from coincast.live.service import Service
from coincast.models.risk_baselines import GarchT, HarRV
from coincast.prep import realized
from coincast.prep.volatility import PERCENT2, garman_klass
from tests.conftest import tiny

START = pd.Timestamp("2025-06-01", tz="UTC")
DAY, GRACE = pd.Timedelta(days=1), pd.Timedelta(minutes=1)
DAYS, GUARD = 6, 2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    store = tmp_path_factory.mktemp("hourly") / "live.duckdb"
    settings = tiny(window=20, train={"shards": 1})
    streams = [  # the hourly stream first: it has stored the day's last hour when the daily one forecasts
        Stream("btc-1h", "store:binance/BTC/USDT/1h", settings, (START - 90 * DAY).strftime("%Y-%m-%d"), 10_000, "warm", 2, GUARD),
        Stream("btc-1d", "store:binance/BTC/USDT/1d", settings, (START - 1100 * DAY).strftime("%Y-%m-%d"), 3, "warm", 2, GUARD,
               risk=StreamRisk(head=False)),  # GARCH-t + HAR-RV: the path of a model without the head
    ]
    config = check(LiveConfig(streams, store))
    clock, threads = SimClock(START + GRACE), torch.get_num_threads()
    torch.set_num_threads(1)  # as the demo does: one window at a time, threads only fight each other
    with ReplayExchange(Replay(clock, days_before_today=None)) as exchange:
        service = Service(config, clock, lambda name: exchange.client(timeout_ms=10_000), lambda line: None, grace=GRACE,
                          hold="all", threads=1, fetch_backoff_s=0.05)
        try:
            service.run(threading.Event(), until=START + DAYS * DAY + GRACE)
        finally:
            torch.set_num_threads(threads)
    with Store(store, read_only=True) as s:
        reg = Registry(s, create=False)
        rows = reg.con.execute("SELECT * FROM risk_forecasts ORDER BY target_time, model, risk").df()
        out = {"rows": rows, "models": reg.models("btc-1d"), "decisions": reg.decisions("btc-1d"),
               "daily": s.candles("binance", "BTC/USDT", "1d"), "hourly": s.candles("binance", "BTC/USDT", "1h")}
    rows["target_time"] = pd.to_datetime(rows["target_time"]).dt.tz_localize("UTC")
    return out


def test_the_daily_models_serve_the_average_on_the_stored_hours(run):
    rows, daily, hourly = run["rows"], run["daily"], run["hourly"]
    assert set(rows["stream"]) == {"btc-1d"}  # hourly streams forecast no daily distribution
    assert set(rows["risk"]) == {"garch_har", "garch_t"}
    through = dict(zip(run["models"]["id"], pd.to_datetime(run["models"]["trained_through"]).dt.tz_localize("UTC")))
    for r in rows[rows["risk"] == "garch_har"].itertuples():
        c = daily.loc[: r.target_time - DAY]
        x, gk, index = 100 * np.diff(np.log(c["close"].to_numpy())), PERCENT2 * garman_klass(c).to_numpy()[1:], c.index[1:]
        k = int(c.index.get_loc(through[r.model]))
        measures = lambda hours, days, g: realized.model_inputs(  # noqa: E731
            realized.on_days(realized.daily_measures(hours), days), g)[0]
        rm_fit = measures(hourly[hourly.index < through[r.model] + DAY], index[:k], gk[:k])
        rm = measures(hourly[hourly.index < r.target_time], index, gk)
        assert (rm["rv"] != gk).sum() >= 80  # the days since the hourly stream's start have their own measures
        members = [m().fit(x[:k], gk[:k], rm_fit).forecast(x, gk, len(x), risk.LEVELS, rm)[-1] for m in (GarchT, HarRV)]
        np.testing.assert_allclose(r.quantiles, np.mean(members, axis=0), rtol=1e-10)
        garch = rows[(rows["model"] == r.model) & (rows["target_time"] == r.target_time) & (rows["risk"] == "garch_t")]
        np.testing.assert_allclose(garch["quantiles"].iloc[0], members[0], rtol=1e-10)


def test_the_risk_guard_serves_garch_t_while_the_average_has_no_skill(run):
    rows, decisions = run["rows"], run["decisions"]
    served = rows[rows["served"]].set_index("target_time")
    assert not served.index.duplicated().any() and len(served) == DAYS + 1
    turns = decisions[decisions["kind"].isin(["risk_fallback", "risk_fallback_end"])]
    assert len(turns), "the replayed days give the guard a verdict to act on"
    fallback = False
    for t, r in served.iterrows():
        made = turns[pd.to_datetime(turns["decided_at"]).dt.tz_localize("UTC") <= t + GRACE]
        fallback = bool(len(made)) and made["kind"].iloc[-1] == "risk_fallback"
        assert r["risk"] == ("garch_t" if fallback else "garch_har"), t
    for d in turns.itertuples():  # each verdict, from the champion's scored rows before it
        fig = json.loads(d.figures)
        at = pd.Timestamp(d.decided_at, tz="UTC")
        mine = rows[(rows["model"] == d.model) & rows["actual"].notna() & (rows["target_time"] + DAY <= at)]
        both = mine.pivot(index="target_time", columns="risk", values="crps").dropna().iloc[-GUARD:]
        assert fig["ratio"] == pytest.approx(both["garch_har"].mean() / both["garch_t"].mean(), rel=1e-12)
        assert fig["skill"] == (d.kind == "risk_fallback_end") == (fig["ratio"] < 1)
    assert judge.GARCH == "garch_t"
