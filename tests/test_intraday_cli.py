"""--intraday on `run`, `backtest`, `audit` and `predict`: the series used is recorded in metrics.json,
and a wrong one stops the command before any training with one line and exit 2."""

from __future__ import annotations

import json

import pytest

from coincast.data import load
from tests.conftest import TINY_FLAGS, assert_user_error, tiny_flags

DAYS = slice("2023-01-01", "2024-03-31")  # 456 daily candles: enough history for the risk baselines


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("intraday")
    load("btc-usd").loc[DAYS].to_csv(d / "daily.csv")
    hourly = load("btc-usd-1h")
    hourly.loc[DAYS].to_csv(d / "hourly.csv")
    hourly.loc["2019-01-01":"2019-02-01"].to_csv(d / "old.csv")
    hourly.loc[DAYS].drop(columns="close").to_csv(d / "noclose.csv")
    return d


BAD = [
    ("eth-usd", "--intraday eth-usd: has 1-day bars, not 1-hour candles"),
    ("old.csv", "--intraday old.csv: its hours (2019-01-01 00:00:00+00:00 to 2019-02-01 23:00:00+00:00) do not overlap"),
    ("noclose.csv", "--intraday noclose.csv: no close column"),
    ("btc-usd-15m", "--intraday btc-usd-15m: no such hourly dataset"),
]


@pytest.mark.parametrize("spec, message", BAD)
def test_backtest_refuses_a_wrong_hourly_series_before_training(cli, files, tmp_path, spec, message):
    p = cli("backtest", "--data", "daily.csv", "--intraday", spec, *tiny_flags("backtest"), "--out", str(tmp_path / "runs"),
            cwd=files)
    assert_user_error(p, message)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["run", "audit"])
def test_run_and_audit_refuse_a_wrong_hourly_series_before_training(cli, files, tmp_path, command):
    out = ["--out", str(tmp_path / "runs")] if command == "run" else []
    p = cli(command, "--data", "btc-usd", "--intraday", "noclose.csv", *tiny_flags(command), *out, cwd=files)
    assert_user_error(p, "--intraday noclose.csv: no close column; hourly candles need open, high, low and close")
    assert not (tmp_path / "runs").exists()


def test_run_backtest_and_predict_record_and_use_the_hourly_file(cli, files, tmp_path):
    p = cli("run", "--data", "daily.csv", "--intraday", "hourly.csv", *TINY_FLAGS, "--out", str(tmp_path / "run"), cwd=files)
    assert p.returncode == 0, p.stderr
    folder = next((tmp_path / "run").iterdir())
    record = json.loads((folder / "metrics.json").read_text())["intraday"]
    rows = 456 * 24 - 1  # 2023-03-24 13:00: Binance halted trading, the hour has no candle
    assert record == {"series": "hourly.csv", "note": "given", "rows": rows,
                      "first": "2023-01-01 00:00:00+00:00", "last": "2024-03-31 23:00:00+00:00"}

    p = cli("run", "--data", "daily.csv", *TINY_FLAGS, "--out", str(tmp_path / "plain"), cwd=files)
    assert p.returncode == 0, p.stderr  # a file has no hourly companion: none, and why
    record = json.loads((next((tmp_path / "plain").iterdir()) / "metrics.json").read_text())["intraday"]
    assert record["series"] is None and "give one with --intraday PATH" in record["note"]

    p = cli("backtest", "--data", "daily.csv", "--intraday", "hourly.csv", "--start", "2024-03-18", "--jobs", "1",
            "--bootstrap", "20", *tiny_flags("backtest"), "--out", str(tmp_path / "bt"), cwd=files)
    assert p.returncode == 0, p.stderr
    summary = json.loads((next((tmp_path / "bt").iterdir()) / "metrics.json").read_text())
    assert summary["intraday"]["series"] == "hourly.csv" and summary["intraday"]["rows"] == rows

    ok = cli("predict", "--model", str(folder), "--intraday", "hourly.csv", cwd=files)
    assert ok.returncode == 0 and " on 455 returns): median " in ok.stdout, ok.stderr  # the next move's ranges
    assert_user_error(cli("predict", "--model", str(folder), "--intraday", "noclose.csv", cwd=files),
                      "--intraday noclose.csv: no close column")
    assert_user_error(cli("predict", "--model", str(folder), "--data", "btc-usd,eth-usd", "--intraday", "hourly.csv",
                          cwd=files), "one hourly series goes with one daily series, and --data has 2 assets")


def test_every_daily_command_offers_intraday(cli, tmp_path):
    for command in ("run", "backtest", "audit", "predict"):
        p = cli(command, "--help", cwd=tmp_path)
        assert p.returncode == 0 and "--intraday" in p.stdout, command


def test_datasets_lists_the_hourly_series(cli, tmp_path):
    p = cli("datasets", cwd=tmp_path)
    assert p.returncode == 0
    for coin in ("btc", "eth", "ltc", "xrp", "ada", "bnb"):
        line = next(l for l in p.stdout.splitlines() if l.split() and l.split()[0] == f"{coin}-usd-1h")
        assert line.split()[1] == str(len(load(f"{coin}-usd-1h"))) and "2026-01-05 23:00" in line  # rows, last hour
