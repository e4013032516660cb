"""The live service serves the distribution: each daily model's quantiles of the next return, its
ranges and 5% VaR, fitted on the model's own training data and scored live (CRPS, coverage, VaR
breaches), the risk guard against GARCH-t, and the shadow verdict on CRPS as well as RMSE.

The loop runs on the replay exchange in virtual time with a tiny point model; every stored figure
is checked against a computation by hand from the stored candles."""

import json
import threading

import numpy as np
import pandas as pd
import pytest

from coincast.data.store import Store
from coincast.evaluation import risk
from coincast.live import judge
from coincast.live.demo import run_demo
from coincast.live.registry import Registry
from coincast.models.risk_baselines import GarchT
from coincast.prep.volatility import PERCENT2, garman_klass
from tests.conftest import tiny

START = pd.Timestamp("2025-06-01", tz="UTC")
DAY = pd.Timedelta(days=1)


def demo(store, start, days):
    run_demo(store, start, None, days, threading.Event(), lambda line: None, settings=tiny(window=20, train={"shards": 1}),
             retrain_every=3, shadow=2, guard=3, head=False)  # GARCH-t: the daily path of a model without the head


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Three days, a restart, four more: (the store, its risk rows after the first run)."""
    store = tmp_path_factory.mktemp("risk") / "live.duckdb"
    demo(store, START, 3)
    with Store(store, read_only=True) as s:
        before = Registry(s, create=False).con.execute("SELECT * FROM risk_forecasts").df()
    demo(store, START + 3 * DAY, 4)
    return store, before


def read(store):
    with Store(store, read_only=True) as s:
        reg = Registry(s, create=False)
        rows = reg.con.execute("SELECT * FROM risk_forecasts ORDER BY stream, target_time, model, risk").df()
        models = reg.models()
        decisions = reg.decisions()
        candles = {name: s.candles("binance", sym, "1d") for name, sym in (("btc-1d", "BTC/USDT"), ("eth-1d", "ETH/USDT"))}
        records = {(m.stream, m.id): reg.risk_record(m.stream, m.id, "garch_t") for m in models.itertuples()}
    for col in ("target_time", "data_through"):
        rows[col] = pd.to_datetime(rows[col]).dt.tz_localize("UTC")
    return rows, models, decisions, candles, records


def test_each_daily_model_forecasts_garch_t_from_its_own_training_data(live):
    rows, models, _, candles, _ = read(live[0])
    assert set(rows["risk"]) == {"garch_t"}  # no hourly stream of the market: the daily-only path
    assert len(rows) and set(rows["stream"]) == {"btc-1d", "eth-1d"}
    through = dict(zip(models["id"], pd.to_datetime(models["trained_through"]).dt.tz_localize("UTC")))
    for r in rows.itertuples():
        c = candles[r.stream]
        r_all = 100 * np.diff(np.log(c["close"].loc[: r.data_through].to_numpy()))
        gk_all = PERCENT2 * garman_klass(c.loc[: r.data_through]).to_numpy()[1:]
        k = int(c.index.get_loc(through[r.model]))  # returns through the model's last training candle
        hand = GarchT().fit(r_all[:k], gk_all[:k]).forecast(r_all, gk_all, len(r_all), risk.LEVELS)[-1]
        q = np.asarray(r.quantiles)
        np.testing.assert_allclose(q, hand, rtol=1e-10)
        assert r.target_time == r.data_through + DAY and r.previous == c["close"].loc[r.data_through]
        at = lambda level: r.previous * np.exp(q[risk.level_index(risk.LEVELS, level)] / 100)  # noqa: E731
        assert (r.lo95, r.lo80, r.hi80, r.hi95) == pytest.approx((at(0.025), at(0.10), at(0.90), at(0.975)), rel=1e-12)
        assert r.var5 == q[risk.level_index(risk.LEVELS, 0.05)]
    served = rows[rows["served"]]
    assert not served.duplicated(["stream", "target_time"]).any()  # one served distribution per candle
    champions = {(s, t) for s, t in zip(rows["stream"], rows["target_time"])}
    assert {(s, t) for s, t in zip(served["stream"], served["target_time"])} == champions
    assert rows.groupby(["stream", "target_time"])["model"].nunique().max() == 2  # a challenger in shadow beside it


def test_scored_live_as_evaluation_risk_scores_them(live):
    rows, _, _, candles, records = read(live[0])
    scored = rows[rows["actual"].notna()]
    assert len(scored) >= 10 and rows["actual"].isna().sum() >= 1  # the newest candle is still open
    for r in scored.itertuples():
        y = 100 * np.log(candles[r.stream]["close"].loc[r.target_time] / r.previous)
        q = np.asarray(r.quantiles)[None, :]
        assert r.actual == pytest.approx(y, rel=1e-12)
        assert r.crps == pytest.approx(risk.crps([y], q, risk.LEVELS)[0], rel=1e-12)
        close = candles[r.stream]["close"].loc[r.target_time]
        assert (r.hit80, r.hit95) == (r.lo80 <= close <= r.hi80, r.lo95 <= close <= r.hi95)
        assert r.var5_breach == (y < r.var5)
    for (stream, model), rec in records.items():
        mine = scored[(scored["stream"] == stream) & (scored["model"] == model)]
        if mine.empty:
            assert rec == {"n": 0}
            continue
        assert rec["n"] == len(mine) and rec["crps"] == pytest.approx(mine["crps"].mean(), rel=1e-12)
        assert rec["coverage_80"] == mine["hit80"].mean() and rec["coverage_95"] == mine["hit95"].mean()
        assert rec["var5_breaches"] == mine["var5_breach"].sum()


def test_issued_risk_forecasts_never_change(live):
    store, before = live
    after, *_ = read(store)
    assert len(before) and len(after) > len(before)
    key = ["stream", "model", "risk", "target_time"]
    issued = ["issued_at", "served", "previous", "lo80", "hi80", "lo95", "hi95", "var5"]
    both = before.merge(after.assign(target_time=after["target_time"].dt.tz_localize(None)), on=key,
                        suffixes=("_1", "_2"))
    assert len(both) == len(before)
    for col in issued:
        assert (both[f"{col}_1"] == both[f"{col}_2"]).all(), col
    assert all(np.array_equal(a, b) for a, b in zip(both["quantiles_1"], both["quantiles_2"]))
    scored = both["actual_1"].notna()
    assert (both.loc[scored, "crps_1"] == both.loc[scored, "crps_2"]).all()


def test_shadow_decisions_judge_crps_as_well_as_rmse(live):
    rows, _, decisions, _, _ = read(live[0])
    judged = decisions[decisions["kind"].isin(["promotion", "rejection"])]
    assert len(judged)
    for d in judged.itertuples():
        fig = json.loads(d.figures)
        span = pd.date_range(fig["first"], fig["last"], freq="D")
        assert len(span) == fig["n"] == 2
        mean = {m: rows[(rows["model"] == m) & rows["target_time"].isin(span)]["crps"].mean()
                for m in (d.model, d.other)}
        assert fig["challenger_crps"] == pytest.approx(mean[d.model], rel=1e-12)
        assert fig["champion_crps"] == pytest.approx(mean[d.other], rel=1e-12)


# -- the rules, on hand-made rows ------------------------------------------------------------
DAYS = pd.date_range("2025-06-01", periods=4, freq="D", tz="UTC")


def points(errors) -> pd.DataFrame:
    return pd.DataFrame({"target_time": DAYS[: len(errors)], "error": np.asarray(errors, float),
                         "persistence_error": np.ones(len(errors))})


def crps(values) -> pd.DataFrame:
    return pd.DataFrame({"target_time": DAYS[: len(values)], "crps": np.asarray(values, float)})


def test_a_tie_on_both_scores_keeps_the_champion_and_one_better_score_promotes():
    same, lower, higher = points([1, -2, 3, 0.5]), points([1, -2, 2.9, 0.5]), points([1, -2, 3.1, 0.5])
    c, c_low, c_high = crps([1.0, 2.0, 1.5, 1.0]), crps([1.0, 2.0, 1.4, 1.0]), crps([1.0, 2.0, 1.6, 1.0])
    tie = judge.shadow_verdict(same, same.copy(), 4, c, c.copy())
    assert (tie["promote"], tie["tie"], tie["crps_tie"]) == (False, True, True)
    assert judge.shadow_verdict(same, same.copy(), 4, c_low, c)["promote"] is True  # points tie, better distribution
    assert judge.shadow_verdict(lower, same, 4, c, c.copy())["promote"] is True  # better point, same distribution
    assert judge.shadow_verdict(lower, same, 4, c_high, c)["promote"] is False  # better point, worse distribution
    assert judge.shadow_verdict(higher, same, 4, c_low, c)["promote"] is False  # worse point, better distribution
    partial = judge.shadow_verdict(lower, same, 4, crps([1.0, 2.0]), c)  # the challenger lacks two candles' scores
    assert partial["promote"] is True and "challenger_crps" not in partial  # judged on RMSE alone


def test_the_risk_guard_serves_garch_t_unless_the_served_model_beats_it():
    garch = crps([1.0, 1.0, 1.0, 1.0])
    assert judge.risk_verdict(crps([0.9, 0.9]), garch, 3) is None  # fewer than `guard` shared candles
    better = judge.risk_verdict(crps([2.0, 0.9, 0.9, 0.9]), garch, 3)  # the last 3 only
    assert better["skill"] is True and better["n"] == 3 and better["ratio"] == pytest.approx(0.9)
    assert judge.risk_verdict(garch.copy(), garch, 3)["skill"] is False  # a tie is no skill
    assert judge.risk_verdict(crps([0.5, 1.1, 1.0, 1.0]), garch, 3)["skill"] is False


def test_a_store_made_before_risk_forecasts_gains_the_table(tmp_path):
    path = tmp_path / "old.duckdb"
    with Store(path) as s:
        reg = Registry(s)
        reg.decide("btc-1d", START, "first", "btc-1d-m1", reason="an older store's decision")
        reg.con.execute("DROP TABLE risk_forecasts")  # as a store made before the table existed
    with Store(path) as s:
        reg = Registry(s)  # a writable open, as the service's
        assert reg.con.execute("SELECT count(*) FROM risk_forecasts").fetchone() == (0,)
        assert reg.risk_record("btc-1d", "btc-1d-m1", "garch_t") == {"n": 0}
        assert len(reg.decisions("btc-1d")) == 1
