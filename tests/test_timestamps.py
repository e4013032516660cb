"""A frame's index is each candle's OPEN time; files with close times are converted or refused.

The exogenous join counts on it: a daily value is used only from the first candle that
closes after it was published, and a candle's close is its label plus the bar length.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from coincast import load
from coincast.data.store import load_ref
from coincast.errors import DataError
from coincast.prep.inputs import build_inputs
from tests.conftest import TINY_FLAGS, assert_user_error

DAY, MS = pd.Timedelta(days=1), pd.Timedelta(milliseconds=1)


@pytest.fixture(scope="module")
def btc():
    return load("btc-usd").loc[:"2020-06-30"]  # real daily candles, labelled by open time


@pytest.fixture(scope="module")
def files(tmp_path_factory, btc):
    """The same candles as files whose timestamps are open times, and three kinds of close times."""
    d = tmp_path_factory.mktemp("timestamps")

    def write(name, index):
        f = btc.copy()
        f.index = pd.DatetimeIndex(index, name="timestamp")
        f.to_csv(d / name)

    write("open.csv", btc.index)
    write("close.csv", btc.index + DAY)  # close = the next candle's open (undetectable)
    write("close_ms.csv", btc.index + DAY - MS)  # 23:59:59.999 (Binance's close_time)
    write("close_s.csv", btc.index + DAY - pd.Timedelta(seconds=1))  # 23:59:59
    hourly = load("btc-usd-1h").iloc[:1500]  # holds a real outage (2017-09-06)
    h = hourly.copy()
    h.index = pd.DatetimeIndex(hourly.index + pd.Timedelta(hours=1) - MS, name="timestamp")
    h.to_csv(d / "hourly_close.csv")
    return d


@pytest.mark.parametrize("name", ["close.csv", "close_ms.csv", "close_s.csv"])
def test_close_times_convert_to_the_same_frame(files, btc, name):
    pd.testing.assert_frame_equal(load(files / "open.csv"), btc)
    pd.testing.assert_frame_equal(load(files / name, timestamps="close"), btc)


def test_hourly_close_times_convert_across_an_outage(files):
    hourly = load("btc-usd-1h").iloc[:1500]
    pd.testing.assert_frame_equal(load(files / "hourly_close.csv", timestamps="close"), hourly)


def test_exogenous_join_gives_the_same_inputs_for_both_conventions(files):
    def inputs(name, timestamps):
        return build_inputs(load(files / name, timestamps=timestamps), "close", ["close", "rsi14"], ["fear-greed"]).frame

    want = inputs("open.csv", "open")
    # Fear & Greed dated D is known at 00:00 UTC of D: candle D (closing 00:00 of D+1) is the first to use it
    assert want.loc["2020-03-12", "fear_greed"].item() == 14 and want.loc["2020-03-13", "fear_greed"].item() == 10
    for name in ("close.csv", "close_ms.csv", "close_s.csv"):
        pd.testing.assert_frame_equal(inputs(name, "close"), want)
    # read as open times, close times would label candle 03-12 (closing 00:00 of 03-13) as 03-13 and
    # give it the value published exactly at its close: the leak the convention prevents
    naive = inputs("close.csv", "open").loc["2020-03-13"]
    assert naive["close"].item() == want.loc["2020-03-12", "close"].item() and naive["fear_greed"].item() == 10


@pytest.mark.parametrize("name", ["close_ms.csv", "close_s.csv", "hourly_close.csv"])
def test_close_times_without_the_flag_are_refused(files, name):
    with pytest.raises(DataError, match="as candle close times do, but coincast labels each candle by its open "
                                        "time: pass --timestamps close"):
        load(files / name)


def test_command_line_timestamps(cli, files, tmp_path):
    assert_user_error(cli("run", *TINY_FLAGS, "--data", str(files / "close_ms.csv"), "--out", "runs", cwd=tmp_path),
                      "close_ms.csv: every timestamp sits just before a full minute (2017-08-17 23:59:59.999000+00:00, ...)")
    assert_user_error(cli("run", *TINY_FLAGS, "--data", str(files / "close.csv"), "--timestamps", "middle", cwd=tmp_path),
                      "timestamps must be 'open' or 'close' (got 'middle')")
    runs = {}
    for name, flag in (("open.csv", "open"), ("close_ms.csv", "close")):
        p = cli("run", *TINY_FLAGS, "--data", str(files / name), "--timestamps", flag, "--out", f"runs-{flag}", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        folder = next((tmp_path / f"runs-{flag}").iterdir())
        runs[flag] = pd.read_csv(folder / "forecast.csv", index_col="date")
        p = cli("predict", "--model", str(folder), cwd=tmp_path)  # the recorded convention is reused
        assert p.returncode == 0 and "next step 2020-07-01" in p.stdout, p.stderr
    pd.testing.assert_frame_equal(runs["open"], runs["close"])
    assert json.loads((next((tmp_path / "runs-close").iterdir()) / "config.json").read_text())["data"]["timestamps"] == "close"
    store = tmp_path / "store.duckdb"
    p = cli("store", "import", str(files / "close_ms.csv"), "--symbol", "BTC/USDT", "--timeframe", "1d",
            "--timestamps", "close", "--store", str(store), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    stored = load_ref("store:binance/BTC/USDT/1d", store)
    assert stored.index.equals(load(files / "open.csv").index)
