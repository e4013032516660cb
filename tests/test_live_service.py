"""End to end: the live service on the replay exchange (real ccxt client on 127.0.0.1, real
DuckDB, the real worker process), two streams, a tiny model, a simulated ~5 weeks on virtual
time, stopped for three days in the middle and restarted.

The run: 2025-06-01 to 06-21 (21 candles), down for 06-22 and 06-23, then 06-24 to 07-06.
"""

import json
import threading
from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pytest

from coincast.data.store import Store
from coincast.live.demo import run_demo
from coincast.live.registry import models_dir
from coincast.models.forecaster import Forecaster
from tests.conftest import dm_p_by_hand, tiny

START, RESTART = pd.Timestamp("2025-06-01", tz="UTC"), pd.Timestamp("2025-06-24", tz="UTC")
DAY = pd.Timedelta(days=1)
STREAMS = {"btc-1d": "BTC/USDT", "eth-1d": "ETH/USDT"}
RETRAIN, SHADOW, GUARD = 7, 3, 10
ISSUED = ["stream", "model", "target_time", "issued_at", "data_through", "role", "served",
          "point", "lo80", "hi80", "lo95", "hi95", "persistence"]


def tables(store) -> SimpleNamespace:
    con = duckdb.connect(str(store), read_only=True)
    try:
        t = SimpleNamespace(**{name: con.execute(f"SELECT * FROM {name}").df()
                               for name in ("models", "forecasts", "decisions", "candles")})
    finally:
        con.close()
    for frame in (t.forecasts, t.decisions):
        frame["target_time"] = pd.to_datetime(frame["target_time"]).dt.tz_localize("UTC")
    return t


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    store = tmp_path_factory.mktemp("live") / "live.duckdb"
    settings = tiny(window=20, model={"shrink": False}, train={"shards": 1})
    lines = []
    common = dict(store=store, speed=None, stop=threading.Event(), log=lines.append, settings=settings, head=False,
                  retrain_every=RETRAIN, shadow=SHADOW, guard=GUARD)
    run_demo(start=START, days=20, **common)  # ticks 06-01 .. 06-21
    first = tables(store)
    run_demo(start=RESTART, days=12, **common)  # ticks 06-24 .. 07-06
    return SimpleNamespace(store=store, first=first, end=tables(store), lines=lines)


def served(t, stream):
    f = t.forecasts
    return f[(f["stream"] == stream) & f["served"]].sort_values("target_time")


def test_a_forecast_for_every_candle_the_service_ran_through_and_missed_ones_recorded(live):
    for stream in STREAMS:
        rows = served(live.end, stream)
        days = pd.date_range(START, pd.Timestamp("2025-07-06", tz="UTC"), freq="D")
        down = [pd.Timestamp("2025-06-22", tz="UTC"), pd.Timestamp("2025-06-23", tz="UTC")]
        assert list(rows["target_time"]) == [d for d in days if d not in down]  # one served forecast each
        d = live.end.decisions
        missed = d[(d["stream"] == stream) & (d["kind"] == "missed")]
        assert list(missed["target_time"]) == down  # closed while down: recorded, never forecast
        assert not (d["kind"] == "stale").any()
        # issued while the target candle was open, from the candle before it
        issued = pd.to_datetime(rows["issued_at"]).dt.tz_localize("UTC")
        assert ((issued > rows["target_time"]) & (issued < rows["target_time"] + DAY)).all()
        assert (pd.to_datetime(rows["data_through"]).dt.tz_localize("UTC") == rows["target_time"] - DAY).all()
        model = rows[rows["model"] != "persistence"]  # persistence (guard fallback) has no intervals
        assert (model["lo95"] < model["lo80"]).all() and (model["lo80"] < model["point"]).all()
        assert (model["point"] < model["hi80"]).all() and (model["hi80"] < model["hi95"]).all()


def test_retrains_on_schedule_and_models_load(live, tmp_path):
    m = live.end.models
    for stream in STREAMS:
        mine = m[m["stream"] == stream].sort_values("created")
        through = list(pd.to_datetime(mine["trained_through"]).dt.tz_localize("UTC"))
        # rule: train when RETRAIN candles have closed since the last training's data; the
        # ticks seen: last candles 05-31..06-20, then 06-23..07-05 after the restart
        seen = list(pd.date_range("2025-05-31", "2025-06-20", freq="D", tz="UTC")) + \
            list(pd.date_range("2025-06-23", "2025-07-05", freq="D", tz="UTC"))
        expected = [seen[0]]
        for last in seen:
            if last - expected[-1] >= RETRAIN * DAY:
                expected.append(last)
        assert through == expected
        assert set(mine["status"]) <= {"champion", "shadow", "retired"}
        assert (mine["status"] == "champion").sum() == 1
        for model_id in mine.loc[mine["status"].isin(["champion", "shadow"]), "id"]:
            Forecaster.load(models_dir(live.store) / model_id)  # files exist and load


def test_shadow_decisions_recorded_with_figures_from_the_same_candles(live):
    d, f = live.end.decisions, live.end.forecasts
    judged = d[d["kind"].isin(["promotion", "rejection"])]
    assert set(judged["stream"]) == set(STREAMS)
    for row in judged.itertuples():
        fig = json.loads(row.figures)
        assert fig["n"] == SHADOW
        span = pd.date_range(pd.Timestamp(fig["first"]), pd.Timestamp(fig["last"]), freq="D")
        assert len(span) == SHADOW
        for model, key in ((row.model, "challenger_rmse"), (row.other, "champion_rmse")):
            rows = f[(f["stream"] == row.stream) & (f["model"] == model) & f["target_time"].isin(span)]
            assert len(rows) == SHADOW
            err = rows["point"] - rows["actual"]
            assert fig[key] == pytest.approx(float(np.sqrt(np.mean(err**2))), rel=1e-12)
        lower = {k: fig[f"challenger_{k}"] < fig[f"champion_{k}"] for k in ("rmse", "crps")}
        assert fig["promote"] == (lower["rmse"] and lower["crps"]) and not fig["tie"]  # better on both: neither ties here
        assert (row.kind == "promotion") == fig["promote"]


def test_live_scores_equal_a_recomputation_from_stored_rows(live):
    t = live.end
    closes = {s: t.candles[t.candles["symbol"] == sym].set_index("open_time")["close"] for s, sym in STREAMS.items()}
    checked = 0
    for m in t.models.itertuples():
        rec = json.loads(m.live) if m.live else {"n": 0}
        rows = t.forecasts[(t.forecasts["model"] == m.id)].sort_values("target_time")
        close = closes[m.stream]
        times = rows["target_time"].dt.tz_localize(None)
        rows = rows[times.isin(close.index)].tail(GUARD)  # candles closed by the end, the last GUARD
        actual = close.loc[rows["target_time"].dt.tz_localize(None)].to_numpy()
        if rec["n"] == 0:
            assert rows.empty
            continue
        e, p = rows["point"].to_numpy() - actual, rows["persistence"].to_numpy() - actual
        assert rec["n"] == len(rows)
        assert rec["rmse"] == pytest.approx(np.sqrt(np.mean(e**2)), rel=1e-9)
        assert rec["rmse_ratio"] == pytest.approx(np.sqrt(np.mean(e**2)) / np.sqrt(np.mean(p**2)), rel=1e-9)
        if len(rows) >= 2:
            assert rec["dm_p_better"] == pytest.approx(dm_p_by_hand(e**2, p**2), rel=1e-6)
        hits = (rows["point"].to_numpy() > rows["persistence"].to_numpy()) == (actual > rows["persistence"].to_numpy())
        assert rec["direction_accuracy"] == pytest.approx(hits.mean())
        checked += 1
    assert checked >= 6


def test_forecasts_never_change_after_issue_except_realised_fields(live):
    before, after = live.first.forecasts, live.end.forecasts
    key = ["stream", "model", "target_time"]
    both = before.merge(after, on=key, suffixes=("_1", "_2"))
    assert len(both) == len(before)  # nothing removed
    for col in ISSUED:
        if col in key:
            continue
        a, b = both[f"{col}_1"], both[f"{col}_2"]
        assert ((a == b) | (a.isna() & b.isna())).all(), col
    was = both["actual_1"].notna()
    assert (both.loc[was, "actual_1"] == both.loc[was, "actual_2"]).all()  # realised once, then kept
    assert both["actual_2"].notna().all()  # the restart realised what the first run left open
    assert not after.duplicated(key).any()


def test_with_shrinkage_off_a_model_serves_its_network_forecast(live):
    f = live.end.forecasts
    model, fallback = f[f["model"] != "persistence"], f[f["model"] == "persistence"]
    assert (model["shrink"] == 1.0).all() and (model["point"] == model["network"]).all()
    assert fallback["network"].isna().all() and fallback["shrink"].isna().all()
    row = served(live.end, "btc-1d").query("model != 'persistence'").iloc[-1]  # the model's own forecast_next
    with Store(live.store, read_only=True) as store:
        candles = store.candles("binance", "BTC/USDT", "1d").loc[: pd.Timestamp(row["data_through"], tz="UTC")]
    fc = Forecaster.load(models_dir(live.store) / row["model"]).forecast_next(candles)
    assert fc["date"] == row["target_time"].isoformat() and row["point"] == fc["predicted_price"]
    assert not any("shrunk a" in line for line in live.lines)


def test_guard_serves_persistence_only_after_significantly_worse_live_records(live):
    d, f = live.end.decisions, live.end.forecasts
    for stream in STREAMS:
        rows = served(live.end, stream)
        flags = d[(d["stream"] == stream) & d["kind"].isin(["fallback", "fallback_end"])]
        on = pd.Series(False, index=rows.index)
        for flag in flags.itertuples():
            when = pd.Timestamp(flag.decided_at, tz="UTC")
            # >=: a tick scores (and decides) before it forecasts, at the same clock reading
            on[rows["issued_at"].map(lambda t: pd.Timestamp(t, tz="UTC")) >= when] = flag.kind == "fallback"
            if flag.kind == "fallback":
                fig = json.loads(flag.figures)
                assert fig["n"] == GUARD and fig["rmse_ratio"] > 1 and fig["dm_p_worse"] < 0.05
        # persistence is served exactly while the guard holds, flagged as a fallback
        assert ((rows["model"] == "persistence") == on).all()
        assert (rows.loc[on, "role"] == "fallback").all() and (rows.loc[on, "point"] == rows.loc[on, "persistence"]).all()
        champions = f[(f["stream"] == stream) & (f["role"] == "champion")]
        assert set(champions["target_time"]) >= set(rows["target_time"])  # the champion keeps its record meanwhile


def test_progress_lines_tell_the_story(live):
    text = "\n".join(live.lines)
    for phrase in ("training btc-1d-m1", "champion (first model)", "forecast for the 2025-06-01 00:00 candle's close",
                   "scored through", "shadow for the next 3 candles", "DECISION:", "missed 2025-06-22 00:00"):
        assert phrase in text, phrase
