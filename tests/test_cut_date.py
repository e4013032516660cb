"""Several assets share one calendar cut, `--test-start`, and one statement of the split rule."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from coincast import load, run
from coincast.backtest.engine import BacktestSettings, start_position
from coincast.flows.run import prepare
from coincast.prep import windows
from tests.conftest import tiny
from tests.conftest import TINY_FLAGS, assert_user_error

ASSETS = ["btc-usd", "xrp-usd", "ada-usd"]  # xrp and ada start 8 months after btc


def test_prepared_cuts_leave_no_training_target_inside_any_test():
    prep = prepare(",".join(ASSETS), tiny(window=20))
    first_test = min(b.frame.index[prep.cuts[a]] for a, b in prep.inputs.items())
    for asset, b in prep.inputs.items():
        assert b.frame.index[prep.cuts[asset] - 1] < first_test, asset
        assert b.frame.index[prep.cuts[asset]] == first_test, asset  # the same calendar cut
    # the cut is the latest of the assets' own last-10% points (each keeps >= 90% for training)
    own = [load(a).index[windows.first_test_row(len(load(a)), 20, 0.1)] for a in ASSETS]
    assert first_test == max(own) and max(own) > min(own)


@pytest.fixture(scope="module")
def several(tmp_path_factory):
    return run(",".join(ASSETS), tiny(window=20), tmp_path_factory.mktemp("runs"))


def test_no_training_or_validation_target_on_or_after_any_test_date(several):
    t = several.forecast
    first = {a: t.index[(t["asset"] == a).to_numpy()].min() for a in ASSETS}
    first_test = min(first.values())
    assert set(first.values()) == {first_test}
    split = json.loads((several.folder / "metrics.json").read_text())["split"]
    assert pd.Timestamp(split["test_start"]) == first_test and split["rule"].startswith("the latest")
    for asset in ASSETS:
        train_val, test = (pd.Timestamp(d) for d in split["assets"][asset]["train_val"]), split["assets"][asset]["test"]
        lo, hi = train_val
        assert hi < first_test and hi == first_test - pd.Timedelta(days=1), asset
        assert lo == load(asset).index[19]  # the first window's target
        assert pd.Timestamp(test[0]) == first_test and pd.Timestamp(test[1]) == load(asset).index[-1]
    # one network saw every asset's windows up to the shared cut, and nothing after
    n_train = sum(int((load(a).index < first_test).sum()) - 19 for a in ASSETS)
    assert several.forecaster.train_shape_[0] == n_train


def test_test_start_on_one_asset(cli, tmp_path):
    p = cli("run", *TINY_FLAGS, "--data", "btc-usd", "--test-start", "2025-06-01", "--out", "runs", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    folder = next((tmp_path / "runs").iterdir())
    forecast = pd.read_csv(folder / "forecast.csv", index_col="date", parse_dates=["date"])
    assert forecast.index[0] == pd.Timestamp("2025-06-01", tz="UTC") and forecast.index[-1] == load("btc-usd").index[-1]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["split"]["rule"] == "--test-start"
    assert metrics["split"]["assets"]["btc-usd"]["train_val"][1].startswith("2025-05-31")
    assert json.loads((folder / "config.json").read_text())["data"]["test_start"] == "2025-06-01"
    # --no-risk-head (in TINY_FLAGS): the baselines only, and the run says so; with btc-usd's hourly
    # candles (the default) the served model is then the GARCH-t + HAR-RV average
    assert metrics["risk"]["network_skipped"].endswith("turned off (model.risk_head = false)")
    assert not {"network", "network_har"} & set(metrics["risk"]["baselines"]) and metrics["risk"]["forecast"] == "garch_har"


def test_test_start_from_the_api_keeps_validation_before_it(tmp_path):
    r = run("btc-usd", tiny(window=20, test_start="2025-09-01"), tmp_path)
    start = pd.Timestamp("2025-09-01", tz="UTC")
    assert r.forecast.index[0] == start and r.forecaster.val_index_.max() == start - pd.Timedelta(days=1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--test-start", "June"], "test start must be a date YYYY-MM-DD (got 'June')"),
        (["--test-start", "2031-01-01"], "--test-start 2031-01-01 is outside the data (2017-08-17 to 2026-01-05)"),
        (["--test-start", "2017-08-30"], "only 0 training windows of 20 rows before the test start 2017-08-30"),
        (["--test-start", "2017-08-17"], "outside the data"),
        (["--data", "btc-usd,xrp-usd", "--test-start", "2018-05-20"],
         "xrp-usd: only 0 training windows of 20 rows before the test start 2018-05-20 (need 10): choose a "
         "--test-start on or after 2018-06-02, a shorter --window, or leave xrp-usd out"),
    ],
)
def test_bad_test_start_is_a_one_line_error(cli, tmp_path, args, message):
    p = cli("run", *TINY_FLAGS, "--data", "btc-usd", *args, "--out", "runs", cwd=tmp_path)
    assert_user_error(p, message)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_run_and_backtest_share_the_split_rule(btc):
    s = tiny(window=20)
    assert start_position(btc, s, BacktestSettings()) == windows.first_test_row(len(btc), 20, 0.1)
    prep = prepare("btc-usd", s)
    assert prep.cuts["btc-usd"] == windows.first_test_row(len(btc), 20, 0.1)
