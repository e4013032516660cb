"""The command line as a user meets it: one-line errors, exit 2, no traceback, nothing left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coincast import Forecaster, load
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
    (d / "noshrink.toml").write_text("[model]\nshrink = false\n")  # the network's own forecast, not persistence
    return d


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
    ],
)
def test_run_bad_input(cli, files, args, message):
    # TINY_FLAGS first: a case's own --window/--epochs comes later and wins
    p = cli("run", *TINY_FLAGS, *args, "--out", "runs", cwd=files) if "--out" not in args else cli("run", *TINY_FLAGS, *args, cwd=files)
    assert_user_error(p, message)
    assert not (files / "runs").exists() or not any((files / "runs").iterdir())


def test_run_predict_and_bad_models(cli, files, tmp_path):
    p = cli("run", "--data", str(files / "ok.csv"), *TINY_FLAGS, "--config", "noshrink.toml", "--out", str(tmp_path),
            cwd=files)
    assert p.returncode == 0, p.stderr
    assert "persistence" in p.stdout and "always_up" in p.stdout and "beat persistence" in p.stdout
    folder = next(tmp_path.iterdir())
    p = cli("predict", "--model", str(folder), cwd=files)
    assert p.returncode == 0, p.stderr
    # the line shows the saved model's own forecast from the recorded data, to the cent
    fc = Forecaster.load(folder).forecast_next(load(str(files / "ok.csv")))
    assert fc["date"].startswith("2018-06-13") and fc["predicted_price"] != fc["last_price"]
    assert (f"next step {fc['date']}: {fc['predicted_price']:,.2f} ({fc['change_pct']:+.2f}% from "
            f"{fc['last_price']:,.2f}, {fc['direction']})") in p.stdout, p.stdout

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
    assert "btc-usd" in p.stdout and "3065" in p.stdout and "2017-08-17" in p.stdout and "tutorial" in p.stdout


def test_bad_flag_is_a_usage_error_with_exit_2(cli, tmp_path):
    p = cli("run", "--epochs", "many", cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "'--epochs'" in p.stderr


def test_command_line_starts_without_torch():
    """Commands that do not train (datasets, store, --help) must not pay for importing torch."""
    code = "import sys, coincast, coincast.cli; print('torch' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"
