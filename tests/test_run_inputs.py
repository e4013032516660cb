"""Runs with indicators and Fear & Greed (and the price-only comparison), several assets,
and hourly bars with real outages, on the bundled data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from coincast import Forecaster, load, run
from coincast.errors import DataError
from coincast.evaluation.compare import compare, sentence
from tests.conftest import dm_p_by_hand, tiny

FEATURES = ["close", "rsi14", "macd", "bb20", "atr14"]


@pytest.fixture(scope="module")
def with_extras(tmp_path_factory):
    s = tiny(window=20, features=FEATURES, exog=["fear-greed"])
    return run("btc-usd", s, tmp_path_factory.mktemp("runs"))


def test_extra_inputs_run_compares_with_the_price_only_model(with_extras):
    r = with_extras
    assert r.inputs["indicators"] == ["rsi14", "macd", "macd_signal", "macd_hist", "bb20_pctb", "bb20_width", "atr14"]
    assert r.inputs["exogenous"] == ["fear_greed"] and r.inputs["plain"] == ["close"]
    assert r.forecaster.columns_ == ["close", *r.inputs["indicators"], "fear_greed"]
    assert r.price_only.columns_ == ["close"]
    # same windows for both: same number of training windows, same test targets
    assert r.price_only.train_shape_[0] == r.forecaster.train_shape_[0]
    assert list(r.forecast.columns[:6]) == ["actual", "model", "previous", "base", "price_only", "persistence"]
    assert r.forecast["price_only"].notna().all()
    # the test is the last 10% of the windows left after warm-up and the Fear & Greed start
    n_rows = len(load("btc-usd").loc["2018-02-01":])
    assert len(r.forecast) == (n_rows - 19) - int(round(0.9 * (n_rows - 19)))
    c = r.comparison
    assert c["price_only_inputs"] == ["close"] and "fear_greed" in c["extra_inputs"]
    f = r.forecast  # two-sided DM p of the test forecasts' squared errors, with extras vs price only
    p_better = dm_p_by_hand((f["model"] - f["actual"]) ** 2, (f["price_only"] - f["actual"]) ** 2)
    assert c["dm_p_two_sided"] == pytest.approx(2 * min(p_better, 1 - p_better), rel=1e-9)
    assert "price-only model" in c["sentence"]
    assert c["sentence"] == sentence(c["extra_inputs"], c["rmse_ratio"], c["dm_p_extras_better"])
    metrics = json.loads((r.folder / "metrics.json").read_text())
    assert metrics["comparison"]["sentence"] == c["sentence"] and "price_only" in metrics["metrics"]
    assert metrics["normalisation"]["rsi14"] == "standard" and metrics["normalisation"]["close"] == "ratio"
    html = (r.folder / "report.html").read_text()
    assert "Extra inputs vs price-only model" in html and "standard: (x - m) / s" in html


def test_saved_model_rebuilds_its_inputs_from_raw_candles(with_extras):
    r = with_extras
    back = Forecaster.load(r.folder)
    assert back.settings.data.features == FEATURES and back.settings.data.exog == ["fear-greed"]
    raw = load("btc-usd")
    assert back.forecast_next(raw) == r.forecaster.forecast_next(raw)
    again = back.predict(raw, start=r.forecast.index[0])
    np.testing.assert_allclose(again["predicted"], r.forecast["model"], rtol=1e-12)


def test_standard_rule_uses_training_statistics_only(with_extras):
    f = with_extras.forecaster
    n = f.normaliser_
    train = f.inputs(load("btc-usd")).frame.loc[: with_extras.forecast.index[0]].iloc[:-1]
    i = n.columns.index("rsi14")
    assert n.centers[i] == pytest.approx(train["rsi14"].mean()) and n.scales[i] == pytest.approx(train["rsi14"].std(ddof=0))


def test_comparison_sentence_and_test():
    idx = pd.RangeIndex(200)
    rng = np.random.default_rng(0)
    actual = 100 + rng.normal(size=200).cumsum()
    t = pd.DataFrame({"actual": actual, "model": actual + rng.normal(0, 0.1, 200),
                      "price_only": actual + rng.normal(0, 1.0, 200)}, index=idx)
    c = compare(t, ["rsi14"], ["close"])
    assert c["rmse_ratio"] < 0.2 and c["dm_p_extras_better"] < 0.01
    assert c["sentence"] == (f"Adding rsi14 improved accuracy significantly: RMSE {c['rmse_ratio']:.3f}x the "
                             f"price-only model's (Diebold-Mariano one-sided p = {c['dm_p_extras_better']:.3g}).")


def test_several_assets_one_model_scored_per_asset_and_pooled(tmp_path):
    r = run("btc-usd,eth-usd,xrp-usd", tiny(window=20), tmp_path)
    t = r.forecast
    assert list(t.columns[:2]) == ["asset", "actual"] and list(t["asset"].unique()) == ["btc-usd", "eth-usd", "xrp-usd"]
    assert set(r.per_asset) == {"btc-usd", "eth-usd", "xrp-usd"}
    # every asset is tested from one date: the latest of their own last-10%-of-windows points
    cut = max(load(a).index[int(round(0.9 * (len(load(a)) - 19))) + 19] for a in r.per_asset)
    for asset in r.per_asset:
        part = t[t["asset"] == asset]
        assert part.index[0] == cut and part.index[-1] == load(asset).index[-1]
    # one network saw every asset's training windows, all before the cut
    assert r.forecaster.train_shape_[0] == sum(int((load(a).index < cut).sum()) - 19 for a in r.per_asset)
    # pooled errors are in % of the last price: comparable across price levels
    assert 1 < r.metrics["persistence"]["rmse"] < 5 and r.per_asset["btc-usd"]["persistence"]["rmse"] > 500
    assert r.metrics["model"]["accuracy"] == pytest.approx(
        np.mean([(p > q) == (a > q) for p, q, a in zip(t["model"], t["previous"], t["actual"])]))
    assert sorted(p.name for p in r.folder.glob("price-*.png")) == ["price-btc-usd.png", "price-eth-usd.png", "price-xrp-usd.png"]
    assert "Per asset" in (r.folder / "report.html").read_text()
    assert json.loads((r.folder / "config.json").read_text())["dataset"] == "btc-usd,eth-usd,xrp-usd"
    fc = Forecaster.load(r.folder).forecast_next(load("xrp-usd"))
    assert fc["last_price"] == load("xrp-usd")["close"].iloc[-1]


def test_assets_with_different_columns_fail_before_training(tmp_path):
    with pytest.raises(DataError, match="assets must share columns: tutorial has"):
        run("btc-usd,tutorial", tiny(window=20), tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def hourly(tmp_path_factory):
    """The first 8000 hourly candles: 2017-08 to 2018-07, with 6 real exchange outages."""
    path = tmp_path_factory.mktemp("hourly") / "btc-1h.csv"
    load("btc-usd-1h").iloc[:8000].to_csv(path)
    return path


def test_hourly_windows_never_span_an_outage(hourly, tmp_path):
    r = run(hourly, tiny(window=20), tmp_path)
    f = load(hourly)
    big = f.index[1:][np.diff(f.index) > pd.Timedelta("90min")]  # rows that follow a gap
    assert len(big) == 6
    # every gap removes the 19 windows whose rows straddle it (2 gaps lie 25 rows apart)
    assert r.gaps["train_windows_dropped"] + r.gaps["test_windows_dropped"] == 6 * 19
    assert r.gaps["test_windows_dropped"] == 3 * 19  # the test period (2018-06/07) holds 3 outages
    pos = f.index.get_indexer(r.forecast.index)
    for p in pos:  # no forecast's window (rows p-19 .. p) holds a gap
        assert (np.diff(f.index[p - 19 : p + 1]) <= pd.Timedelta("90min")).all()
    assert "57 test" in (r.folder / "report.html").read_text()


def test_no_gap_limit_keeps_every_window(hourly, tmp_path):
    s = tiny(window=20, max_gap="none")
    r = run(hourly, s, tmp_path)
    assert r.gaps["train_windows_dropped"] == r.gaps["test_windows_dropped"] == 0
    assert len(r.forecast) == (8000 - 19) - int(round(0.9 * (8000 - 19)))


def test_daily_data_drops_nothing_and_next_step_refuses_a_gap(hourly, tmp_path):
    f = Forecaster(tiny(window=20)).fit(load(hourly).iloc[:3400])
    assert f.gap_dropped_ == 19 * 2  # 2017-09-06 and 2018-01-04
    raw = load(hourly)
    with pytest.raises(DataError, match="span a time gap"):
        f.forecast_next(raw.loc[:"2018-07-04 10:00"])  # the outage ended 2 hours before
    assert f.forecast_next(raw)["date"].startswith("2018-07-")
    d = Forecaster(tiny(window=20)).fit(load("btc-usd").iloc[:400])
    assert d.gap_dropped_ == 0
