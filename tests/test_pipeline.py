"""The whole run: tutorial shapes, the forecast table, baselines, the risk part, the run folder, determinism."""

from __future__ import annotations

import json

import markupsafe
import numpy as np
import pandas as pd
import pytest

from coincast import load, run
from coincast.data.datasets import daily_coins
from coincast.data.intraday import resolve
from coincast.errors import DataError, OutputError
from coincast.evaluation import risk
from coincast.evaluation.metrics import verdict
from coincast.flows.run_risk import run_risk
from coincast.models.risk_baselines import all_baselines
from coincast.models.risk_network import NetworkRisk
from coincast.models.risk_walk import pooled_returns, walk_forward_risk
from tests.conftest import tiny

# a default BTC run's risk models: btc-usd's hourly companion (btc-usd-1h) adds the realized ones
RISK_MODELS = ["empirical", "ewma_t", "garch_t", "har_t", "har_rv", "harq", "network", "garch_har", "network_har"]
SERVED = "network_har"  # the first of SERVED_MODELS the walk holds
RISK_COLUMNS = {"risk_q2.5": 0.025, "risk_q10": 0.10, "risk_q50": 0.50, "risk_q90": 0.90, "risk_q97.5": 0.975}


@pytest.fixture(scope="module")
def btc_run(tmp_path_factory):
    """One tiny run on BTC, shared by the tests of its folder, its risk part and its determinism."""
    return run("btc-usd", tiny(window=20, model={"risk_head": True}), tmp_path_factory.mktemp("btc"))


def test_tutorial_preset_has_the_tutorials_shapes_and_baselines(tmp_path):
    s = tiny("tutorial")
    s.model.hidden = [4, 4, 4]
    r = run("tutorial", s, tmp_path)
    assert r.shapes["train"] == [2400, 49, 35] and r.shapes["test"] == [267, 49, 35]
    assert r.shapes["target_column"] == 20 and r.shapes["target"] == "Bitcoin Price"
    assert str(r.forecast.index[0].date()) == "2017-03-31" and str(r.forecast.index[-1].date()) == "2017-12-22"
    m = r.metrics
    # the truths the README promises: persistence's normalised MSE and always-up's F1
    assert m["persistence"]["mse_norm"] == pytest.approx(0.0072, abs=5e-5)
    assert m["always_up"]["f1"] == pytest.approx(0.772, abs=1e-3)
    assert r.forecaster.settings.data.val_split == "random" and not r.forecaster.settings.train.early_stopping
    # no open/high/low in the tutorial's CSV: the run goes on, metrics.json and the report say why
    reason = "the risk baselines need daily open/high/low/close candles; the data have no open/high/low/close"
    assert json.loads((r.folder / "metrics.json").read_text())["risk"] == {"skipped": reason}
    assert "risk_q50" not in r.forecast.columns and not (r.folder / "risk.csv").exists()
    assert f"<p>Skipped: {reason}.</p>" in (r.folder / "report.html").read_text()


def test_run_folder_contents_and_forecast_table(btc_run):
    r = btc_run
    names = sorted(p.name for p in r.folder.iterdir())
    assert names == sorted(["config.json", "metrics.json", "timing.json", "forecast.csv", "report.html",
                            "price.png", "change.png", "confusion.png", "training.png", "risk.csv", "risk_fan.png",
                            "model.json", "model.safetensors"])
    assert list(r.folder.parent.iterdir()) == [r.folder]  # no staging folder left
    t = r.forecast
    assert list(t.columns) == ["actual", "model", "previous", "base", "persistence", "drift", "moving_average", "ar",
                               *RISK_COLUMNS]
    np.testing.assert_array_equal(t["persistence"], t["previous"])
    html = (r.folder / "report.html").read_text()
    assert "data:image/png;base64," in html and "persistence" in html and str(markupsafe.escape(r.verdict)) in html
    metrics = json.loads((r.folder / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"model", "persistence", "drift", "moving_average", "ar", "always_up"}
    assert metrics["verdict"] == r.verdict == verdict(r.metrics)  # the sentence of the run's own numbers


def test_same_seed_gives_identical_metrics_json(btc_run, tmp_path):
    again = run("btc-usd", tiny(window=20, model={"risk_head": True}), tmp_path)
    assert (again.folder / "metrics.json").read_text() == (btc_run.folder / "metrics.json").read_text()
    assert json.loads((again.folder / "timing.json").read_text())["risk_seconds"] > 0  # times stay out of metrics.json


@pytest.fixture(scope="module")
def risk_walk(btc_run):
    """Every risk model walked over the run's test days in one fold, outside the run, with the hourly
    candles a run on btc-usd gets by default (btc-usd-1h, cut to the daily span)."""
    days, btc = btc_run.forecast.index, load("btc-usd")
    hourly = resolve(None, {"btc-usd": btc})
    assert hourly.series == "btc-usd-1h"
    assert json.loads((btc_run.folder / "metrics.json").read_text())["intraday"] == hourly.record()
    pool = pooled_returns(btc, daily_coins(but="btc-usd"))  # the head trains on the other bundled coins too
    return walk_forward_risk(btc, start=days[0], retrain_every=len(days), end=days[-1], intraday=hourly.frame,
                             baselines=all_baselines(intraday=True) + [NetworkRisk(pool=pool)])


def test_risk_scores_are_one_fold_of_walk_forward_risk_on_the_test_days(btc_run, risk_walk):
    m = json.loads((btc_run.folder / "metrics.json").read_text())["risk"]
    days, w = btc_run.forecast.index, risk_walk
    assert m["skipped"] is None and m["network_skipped"] is None
    assert (m["days"], m["folds"], m["retrain_every"], m["first"]) == (len(days), 1, len(days), str(days[0]))
    assert w.actual.index.equals(days) and list(m["baselines"]) == RISK_MODELS
    y, ref = w.actual.to_numpy(), w.q("empirical")
    for name in RISK_MODELS:
        got, q = m["baselines"][name], w.q(name)
        assert got["crps"] == pytest.approx(risk.crps(y, q, w.tau).mean(), rel=1e-9), name
        if name != "empirical":
            assert got["dm_p"] == pytest.approx(risk.crps_dm(y, q, ref, w.tau)["dm_p"], rel=1e-9), name
    g = risk.crps_dm(y, w.q(SERVED), w.q("garch_t"), w.tau)
    net = m["baselines"][SERVED]
    assert (net["crps_ratio_garch"], net["dm_p_garch"]) == pytest.approx((g["ratio"], g["dm_p"]), rel=1e-9)
    assert m["verdict"].endswith(f"CRPS {g['ratio']:.3f}x, DM p = {g['dm_p']:.3g}.")
    assert m["forecast_columns"]["model"] == m["forecast"] == SERVED  # the fixed rule: the first served model walked


def test_forecast_csv_holds_the_served_models_quantiles_of_the_next_close_as_prices(btc_run, risk_walk):
    t = pd.read_csv(btc_run.folder / "forecast.csv", index_col=0, parse_dates=True)
    close = load("btc-usd")["close"]
    np.testing.assert_allclose(t["previous"], close.shift(1).loc[t.index], rtol=1e-9)  # a daily run's previous close
    q = risk_walk.q(SERVED)  # [N, K]
    for col, level in RISK_COLUMNS.items():
        want = t["previous"] * np.exp(q[:, risk.level_index(risk_walk.tau, level)] / 100)
        np.testing.assert_allclose(t[col], want, rtol=1e-6)
    prices = t[list(RISK_COLUMNS)].to_numpy()  # [N, 5]
    assert (np.diff(prices, axis=1) > 0).all()


def test_the_report_has_the_risk_section(btc_run):
    m = json.loads((btc_run.folder / "metrics.json").read_text())["risk"]
    html = (btc_run.folder / "report.html").read_text()
    assert "<h2>Risk: ranges of the next day's return</h2>" in html
    assert str(markupsafe.escape(m["verdict"])) in html and "one fold), every model fitted once" in html
    for name in RISK_MODELS:
        assert f"<th>{name}</th>" in html
    assert f'<tr class="model"><th>{m["best"]}</th>' in html
    assert 'alt="risk_fan.png"' in html and "forecast.csv's risk_q2.5, risk_q10, risk_q50, risk_q90, risk_q97.5: the network + HAR-RV average's" in html


def test_hourly_or_several_assets_skip_the_risk_part_with_the_reason(btc):
    hourly = load("btc-usd-1h")
    part = run_risk({"btc-usd-1h": hourly}, hourly.index[-50:])
    assert part.summary == {"skipped": "the risk baselines need daily candles; these are 1-hour bars"} and part.table is None
    part = run_risk({"a": btc, "b": btc}, btc.index[-50:])
    assert part.summary == {"skipped": "the risk part runs on one asset; this run has 2"}


def test_too_few_rows_fails_before_any_folder(tmp_path, btc):
    path = tmp_path / "short.csv"
    btc.iloc[:55].to_csv(path)
    with pytest.raises(DataError, match="too few for windows of 50"):
        run(path, tiny(), tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="choose a writable folder"):
        run("btc-usd", tiny(window=20), blocker / "runs")
