"""A run folder's risk files, the same in `coincast run` and `coincast backtest`: risk.csv (per test
day the previous and actual close, the realised percent log return, its realized variance where
hourly candles were given, and every risk model's quantiles of it, daily CRPS and variance
forecast: flows/backtest_risk.table) and risk_fan.png (the price with the 80%/95% ranges of the
served model: flows/backtest_risk.SERVED_MODELS' fixed rule); the report shows the fan chart beside
the score table (templates/macros.html `risk_section`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from coincast import io
from coincast.report.backtest_plots import fan_plot


def write_risk(folder: Path, table: pd.DataFrame | None, summary: dict, title: str) -> dict[str, bytes]:
    """Write risk.csv and risk_fan.png; return {name: PNG} for the report ({} where the risk part was
    skipped: `table` None, `summary["skipped"]` says why)."""
    if table is None:
        return {}
    io.write_text(folder / "risk.csv", table.to_csv(float_format="%.6f"))
    fan = {"risk_fan.png": fan_plot(table, summary["forecast"], summary["forecast_label"], title)}
    for name, png in fan.items():
        io.write_bytes(folder / name, png)
    return fan
