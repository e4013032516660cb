"""The command line as a user meets it: one-line errors, exit 2, no traceback, nothing left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from arch import arch_model
from scipy import stats

from coincast import Forecaster, load
from coincast.models.step import cpu_runs_bf16_lstm
from tests.conftest import TINY_FLAGS, assert_user_error


def subprocess_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real entry point in a fresh interpreter (slow: used once)."""
    env = {**os.environ, "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-m", "coincast", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    btc = load("btc-usd")
    head = "timestamp,open,high,low,close,volume\n"
    rows = "".join(f"{t:%Y-%m-%d},{o},{h},{l},{c},{v}\n" for t, o, h, l, c, v in btc.iloc[:300].itertuples())
    lines = rows.splitlines(keepends=True)
    (d / "empty.csv").write_text("")
    (d / "text.csv").write_text("name,kind\nbtc,coin\n")
    (d / "nan.csv").write_text(head + "".join(lines[:100]) + "2018-01-01,1,1,1,,1\n" + "".join(lines[101:]))
    (d / "word.csv").write_text(head + "".join(lines[:100]) + lines[100].replace(lines[100].split(",")[4], "abc", 1) + "".join(lines[101:]))
    (d / "dupe.csv").write_text(head + "".join(lines[:100]) + lines[99] + "".join(lines[100:]))
    (d / "short.csv").write_text(head + "".join(lines[:30]))
    neg = lines[:]
    parts = neg[50].split(",")
    parts[4] = "-5"
    neg[50] = ",".join(parts)
    (d / "negative.csv").write_text(head + "".join(neg))
    (d / "ok.csv").write_text(head + rows)
    (d / "blocker").write_text("")
    (d / "fp16.toml").write_text('[train]\nprecision = "fp16"\n')
    (d / "shards.toml").write_text("[train]\nshards = 0\n")
    for name, text in BAD_TOML.items():
        (d / f"{name}.toml").write_text(text)
    (d / "noshrink.toml").write_text("[model]\nshrink = false\n")  # the network's own forecast, not persistence
    return d


# Settings files a user might write; each must stop before training with the setting named.
BAD_TOML = {
    "batch_text": '[train]\nbatch_size = "64"\n',
    "epochs_bool": "[train]\nepochs = true\n",
    "epochs_decimal": "[train]\nepochs = 2.5\n",
    "window_decimal": "[data]\nwindow = 20.0\n",
    "lr_text": '[train]\nlr = "0.01"\n',
    "lr_inf": "[train]\nlr = inf\n",
    "fraction_text": '[data]\ntest_fraction = "0.1"\n',
    "bidirectional_text": '[model]\nbidirectional = "no"\n',
    "hidden_text": '[model]\nhidden = [4, "x"]\n',
    "seed_negative": "[train]\nseed = -1\n",
    "max_gap_bool": "[data]\nmax_gap = true\n",
    "data_not_a_table": 'data = "btc-usd"\n',
    "features_empty": '[data]\nfeatures = ""\n',
}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "missing.csv"], "file not found: missing.csv"),
        (["--data", "empty.csv"], "empty"),
        (["--data", "text.csv"], "no numeric columns"),
        (["--data", "ok.csv", "--target", "price2"], "unknown column 'price2'"),
        (["--data", "ok.csv", "--features", "open,vwap"], "unknown feature 'vwap': use a column of the data"),
        (["--data", "word.csv"], "non-numeric value 'abc'"),
        (["--data", "nan.csv"], "missing value (NaN)"),
        (["--data", "dupe.csv"], "appears more than once"),
        (["--data", "short.csv"], "too few for windows of 20"),
        (["--data", "negative.csv"], "non-positive value"),
        (["--data", "ok.csv", "--window", "2"], "window must be at least 3"),
        (["--data", "ok.csv", "--epochs", "0"], "epochs must be at least 1"),
        (["--data", "ok.csv", "--out", "blocker/runs"], "choose a writable folder"),
        (["--data", "ok.csv", "--preset", "fast"], "unknown preset 'fast'"),
        (["--data", "ok.csv", "--config", "fp16.toml"], "precision must be auto, fp32 or bf16 (got 'fp16')"),
        (["--data", "ok.csv", "--precision", "fp64"], "precision must be auto, fp32 or bf16 (got 'fp64')"),
        (["--data", "ok.csv", "--config", "shards.toml"], "shards must be at least 1 (got 0)"),
        (["--data", "ok.csv", "--config", "batch_text.toml"],
         'train.batch_size must be a whole number (got "64", text): write batch_size = 64 without quotes'),
        (["--data", "ok.csv", "--config", "epochs_bool.toml"],
         "train.epochs must be a whole number (got true, a true/false value): e.g. epochs = 100"),
        (["--data", "ok.csv", "--config", "epochs_decimal.toml"],
         "train.epochs must be a whole number (got 2.5, a decimal number): e.g. epochs = 100"),
        (["--data", "ok.csv", "--config", "window_decimal.toml"],
         "data.window must be a whole number (got 20.0, a decimal number): write window = 20"),
        (["--data", "ok.csv", "--config", "lr_text.toml"],
         'train.lr must be a number (got "0.01", text): write lr = 0.01 without quotes'),
        (["--data", "ok.csv", "--config", "lr_inf.toml"], "train.lr must be a finite number (got inf, a decimal number)"),
        (["--data", "ok.csv", "--config", "fraction_text.toml"],
         'data.test_fraction must be a number (got "0.1", text): write test_fraction = 0.1 without quotes'),
        (["--data", "ok.csv", "--config", "bidirectional_text.toml"],
         'model.bidirectional must be true or false (got "no", text): e.g. bidirectional = true'),
        (["--data", "ok.csv", "--config", "hidden_text.toml"],
         'model.hidden must be a list of whole numbers (or one comma-separated string) (got [4, "x"], a list)'),
        (["--data", "ok.csv", "--config", "seed_negative.toml"], "seed must be between 0 and 4294967295 (got -1)"),
        (["--data", "ok.csv", "--seed", "-1"], "seed must be between 0 and 4294967295 (got -1)"),
        (["--data", "ok.csv", "--config", "max_gap_bool.toml"],
         "data.max_gap must be a number (got true, a true/false value): e.g. max_gap = 1.5"),
        (["--data", "ok.csv", "--config", "data_not_a_table.toml"],
         "'data' must be a table of settings (got 'btc-usd'): write [data] on its own line, then one setting "
         "per line, e.g. window = 50; the dataset itself is chosen with --data"),
        (["--data", "ok.csv", "--config", "features_empty.toml"], "the feature list is empty"),
        (["--data", "ok.csv", "--features", "close,sma400"],
         "feature 'sma400' looks back 400 rows but the data has 300: use a shorter period or more data"),
    ],
)
def test_run_bad_input(cli, files, args, message):
    # TINY_FLAGS first: a case's own --window/--epochs comes later and wins
    p = cli("run", *TINY_FLAGS, *args, "--out", "runs", cwd=files) if "--out" not in args else cli("run", *TINY_FLAGS, *args, cwd=files)
    assert_user_error(p, message)
    assert not (files / "runs").exists() or not any((files / "runs").iterdir())


@pytest.mark.skipif(cpu_runs_bf16_lstm(), reason="this CPU runs LSTM layers in bf16")
def test_bf16_on_a_cpu_without_it_is_a_user_error(cli, files):
    """An AVX2-only CPU (oneDNN has no bf16 LSTM kernels there): one line before training, nothing written."""
    p = cli("run", *TINY_FLAGS, "--data", "ok.csv", "--precision", "bf16", "--out", "runs_bf16", cwd=files)
    assert_user_error(p, "precision bf16: this CPU cannot run LSTM layers in bf16")
    assert not (files / "runs_bf16").exists() or not any((files / "runs_bf16").iterdir())


def test_run_predict_and_bad_models(cli, files, tmp_path):
    p = cli("run", "--data", str(files / "ok.csv"), *TINY_FLAGS, "--config", "noshrink.toml", "--out", str(tmp_path),
            cwd=files)
    assert p.returncode == 0, p.stderr
    folder = next(tmp_path.iterdir())
    sentence = json.loads((folder / "metrics.json").read_text())["verdict"]
    assert "persistence" in p.stdout and "always_up" in p.stdout and sentence in " ".join(p.stdout.split())
    # 300 days: too few for the risk models, which the run skips with the reason (metrics.json, one line)
    risk = json.loads((folder / "metrics.json").read_text())["risk"]
    assert risk["skipped"].startswith("the risk baselines need 365 daily returns before the first test day")
    assert f"risk baselines skipped: {risk['skipped']}\n" in p.stdout
    p = cli("predict", "--model", str(folder), cwd=files)
    assert p.returncode == 0, p.stderr
    # the line shows the saved model's own forecast from the recorded data, to the cent
    fc = Forecaster.load(folder).forecast_next(load(str(files / "ok.csv")))
    assert fc["date"].startswith("2018-06-13") and fc["predicted_price"] != fc["last_price"]
    assert (f"next step {fc['date']}: {fc['predicted_price']:,.2f} ({fc['change_pct']:+.2f}% from "
            f"{fc['last_price']:,.2f}, {fc['direction']})") in p.stdout, p.stdout
    # and the next move's range: GARCH(1,1)-t on the data's 299 returns, as arch itself forecasts it
    r = 100 * np.diff(np.log(load(str(files / "ok.csv"))["close"].to_numpy()))
    res = arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False).fit(disp="off")
    nu, sd = res.params["nu"], np.sqrt(res.forecast(horizon=1, reindex=False).variance.to_numpy()[-1, 0])
    q = res.params["mu"] + sd * np.sqrt((nu - 2) / nu) * stats.t.ppf([0.025, 0.1, 0.5, 0.9, 0.975], nu)
    price = fc["last_price"] * np.exp(q / 100)
    assert (f"risk (GARCH(1,1)-t on 299 returns): median {price[2]:,.2f} ({q[2]:+.2f}%), 80% range {price[1]:,.2f} .. "
            f"{price[3]:,.2f} ({q[1]:+.2f}% .. {q[3]:+.2f}%), 95% range {price[0]:,.2f} .. {price[4]:,.2f}") in p.stdout
    lines = (files / "ok.csv").read_text().splitlines(keepends=True)
    (files / "ok200.csv").write_text("".join(lines[:201]))  # the header and 200 candles: 199 returns
    p = cli("predict", "--model", str(folder), "--data", "ok200.csv", cwd=files)
    assert p.returncode == 0 and "risk: no range (the risk forecast needs 250 returns; the data has 199)" in p.stdout

    btc = load("btc-usd").drop(columns="volume")
    btc.iloc[:100].to_csv(files / "novolume.csv")
    assert_user_error(cli("predict", "--model", str(folder), "--data", "novolume.csv", cwd=files), "lacks ['volume']")

    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    assert_user_error(cli("predict", "--model", str(folder), cwd=files), "corrupt or truncated")
    assert_user_error(cli("predict", "--model", str(tmp_path / "none"), cwd=files), "no model in")


def test_entry_point_exits_2_without_traceback(files):
    assert_user_error(subprocess_cli("run", "--data", "missing.csv", cwd=files), "file not found: missing.csv")


def test_datasets_lists_rows_and_dates(cli, tmp_path):
    p = cli("datasets", cwd=tmp_path)
    assert p.returncode == 0
    assert "btc-usd" in p.stdout and "3064" in p.stdout and "2017-08-17" in p.stdout and "tutorial" in p.stdout


def test_bad_flag_is_a_usage_error_with_exit_2(cli, tmp_path):
    p = cli("run", "--epochs", "many", cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "'--epochs'" in p.stderr


def test_command_line_starts_without_torch():
    """Commands that do not train (datasets, store, --help) must not pay for importing torch."""
    code = "import sys, coincast, coincast.cli; print('torch' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"
