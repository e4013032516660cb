"""`coincast evaluate`: the walk-forward skill grid (the protocol `make skill` runs) as a command,
with a tiny model on two coins and the last 8 days (two warm folds each), and on daily and hourly
candles of one coin over the last 3 days with fresh folds (two each)."""

import json

import pandas as pd
import pytest

from coincast.backtest.engine import BacktestSettings, walk_forward
from coincast.config import preset
from coincast.data import load
from coincast.evaluation import stats
from coincast.evaluation.metrics import score
from coincast.flows.backtest import load_inputs
from coincast.flows.evaluate import run_evaluation
from tests.conftest import assert_user_error, one_torch_thread, tiny, tiny_flags

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

DAYS = 8


def test_cli_evaluate_writes_one_folder_with_the_grid(cli, tmp_path):
    out = tmp_path / "runs"
    p = cli("evaluate", "--data", "btc-usd,eth-usd", "--presets", "default,tutorial", "--days", str(DAYS),
            *tiny_flags("evaluate", window=12), "--out", str(out), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    folder, = out.iterdir()
    assert {f.name for f in folder.iterdir()} == {"evaluation.json", "evaluation.csv", "report.html", "skill.png"}
    doc = json.loads((folder / "evaluation.json").read_text())
    rows = doc["rows"]
    assert [(r["coin"], r["preset"]) for r in rows] == [("btc-usd", "default"), ("btc-usd", "tutorial"),
                                                        ("eth-usd", "default"), ("eth-usd", "tutorial")]
    assert all(r["timeframe"] == "1d" and r["days"] == r["steps"] == DAYS and r["folds"] == 2 for r in rows)
    assert doc["meta"]["days"] == DAYS and doc["meta"]["refit"] == "warm"
    # btc-usd default's row is the warm walk-forward `coincast backtest --refit warm` runs over the last 8 days
    s = tiny("default", window=12, target="close")
    s.train.batch_size = preset("default").train.batch_size  # the command has no --batch-size: the preset's
    inputs, _ = load_inputs("btc-usd", s)
    bt = BacktestSettings(start=str(inputs.frame.index[-DAYS].date()), refit="warm")
    result = walk_forward(inputs, s, bt)
    table = result.table
    assert rows[0]["first"] == str(table.index[0].date()) and rows[0]["last"] == str(load("btc-usd").index[-1].date())
    assert rows[0]["rmse_ratio"] == pytest.approx(score(table, result.models)["model"]["rmse_ratio"], rel=1e-6)
    assert rows[0]["dm_p"] == pytest.approx(stats.dm_record(table)["p_one_sided"], rel=1e-6)
    html = (folder / "report.html").read_text()
    assert "RMSE / pers." in html and "eth-usd" in html and "data:image/png;base64" in html
    assert "eth-usd 1d tutorial: RMSE/pers" in p.stdout


FRESH = ["--days", "3", "--retrain-every", "2", "--refit", "fresh"]  # daily folds of 2 + 1 days, hourly of 48 + 24 hours


def test_cli_evaluate_daily_and_hourly_candles_with_fresh_folds(cli, tmp_path):
    out = tmp_path / "runs"
    p = cli("evaluate", "--data", "btc-usd", "--presets", "default", "--timeframes", "1d,1h", *FRESH,
            *tiny_flags("evaluate", window=12), "--out", str(out), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    folder, = out.iterdir()
    rows = json.loads((folder / "evaluation.json").read_text())["rows"]
    daily, hourly = rows
    assert (daily["timeframe"], daily["days"], daily["steps"], daily["folds"]) == ("1d", 3, 3, 2)
    # the same calendar days on hourly candles: their 72 hours, retrained every 2 x 24 of them
    assert (hourly["timeframe"], hourly["days"], hourly["steps"], hourly["folds"]) == ("1h", 3, 72, 2)
    assert (hourly["first"], hourly["last"]) == ("2026-01-03 00:00", "2026-01-05 23:00")
    assert daily["first"] == "2026-01-03"
    csv = pd.read_csv(folder / "evaluation.csv")
    assert list(csv["timeframe"]) == ["1d", "1h"] and list(csv["steps"]) == [3, 72]
    assert ">timeframe<" in (folder / "report.html").read_text()
    assert "btc-usd 1h default: RMSE/pers" in p.stdout


def test_fresh_grid_rows_are_each_timeframes_backtest(tmp_path):
    """Every fold of both runs a job (here in this process; tests/test_ray.py runs them on a cluster);
    each row is the fresh walk-forward `coincast backtest` runs on that timeframe's candles
    (shrinkage off: the network's own forecasts)."""
    overrides = {"data": {"window": 12}, "train": {"epochs": 1}, "model": {"hidden": [4, 4], "shrink": False}}
    run = run_evaluation(["btc-usd"], ["default"], 3, 2, runs_dir=tmp_path, overrides=overrides,
                         timeframes=["1d", "1h"], refit="fresh")
    for row, name, start, every in zip(run.rows, ("btc-usd", "btc-usd-1h"), ("2026-01-03", "2026-01-03 00:00"), (2, 48)):
        s = tiny("default", window=12, target="close", model={"shrink": False})
        s.train.batch_size = preset("default").train.batch_size
        inputs, _ = load_inputs(name, s)
        result = walk_forward(inputs, s, BacktestSettings(start=start, retrain_every=every, refit="fresh"))
        assert row["steps"] == len(result.table) and row["folds"] == len(result.folds)
        assert row["rmse_ratio"] != 1.0  # the network's forecasts, not persistence's
        assert row["rmse_ratio"] == pytest.approx(score(result.table, result.models)["model"]["rmse_ratio"], rel=1e-6)
        assert row["dm_p"] == pytest.approx(stats.dm_record(result.table)["p_one_sided"], rel=1e-6)


@pytest.mark.parametrize("args, words", [
    (["--presets", "default,bogus"], "unknown preset 'bogus'"),
    (["--data", "btc-usd,no-such-coin"], "no-such-coin"),
    (["--days", "100000"], "fewer than --days 100000"),
    (["--days", "0"], "days must be at least 1 (got 0)"),
    (["--ray-address", "auto"], "--ray-address needs --executor ray"),
    (["--executor", "bogus"], "executor must be 'local' or 'ray' (got 'bogus')"),
    (["--timeframes", "1d,4h"], "unknown timeframe '4h': use 1d, 1h or both"),
    (["--timeframes", ","], "give at least one timeframe"),
    (["--data", "btc-usd,tutorial", "--timeframes", "1h"], "no hourly candles for tutorial"),
    (["--data", "btc-usd-1h"], "btc-usd-1h has 1h candles, not 1d ones"),
    (["--timeframes", "1h", "--days", "100000"], "btc-usd-1h has 3064 days of inputs for preset default, fewer than --days 100000"),
    (["--refit", "bogus"], "refit must be 'warm' or 'fresh' (got 'bogus')"),
    (["--retrain-every", "0"], "retrain interval must be at least 1 day (got 0)"),
])
def test_cli_evaluate_bad_input_is_one_line_exit_2_nothing_written(cli, tmp_path, args, words):
    out = tmp_path / "runs"
    p = cli("evaluate", "--data", "btc-usd", "--presets", "default", "--days", str(DAYS),
            *tiny_flags("evaluate", window=12), "--out", str(out), *args, cwd=tmp_path)
    assert_user_error(p, words)
    assert not out.exists() or not any(out.iterdir())
