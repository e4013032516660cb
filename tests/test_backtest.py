"""Walk-forward backtest on real bundled BTC with a tiny model: folds, refits, report, errors."""

import json

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape as html_escape

from coincast.backtest.engine import BacktestSettings, check, walk_forward
from coincast.backtest.trading import TradingSettings
from coincast.data import load
from coincast.errors import ConfigError, DataError
from coincast.backtest import trading
from coincast.evaluation.metrics import verdict
from coincast.evaluation.stats import direction_verdict
from coincast.flows.backtest import run_backtest
from coincast.models.forecaster import Forecaster
from coincast.prep.windows import fill_zeros
from tests.conftest import assert_user_error, dm_p_by_hand, one_torch_thread, tiny, tiny_flags

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


SMALL = {"window": 12, "target": "close"}  # tiny(**SMALL): the tiny model on windows of 12 days


@pytest.fixture(scope="module")
def raw():
    return load("btc-usd").iloc[-400:]


START = "2025-12-15"  # 22 test days to 2026-01-05: folds of 7, 7, 7, 1


def test_fresh_expanding_folds_train_only_on_the_past(raw):
    frame = fill_zeros(raw)
    r = walk_forward(frame, tiny(**SMALL), BacktestSettings(start=START), "close", extra=raw)
    t, f = r.table, r.folds
    assert (t.index == frame.index[frame.index >= pd.Timestamp(START, tz="UTC")]).all()
    assert len(f) == 4 and list(f["test_days"]) == [7, 7, 7, 1]
    assert (f["train_last"] < f["test_first"]).all()
    assert (f["train_last"].shift(-1).dropna() == f["test_last"].iloc[:-1]).all()  # each fold retrains on the last one
    assert (f["train_first"] == frame.index[0]).all() and (f["refit"] == "fresh").all()
    np.testing.assert_allclose(t["persistence"], t["previous"])
    np.testing.assert_allclose(t["actual"], frame.loc[t.index, "close"])
    for c in ["model", "drift", "moving_average", "ar", "lo80", "hi80", "lo95", "hi95", "vol20", "high", "low"]:
        assert t[c].notna().all(), c
    assert (t["lo95"] <= t["lo80"]).all() and (t["lo80"] <= t["model"]).all() and (t["hi80"] <= t["hi95"]).all()


def test_rolling_window_keeps_train_size(raw):
    r = walk_forward(fill_zeros(raw), tiny(**SMALL), BacktestSettings(start=START, window="rolling", train_size=150), "close")
    f = r.folds
    assert (f["train_rows"] == 150).all()
    assert (f["train_first"].diff().dropna() == pd.Timedelta(days=7)).all()


def test_warm_refit_continues_for_few_epochs(raw):
    s = tiny(**SMALL)
    s.train.epochs = 3
    r = walk_forward(fill_zeros(raw), s, BacktestSettings(start=START, refit="warm", warm_epochs=1, warm_span=100), "close",
                     network=True)
    assert list(r.folds["refit"]) == ["full", "warm", "warm", "warm"]
    assert r.folds["train_rows"].iloc[0] > 300 and (r.folds["train_rows"].iloc[1:] == 100).all()  # recent rows only
    assert r.folds["epochs_run"].iloc[0] == 3 and (r.folds["epochs_run"].iloc[1:] == 1).all()
    fresh = walk_forward(fill_zeros(raw), s, BacktestSettings(start=START), "close", network=True)
    np.testing.assert_allclose(r.table["network"].iloc[:7], fresh.table["network"].iloc[:7])  # fold 0 is the same fit
    assert (r.table["network"].iloc[7:] - fresh.table["network"].iloc[7:]).abs().max() > 0  # later folds differ
    assert "previous fold" in r.backtest.describe() and "last 100 rows" in r.backtest.describe()


def test_parallel_folds_match_sequential(raw):
    frame = fill_zeros(raw.iloc[:-8])  # two folds
    bt = BacktestSettings(start=START, retrain_every=7)
    seq = walk_forward(frame, tiny(**SMALL), bt, "close")
    bt.jobs = 2
    par = walk_forward(frame, tiny(**SMALL), bt, "close")
    pd.testing.assert_frame_equal(seq.table, par.table, rtol=1e-5)


def test_run_backtest_writes_a_complete_run_folder(tmp_path):
    s = tiny(**SMALL)
    bt = BacktestSettings(start=START, refit="warm", warm_epochs=1, shrink_from="validation")  # 22 days: no record yet
    run = run_backtest("btc-usd", s, bt, TradingSettings(stop_loss_pct=5), runs_dir=tmp_path, n_boot=200)
    files = {p.name for p in run.folder.iterdir()}
    assert {"config.json", "metrics.json", "timing.json", "forecast.csv", "folds.csv", "returns.csv", "report.html",
            "forecast_intervals.png", "equity.png", "drawdown.png", "per_year.png"} <= files
    assert [p.name for p in tmp_path.iterdir()] == [run.folder.name]  # no staging folder left
    m = json.loads((run.folder / "metrics.json").read_text())
    assert m["test"]["days"] == 22 and m["test"]["folds"] == 4
    assert "warm" in m["refit_rule"]
    assert {"model", "persistence", "drift", "moving_average", "ar", "always_up"} <= set(m["metrics"])
    t = run.result.table  # the p-value is the one of the 22 forecasts' squared errors vs persistence's
    want = dm_p_by_hand((t["model"] - t["actual"]) ** 2, (t["persistence"] - t["actual"]) ** 2)
    assert m["diebold_mariano"]["p_one_sided"] == pytest.approx(want, rel=1e-9)
    assert set(m["trading"]["results"]) == {"buy_and_hold", "model", "persistence", "drift", "moving_average", "ar",
                                            "p_up", "model_vol_target"}  # the last two on the risk forecast
    # the verdict is the sentences of this run's own numbers: point, RMSE interval, direction, trading, risk trading
    assert len(m["verdict"]) == 6 and m["verdict"][4:] == m["trading"]["risk"]["verdict"]
    assert m["verdict"][0] == verdict(m["metrics"])
    assert m["verdict"][2] == direction_verdict(m["direction"]["model"])
    assert m["verdict"][3] == trading.verdict(m["trading"]["results"], m["bootstrap"]["sharpe_minus_buy_and_hold"])
    html = (run.folder / "report.html").read_text()
    assert str(html_escape(m["verdict"][0])) in html and "data:image/png;base64" in html
    table = pd.read_csv(run.folder / "forecast.csv", index_col=0)
    assert len(table) == 22 and "lo95" in table.columns
    # the last fold's model is in the folder: it forecasts the day after the data, as `predict` shows
    assert Forecaster.load(run.folder).forecast_next(load("btc-usd"))["date"].startswith("2026-01-06")


def test_fresh_folds_come_back_as_safetensors_bytes_and_the_last_model_is_kept(raw):
    frame = fill_zeros(raw.iloc[:-8])  # two folds, in two processes: each model travels as bytes
    bt = BacktestSettings(start=START, retrain_every=7, jobs=2, shrink_from="validation")
    r = walk_forward(frame, tiny(**SMALL), bt, "close")
    seq = walk_forward(frame, tiny(**SMALL), BacktestSettings(start=START, retrain_every=7, shrink_from="validation"), "close")
    window = frame.iloc[-2 * tiny(**SMALL).data.window :]
    got, want = r.model.predict(window, network=True), seq.model.predict(window, network=True)
    pd.testing.assert_frame_equal(got, want, rtol=1e-5)


def test_backtest_builds_indicators_and_exogenous_inputs_as_run_does(tmp_path):
    s = tiny(**SMALL)
    s.data.features, s.data.exog = ["close", "rsi14"], ["fear-greed"]
    run = run_backtest("btc-usd", s, BacktestSettings(start=START, refit="warm", warm_epochs=1), runs_dir=tmp_path, n_boot=50)
    config = json.loads((run.folder / "config.json").read_text())
    assert config["features"].split(",") == ["close", "rsi14", "fear_greed"]
    assert run.summary["test"]["days"] == 22


# -- bad input: one line, exit 2, nothing written ----------------------------------------------
def test_library_errors(raw):
    frame = fill_zeros(raw)
    with pytest.raises(DataError, match="outside the data"):
        check(frame, tiny(**SMALL), BacktestSettings(start="2030-01-01"))
    with pytest.raises(ConfigError, match="shorter than one retrain interval"):
        check(frame, tiny(**SMALL), BacktestSettings(start="2026-01-02", retrain_every=7))
    with pytest.raises(ConfigError, match="smaller than the window"):
        check(frame, tiny(**SMALL), BacktestSettings(start=START, window="rolling", train_size=15))
    with pytest.raises(DataError, match="too few to train"):
        check(frame, tiny(**SMALL), BacktestSettings(start=str(raw.index[5].date())))


@pytest.mark.parametrize("args, words", [
    (["--start", "2031-05-01"], "outside the data"),
    (["--start", "someday"], "start 'someday' is not a date: use --start YYYY-MM-DD"),
    (["--start", "2026-01-03"], "shorter than one retrain interval"),
    (["--window", "rolling", "--train-size", "10"], "smaller than the window"),
    (["--fee-bps", "-3"], "fees cannot be negative"),
    (["--threshold", "abc"], "threshold must be a number"),
    (["--p-margin", "0.7"], "P(up) margin must be in [0, 0.5) (got 0.7): e.g. --p-margin 0.05"),
    (["--features", "close,rsx14"], "unknown feature 'rsx14'"),
    (["--exog", "no_such_series.csv"], "file not found: no_such_series.csv"),
    (["--features", "close,rsi999999"], "feature 'rsi999999' looks back 999,999 rows, more than the 10,000 allowed"),
    (["--seed", "-1"], "seed must be between 0 and 4294967295 (got -1)"),
    (["--shrink-from", "test"], "shrink-from must be 'record' or 'validation' (got 'test')"),
])
def test_cli_bad_input_is_one_line_exit_2_nothing_written(cli, tmp_path, args, words):
    out = tmp_path / "runs"
    p = cli("backtest", *tiny_flags("backtest", window=12), "--out", str(out), *args, cwd=tmp_path)
    assert_user_error(p, words)
    assert not out.exists() or not any(out.iterdir())
