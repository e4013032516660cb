"""The live service serves the backtest's served risk model: the network's risk head is trained in
the training job (live/head.py), pooled with the config's other daily markets, saved with the model,
continued warm as the backtest's walk continues it (the network frozen), and served as network_har
beside an hourly stream of the same market, loaded from the model's folder, never fitted in the
service's process (also after a restart).

The training job's head on the bundled candles; then the service on the replay exchange (real ccxt
client on 127.0.0.1, the real worker process) in virtual time with a tiny point model and a head of
two epochs, its served quantiles checked by hand from the stored candles and the saved heads."""

import json
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from coincast import load
from coincast.data.store import Store
from coincast.evaluation.risk import LEVELS
from coincast.live import head
from coincast.live.clock import SimClock
from coincast.live.config import LiveConfig, Stream, StreamRisk, check
from coincast.live.registry import Registry
from coincast.live.replay import Replay, ReplayExchange
from coincast.live.service import Service
from coincast.models.risk_baselines import HarRV
from coincast.models.risk_network import NetworkRisk
from coincast.models.risk_walk import percent_returns
from coincast.prep import realized
from tests.conftest import tiny

START = pd.Timestamp("2025-06-01", tz="UTC")
RESTART = START + pd.Timedelta(days=3)  # the first service's last forecast is for START + 2 days
DAY, GRACE = pd.Timedelta(days=1), pd.Timedelta(minutes=1)
ETH, LTC = "binance/ETH/USDT", "binance/LTC/USDT"


def candles(name: str) -> pd.DataFrame:
    return load(name).loc[: START - DAY].iloc[-1100:]


def job(folder, pool: dict, init=None, epochs: int | None = 2) -> dict:
    return {"head": epochs and {"epochs": epochs}, "pool": pool, "init": init and str(init), "staging": str(folder)}


def weights(folder) -> list[torch.Tensor]:
    return list(NetworkRisk.load(folder, head.FILE).net_.state_dict().values())


def test_the_training_job_pools_saves_and_continues_the_head_as_the_walk(tmp_path):
    """The first training pools another market that lacks the newest candle (stepped later in the
    tick); a warm one three candles later keeps the network's weights (equal tensors) and forecasts
    what the walk's next fold does (fit, forecast the days since, fit again); a market new to the
    pool trains the network afresh; too little history or the head turned off: none."""
    btc, eth = candles("btc-usd"), candles("eth-usd")
    first = head.train(job(tmp_path / "m1", {ETH: eth.iloc[:-4]}), btc.iloc[:-3])
    assert first["trained"] and not first["warm"] and first["pooled"]["own"] == first["pooled"][ETH] > 0
    assert json.loads((tmp_path / "m1" / head.META).read_text())["through"] == btc.index[-4].isoformat()

    warm = head.train(job(tmp_path / "m2", {ETH: eth}, init=tmp_path / "m1"), btc)
    assert warm["trained"] and warm["warm"] and warm["record"] == first["record"] + 3
    assert all(torch.equal(a, b) for a, b in zip(weights(tmp_path / "m1"), weights(tmp_path / "m2")))
    r, gk, _ = percent_returns(btc)
    n = len(r)
    walk = NetworkRisk(max_epochs=2, pool=head.pool(btc.iloc[:-3], {ETH: eth.iloc[:-4]})).fit(r[: n - 3], gk[: n - 3])
    walk.forecast(r[:-1], gk[:-1], n - 3, LEVELS)  # the fold's days, each from the data through the day before
    walk.fit(r, gk)
    continued = NetworkRisk.load(tmp_path / "m2", head.FILE)
    assert not np.array_equal(continued.garch_.params_, NetworkRisk.load(tmp_path / "m1", head.FILE).garch_.params_)
    np.testing.assert_allclose(continued.forecast(r, gk, n, LEVELS), walk.forecast(r, gk, n, LEVELS), rtol=0, atol=1e-6)

    wider = head.train(job(tmp_path / "m3", {ETH: eth, LTC: candles("ltc-usd")}, init=tmp_path / "m2"), btc)
    assert not wider["warm"] and LTC in wider["pooled"]
    assert head.train(job(tmp_path / "m4", {}), btc.iloc[-500:]) == {
        "trained": False, "reason": f"the network's risk head needs {NetworkRisk().min_history} daily returns; the stream has 499"}
    assert head.train(job(tmp_path / "m5", {}, epochs=None), btc) is None
    assert not (tmp_path / "m4").exists() and not (tmp_path / "m5").exists()


class Counted:
    """Calls of NetworkRisk.fit and .load in this process (the service's; trainings run in the
    worker process), each passed on to the method itself."""

    def __init__(self, monkeypatch):
        self.fits = self.loads = 0
        fit, load_ = NetworkRisk.fit, NetworkRisk.load.__func__

        def counted_fit(net, *args, **kwargs):
            self.fits += 1
            return fit(net, *args, **kwargs)

        def counted_load(cls, *args, **kwargs):
            self.loads += 1
            return load_(cls, *args, **kwargs)

        monkeypatch.setattr(NetworkRisk, "fit", counted_fit)
        monkeypatch.setattr(NetworkRisk, "load", classmethod(counted_load))


def serve(store, start: pd.Timestamp, days: int) -> None:
    settings = tiny(window=20, train={"shards": 1})
    streams = [  # the hourly stream first: it has stored the day's last hour when the daily one forecasts
        Stream("btc-1h", "store:binance/BTC/USDT/1h", settings, (START - 5 * DAY).strftime("%Y-%m-%d"), 10_000, "warm", 2, 30),
        Stream("btc-1d", "store:binance/BTC/USDT/1d", settings, (START - 1100 * DAY).strftime("%Y-%m-%d"), 1, "warm", 2, 30,
               risk=StreamRisk(head_epochs=2)),
    ]
    clock, threads = SimClock(start + GRACE), torch.get_num_threads()
    torch.set_num_threads(1)
    with ReplayExchange(Replay(clock, days_before_today=None)) as exchange:
        service = Service(check(LiveConfig(streams, store)), clock, lambda name: exchange.client(timeout_ms=10_000),
                          lambda line: None, grace=GRACE, hold="all", threads=1, fetch_backoff_s=0.05)
        try:
            service.run(threading.Event(), until=start + days * DAY + GRACE)
        finally:
            torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Three days (a first model, a warm retrain a day later), then a new service over the same
    store for two more: (the store, the fits and loads of the head in the restarted service)."""
    store = tmp_path_factory.mktemp("head") / "live.duckdb"
    serve(store, START, 2)
    with pytest.MonkeyPatch.context() as mp:
        counted = Counted(mp)
        serve(store, RESTART, 1)
    with Store(store, read_only=True) as s:
        reg = Registry(s, create=False)
        rows = reg.con.execute("SELECT * FROM risk_forecasts ORDER BY target_time, model, risk").df()
        out = {"rows": rows, "models": reg.models("btc-1d"), "folder": reg.folder, "decisions": reg.decisions("btc-1d"),
               "daily": s.candles("binance", "BTC/USDT", "1d"), "hourly": s.candles("binance", "BTC/USDT", "1h")}
    rows["target_time"] = pd.to_datetime(rows["target_time"]).dt.tz_localize("UTC")
    return out, counted


def test_a_daily_stream_with_an_hourly_one_serves_network_har_from_the_saved_head(live):
    """Every risk row of the daily models is network_har or GARCH-t, and each network_har row is the
    level-by-level mean of the saved head's forecast (loaded by hand here) and HAR-RV's fitted
    through the model's last training candle on the stored hours."""
    run, _ = live
    rows, daily, hourly, models = run["rows"], run["daily"], run["hourly"], run["models"]
    assert set(rows["risk"]) == {"network_har", "garch_t"} and set(rows["stream"]) == {"btc-1d"}
    served = rows[rows["served"]]
    assert list(served["target_time"]) == list(pd.date_range(START, RESTART + DAY, freq="D"))  # one served each
    assert set(served["risk"]) <= {"network_har", "garch_t"}  # garch_t only while the risk guard holds
    through = dict(zip(models["id"], pd.to_datetime(models["trained_through"]).dt.tz_localize("UTC")))
    for m in models["id"]:
        meta = json.loads((run["folder"](m) / head.META).read_text())
        assert meta["through"] == through[m].isoformat() and meta["pool"] == []  # no other daily market configured
    heads = {m: NetworkRisk.load(run["folder"](m), head.FILE) for m in models["id"]}
    for r in rows[rows["risk"] == "network_har"].itertuples():
        c = daily.loc[: r.target_time - DAY]
        x, gk, index = percent_returns(c)
        k = int(c.index.get_loc(through[r.model]))  # returns through the model's last training candle
        measures = lambda hours, days, g: realized.model_inputs(  # noqa: E731
            realized.on_days(realized.daily_measures(hours), days), g)[0]
        rm_fit = measures(hourly[hourly.index < through[r.model] + DAY], index[:k], gk[:k])
        rm = measures(hourly[hourly.index < r.target_time], index, gk)
        har = HarRV().fit(x[:k], gk[:k], rm_fit).forecast(x, gk, len(x), LEVELS, rm)[-1]
        net = heads[r.model].forecast(x, gk, len(x), LEVELS)[-1]
        np.testing.assert_allclose(r.quantiles, (net + har) / 2, rtol=0, atol=1e-6)


def test_a_restarted_service_loads_the_heads_and_fits_none(live):
    run, counted = live
    rows = run["rows"]
    after = rows[rows["target_time"] >= RESTART]
    assert len(after[after["risk"] == "network_har"]) >= 2  # served (or forecast beside GARCH-t) after the restart
    assert counted.fits == 0 and counted.loads == after["model"].nunique()  # each model's head read once, none fitted


def test_a_warm_retrain_keeps_the_network_weights(live):
    run, _ = live
    models = run["models"].sort_values("created")
    assert len(models) >= 2
    figures = [json.loads(f)["risk_head"] for f in models["figures"]]
    assert figures[0]["trained"] and not figures[0]["warm"] and figures[1]["warm"]
    first, second = (weights(run["folder"](m)) for m in models["id"].iloc[:2])
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_the_shadow_verdict_judges_the_served_network_har_crps(live):
    """The challenger's shadow verdict weighs each model's served risk model's mean CRPS (here
    network_har's) on the candles judged, as it does GARCH-t's on a daily-only stream."""
    run, _ = live
    rows, decisions = run["rows"], run["decisions"]
    (verdict,) = [json.loads(d.figures) for d in decisions.itertuples() if d.kind in ("promotion", "rejection")]
    judged = pd.date_range(verdict["first"], verdict["last"], freq="D")
    mine = rows[(rows["risk"] == "network_har") & rows["target_time"].isin(judged)]
    assert len(mine) == 2 * len(judged) == 4  # champion and challenger on each judged candle
    crps = mine.groupby("model")["crps"].mean()
    assert (verdict["champion_crps"], verdict["challenger_crps"]) == pytest.approx(tuple(crps.sort_index()), rel=1e-12)
