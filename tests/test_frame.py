"""The frame contract: reading files with and without dates, and every bad-input case."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from coincast.data import load
from coincast.data.datasets import bundled_path, dataset_info
from coincast.data.frame import select_columns
from coincast.errors import DataError


def test_bundled_btc_is_a_valid_frame(btc):
    assert isinstance(btc.index, pd.DatetimeIndex) and str(btc.index.tz) == "UTC"
    assert list(btc.columns) == ["open", "high", "low", "close", "volume"]
    assert btc.index.is_monotonic_increasing and btc.index.is_unique
    assert len(btc) == 3064 and str(btc.index[0].date()) == "2017-08-17"
    assert btc.loc["2024-03-13", "close"].item() == pytest.approx(73072.41)


def test_tutorial_dataset_carries_inferred_dates(tutorial_frame):
    assert tutorial_frame.shape == (2717, 35)
    assert tutorial_frame.columns[20] == "Bitcoin Price"
    assert str(tutorial_frame.index[0].date()) == "2010-07-17"
    assert str(tutorial_frame.index[-1].date()) == "2017-12-23"


def test_dataset_listing_has_rows_and_ranges():
    info = dataset_info().set_index("name")
    assert {"btc-usd", "eth-usd", "tutorial"} <= set(info.index)
    assert info.loc["eth-usd", "rows"] == 3064
    assert info.loc["btc-usd", "last"] == "2026-01-05"
    assert info.loc["btc-usd-1h", "first"] == "2017-08-17 04:00" and info.loc["btc-usd-1h", "last"] == "2026-01-05 23:00"


def test_dateless_csv_gets_a_range_index(tmp_path):
    path = tmp_path / "seed.csv"
    frame = load("tutorial")
    frame.reset_index(drop=True).to_csv(path, index=False)
    f = load(path)
    assert isinstance(f.index, pd.RangeIndex) and f.shape == (2717, 35)


def test_coinmarketcap_style_file(tmp_path):
    path = tmp_path / "cmc.csv"
    btc = load("btc-usd").iloc[:100]
    pd.DataFrame({"SNo": range(100), "Name": "Bitcoin", "Date": btc.index.strftime("%Y-%m-%d"),
                  "High": btc.high.values, "Low": btc.low.values, "Close": btc.close.values}).to_csv(path, index=False)
    f = load(path)
    assert "Name" not in f.columns and list(f.columns) == ["SNo", "High", "Low", "Close"]
    _, target = select_columns(f, None, None)
    assert target == "Close"


def test_parquet(tmp_path, btc):
    path = tmp_path / "btc.parquet"
    btc.iloc[:200].reset_index().rename(columns={"date": "timestamp"}).to_parquet(path)
    assert load(path).equals(btc.iloc[:200])


def test_columns_by_name_or_index(tutorial_frame):
    f, t = select_columns(tutorial_frame, "20", None)
    assert t == "Bitcoin Price" and f.shape[1] == 35
    f, t = select_columns(tutorial_frame, "bitcoin price", ["1", "Hash Rate"])
    assert list(f.columns) == ["Bitcoin Price", "Block Height", "Hash Rate"]


def test_unsorted_timestamps_are_sorted_with_a_warning(tmp_path, btc):
    path = tmp_path / "shuffled.csv"
    btc.iloc[:100].sample(frac=1, random_state=0).reset_index().to_csv(path, index=False)
    with pytest.warns(UserWarning, match="sorted"):
        f = load(path)
    assert f.equals(btc.iloc[:100])


def _csv(tmp_path, text: str):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("timestamp,close\n", "empty"),
        ("name,kind\nbtc,coin\neth,coin\n", "no numeric columns"),
        ("timestamp,close\n2020-01-01,1\n2020-01-02,\n2020-01-03,3\n", "missing value"),
        ("timestamp,close\n2020-01-01,1\n2020-01-01,2\n2020-01-02,3\n", "appears more than once"),
        ("timestamp,close\n" + "".join(f"2020-01-{d:02d},{d}\n" for d in range(1, 30)) + "2020-01-30,abc\n", "non-numeric value 'abc'"),
    ],
)
def test_bad_files_raise_teaching_errors(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        load(_csv(tmp_path, text))


def test_missing_file_and_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="unknown dataset 'btcusd'"):
        load("btcusd")


def test_unknown_column(btc):
    with pytest.raises(DataError, match="unknown column 'price2'"):
        select_columns(btc, "price2", None)
    with pytest.raises(DataError, match="unknown column '7'"):
        select_columns(btc, "close", ["open", "7"])


def test_gzipped_csv_reads_like_plain(tmp_path):
    path = tmp_path / "btc.csv"
    with gzip.open(bundled_path("btc-usd")) as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert np.array_equal(load(path).to_numpy(), load("btc-usd").to_numpy())
