"""Backtests on hourly BTC with a real exchange outage: days whose window spans it are skipped and counted."""

import json

import numpy as np
import pandas as pd
import pytest

from coincast.backtest.engine import BacktestSettings
from coincast.backtest.trading import TradingSettings
from coincast.config import Settings
from coincast.data import load
from coincast.flows.backtest import run_backtest
from tests.conftest import one_torch_thread

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

OUTAGE_AFTER = pd.Timestamp("2019-05-15 02:00", tz="UTC")  # Binance halted: next candle 13:00 (11 h later)
WINDOW = 12


@pytest.fixture(scope="module")
def hourly():
    raw = load("btc-usd-1h")
    pos = int(raw.index.searchsorted(OUTAGE_AFTER))
    assert raw.index[pos + 1] - raw.index[pos] == pd.Timedelta(hours=11)  # the outage is in the data
    return raw.iloc[pos - 300 : pos + 50]


def tiny() -> Settings:
    s = Settings()
    s.data.window, s.model.hidden, s.train.epochs, s.data.target = WINDOW, [4], 1, "close"
    return s


def test_days_whose_window_spans_the_outage_are_skipped_and_counted(hourly, tmp_path):
    path = tmp_path / "btc-1h-outage.csv"
    hourly.rename_axis("timestamp").to_csv(path)
    pos = int(hourly.index.searchsorted(OUTAGE_AFTER))
    start = hourly.index[pos - 10]  # the test period spans the outage
    bt = BacktestSettings(start=str(start), retrain_every=24)
    run = run_backtest(str(path), tiny(), bt, TradingSettings(), runs_dir=tmp_path / "runs", n_boot=50)

    # The WINDOW - 1 targets after the outage have a window that spans it: no forecast for them.
    skipped = hourly.index[pos + 1 : pos + WINDOW]
    table = run.result.table
    assert not table.index.isin(skipped).any()
    expected = hourly.index[hourly.index >= start].difference(skipped)
    assert table.index.equals(expected)
    # the baselines forecast the same days as the model, none missing
    for col in ["model", "persistence", "drift", "moving_average", "ar", "lo80", "hi95"]:
        assert table[col].notna().all(), col
    np.testing.assert_allclose(table["persistence"], table["previous"])

    m = json.loads((run.folder / "metrics.json").read_text())
    assert m["test"]["days"] == len(expected)
    assert m["test"]["days_skipped_gap"] == WINDOW - 1
    assert m["gaps"]["days_skipped"] == WINDOW - 1 and m["gaps"]["dates"] == [str(d) for d in skipped]
    assert m["gaps"]["max_gap_steps"] == 1.5
    assert run.result.folds["gap_skipped"].sum() == WINDOW - 1
    # the risk baselines are daily: skipped with the reason, the backtest done all the same
    assert m["risk"] == {"skipped": "the risk baselines need daily candles; these are 1-hour bars"}
    assert not (run.folder / "risk.csv").exists()
    forecast = pd.read_csv(run.folder / "forecast.csv", index_col=0)
    assert len(forecast) == len(expected)
    assert "days skipped: window spans a time gap" in (run.folder / "report.html").read_text()


def test_no_asserts_on_data_in_src():
    import pathlib
    import re

    src = pathlib.Path(__file__).parents[1] / "src"
    hits = [f"{p}:{i}" for p in src.rglob("*.py") for i, line in enumerate(p.read_text().splitlines(), 1)
            if re.match(r"\s*assert\b", line)]
    assert hits == []  # a data condition is handled or raises a CoincastError; asserts vanish under -O
