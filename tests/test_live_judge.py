"""The shadow verdict: a challenger is promoted only on a strictly lower shadow RMSE, or, where
both forecast the distribution (daily streams), when it is no worse by RMSE and by the served risk
model's CRPS and better on one; a tie keeps the champion and is recorded as "kept: tie". With the
default settings (shrinkage on) a new stream's forecasts are persistence's until its live record
shows skill, so every point comparison of a short run is a tie and the distribution decides."""

import json
import threading

import duckdb
import numpy as np
import pandas as pd

from coincast.live import judge
from coincast.live.demo import demo_settings, run_demo
from tests.conftest import tiny

DAYS = pd.date_range("2025-06-01", periods=5, freq="D", tz="UTC")


def rows(errors, persistence_errors) -> pd.DataFrame:
    return pd.DataFrame({"target_time": DAYS[: len(errors)], "error": np.asarray(errors, float),
                         "persistence_error": np.asarray(persistence_errors, float)})


def test_equal_records_are_a_tie_that_keeps_the_champion():
    same = rows([1.0, -2.0, 3.0, 0.5], [1.0, -2.0, 3.0, 0.5])
    verdict = judge.shadow_verdict(same, same.copy(), 4)
    assert verdict["promote"] is False and verdict["tie"] is True
    assert verdict["challenger_rmse"] == verdict["champion_rmse"]


def test_only_a_strictly_lower_rmse_promotes():
    champion = rows([1.0, -2.0, 3.0, 0.5], [1.0, 1.0, 1.0, 1.0])
    better = judge.shadow_verdict(rows([1.0, -2.0, 2.9, 0.5], [1.0] * 4), champion, 4)
    worse = judge.shadow_verdict(rows([1.0, -2.0, 3.1, 0.5], [1.0] * 4), champion, 4)
    assert (better["promote"], better["tie"]) == (True, False)
    assert (worse["promote"], worse["tie"]) == (False, False)
    assert judge.shadow_verdict(rows([1.0, 2.0], [1.0, 1.0]), champion, 4) is None  # too few shared candles


def test_the_demo_runs_the_default_shrinkage():
    assert demo_settings().model.shrink is True


def test_the_loop_with_default_settings_judges_point_ties_on_the_distribution(tmp_path):
    store, lines = tmp_path / "live.duckdb", []
    settings = tiny(window=20, train={"shards": 1})  # the default preset's settings, shrinkage on
    assert settings.model.shrink is True
    run_demo(store, DAYS[0], None, 9, threading.Event(), lines.append, settings=settings,
             retrain_every=3, shadow=3, guard=10, head=False)
    with duckdb.connect(str(store), read_only=True) as con:
        decisions = con.execute("SELECT stream, kind, model, other, figures, reason FROM decisions "
                                "WHERE kind IN ('promotion', 'rejection') ORDER BY id").df()
        champions = dict(con.execute("SELECT stream, id FROM models WHERE status = 'champion'").fetchall())
        served = con.execute("SELECT point, persistence, shrink FROM forecasts WHERE served").df()
    assert (served["shrink"] == 0.0).all() and (served["point"] == served["persistence"]).all()
    assert len(decisions) >= 2 and set(decisions["stream"]) == {"btc-1d", "eth-1d"}
    for d in decisions.itertuples():
        fig = json.loads(d.figures)
        assert fig["challenger_rmse"] == fig["champion_rmse"]  # the points tie: persistence's price
        assert fig["promote"] == (fig["challenger_crps"] < fig["champion_crps"])  # the distribution decides
        assert (d.kind == "promotion") == fig["promote"]
        assert ("CRPS" in d.reason) and (d.kind == "promotion" or d.reason.startswith("kept: challenger worse on a score"))
    assert any(line for line in lines if "DECISION:" in line and "CRPS" in line), "\n".join(lines)
