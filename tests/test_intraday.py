"""--intraday's loader (data/intraday.py): the default companion of each kind of daily data, files
read as --data reads them, and every wrong series refused with one line that names the fix."""

from __future__ import annotations

import pandas as pd
import pytest

from coincast.data import load
from coincast.data.intraday import resolve
from coincast.data.store import Store
from coincast.errors import DataError

FIRST, LAST = pd.Timestamp("2017-08-17 04:00", tz="UTC"), pd.Timestamp("2026-01-05 23:00", tz="UTC")


@pytest.fixture(scope="module")
def hourly():
    return load("btc-usd-1h")


def test_a_bundled_coin_defaults_to_its_hourly_series(btc, hourly):
    got = resolve(None, {"btc-usd": btc})
    assert got.series == "btc-usd-1h" and got.note == "default: btc-usd's hourly companion"
    pd.testing.assert_frame_equal(got.frame, hourly)
    assert got.record() == {"series": "btc-usd-1h", "note": got.note, "rows": 73403,
                            "first": str(FIRST), "last": str(LAST)}
    for coin in ("eth", "ltc", "xrp", "ada", "bnb"):
        assert resolve(None, {f"{coin}-usd": load(f"{coin}-usd")}).series == f"{coin}-usd-1h"


def test_the_hours_are_cut_to_the_daily_span(btc, hourly):
    daily = btc.loc["2020-01-01":"2020-03-31"]
    got = resolve("btc-usd-1h", {"my.csv": daily}).frame
    assert got.index[0] == pd.Timestamp("2020-01-01 00:00", tz="UTC")
    assert got.index[-1] == pd.Timestamp("2020-03-31 23:00", tz="UTC")  # no hour after the last daily close
    pd.testing.assert_frame_equal(got, hourly.loc["2020-01-01":"2020-03-31"])


def test_none_a_file_and_other_data_have_no_default(btc, hourly, tmp_path):
    assert resolve("none", {"btc-usd": btc}).frame is None
    assert resolve("none", {"btc-usd": btc}).record() == {"series": None, "note": "--intraday none"}
    none = resolve(None, {str(tmp_path / "d.csv"): btc})
    assert none.frame is None and "give one with --intraday PATH" in none.note
    assert resolve(None, {"btc-usd-1h": hourly}).frame is None  # hourly --data: no hourly companion
    assert resolve(None, {"btc-usd": btc, "eth-usd": load("eth-usd")}).frame is None  # several assets


def test_a_file_reads_as_data_does_close_times_and_parquet_included(btc, hourly, tmp_path):
    part = hourly.loc["2021-03-01":"2021-03-10"]
    path = tmp_path / "h.csv"
    closes = part.set_axis((part.index + pd.Timedelta(hours=1)).rename("timestamp"))  # close times, on the hour
    closes.to_csv(path)
    daily = {"btc-usd": btc.loc["2021-01-01":"2021-03-10"]}
    got = resolve(str(path), daily, timestamps="close")
    assert got.series == str(path) and got.note == "given"
    pd.testing.assert_frame_equal(got.frame, part)
    capital = tmp_path / "cap.csv"
    part.rename(columns=str.upper).to_csv(capital)  # OPEN/HIGH/...: any case
    pd.testing.assert_frame_equal(resolve(str(capital), daily).frame, part)
    parquet = tmp_path / "h.parquet"
    part.to_parquet(parquet)
    pd.testing.assert_frame_equal(resolve(str(parquet), daily).frame, part)


def test_a_store_reference_defaults_to_the_stores_hourly_candles(btc, hourly, tmp_path, monkeypatch):
    store = tmp_path / "s.duckdb"
    monkeypatch.setenv("COINCAST_STORE", str(store))
    daily, hours = btc.loc["2024-01-01":"2024-02-29"], hourly.loc["2024-01-01":"2024-03-10"]
    with Store(store) as db:
        db.upsert_candles(daily, "binance", "BTC/USDT", "1d")
    ref = "store:binance/BTC/USDT/1d"
    assert resolve(None, {ref: load(ref)}).frame is None  # no 1h candles held: none
    with Store(store) as db:
        db.upsert_candles(hours, "binance", "BTC/USDT", "1h")
    got = resolve(None, {ref: load(ref)})
    assert got.series == "store:binance/BTC/USDT/1h"
    pd.testing.assert_frame_equal(got.frame, hours.loc[:"2024-02-29"], check_freq=False)
    assert resolve(None, {"store:binance/BTC/USDT/1h": load("store:binance/BTC/USDT/1h")}).frame is None


@pytest.mark.parametrize("case, message", [
    ("daily", "--intraday eth-usd: has 1-day bars, not 1-hour candles; give the market's hourly candles"),
    ("four_hours", "has 4-hour bars, not 1-hour candles"),
    ("no_overlap", "do not overlap btc-usd's days (2024-01-01 to 2024-12-31); give the hourly candles of the same market"),
    ("no_high", "--intraday nohigh.csv: no high/low column; hourly candles need open, high, low and close"),
    ("unknown", "--intraday btc-usd-4h: no such hourly dataset; use one of btc-usd-1h, eth-usd-1h"),
    ("missing_file", "--intraday gone.csv: file not found: gone.csv"),
    ("several", "--intraday btc-usd-1h: one hourly series goes with one daily series, and --data has 2 assets"),
    ("hourly_data", "--intraday btc-usd-1h: hourly data go with daily --data, and btc-usd-1h has 1-hour bars"),
])
def test_a_wrong_series_is_refused_with_the_fix(case, message, btc, hourly, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hourly.loc["2019-01-01":"2019-02-01"].drop(columns=["high", "low"]).to_csv("nohigh.csv")
    hourly.loc["2019-01-01":"2019-02-01"].iloc[::4].to_csv("four.csv")
    hourly.loc["2019-01-01":"2019-02-01"].to_csv("old.csv")
    daily = {"btc-usd": btc.loc["2024-01-01":"2024-12-31"]}
    spec, raws = {
        "daily": ("eth-usd", daily), "four_hours": ("four.csv", daily), "no_overlap": ("old.csv", daily),
        "no_high": ("nohigh.csv", daily), "unknown": ("btc-usd-4h", daily), "missing_file": ("gone.csv", daily),
        "several": ("btc-usd-1h", {"btc-usd": btc, "eth-usd": btc}), "hourly_data": ("btc-usd-1h", {"btc-usd-1h": hourly}),
    }[case]
    with pytest.raises(DataError) as err:
        resolve(spec, raws)
    assert message in str(err.value) and "\n" not in str(err.value)

