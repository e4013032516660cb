"""The risk models over a run's test days, and forecast.csv's quantile columns.

A run trains its network once, on the data before the test period; its risk part does the same with
the risk models: flows/backtest_risk.py's `risk_part` over the run's test days in ONE fold (every
model, the network's distribution head where the data have the history it needs, fitted once on the
returns before the first test day; each day still forecast from the candles through the day
before), scored beside every baseline with the backtest's verdict. It needs one asset of daily
open/high/low/close candles with enough history; elsewhere (hourly bars, no OHLC, several assets,
too little history) the run goes on and metrics.json's `risk` says why in one line.

forecast.csv gets the quantiles of the next close from the served risk model
(backtest_risk.SERVED_MODELS: a fixed rule, never chosen by the test period's scores), as prices: previous close x exp(q / 100), q the
quantile of the day's percent log return.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coincast.evaluation.risk import level_index
from coincast.flows.backtest_risk import CHOICE, CSV_LEVELS, RiskPart, risk_part, trading_forecast


def run_risk(raws: dict[str, pd.DataFrame], days: pd.Index, head: bool = True,
             intraday: pd.DataFrame | None = None) -> RiskPart:
    """The risk models walked over the run's test `days` in one fold and scored, or skipped with the
    reason. `intraday`: the asset's hourly candles (data/intraday.py), or None."""
    if len(raws) > 1:
        return RiskPart({"skipped": f"the risk part runs on one asset; this run has {len(raws)}"}, None)
    data, candles = next(iter(raws.items()))
    span = len(candles.loc[days[0] : days[-1]])  # candles of the test period, gap days included: one fold
    return risk_part(candles, days, span, head, data, intraday)


def quantile_columns(part: RiskPart, table: pd.DataFrame) -> tuple[pd.DataFrame | None, dict]:
    """(forecast.csv's `risk_q<level>` columns [N, 5] on the table's days, metrics.json's note of
    the model they come from); (None, the reason) where there is none."""
    forecast, reason = trading_forecast(part, table.index)
    if forecast is None:
        return None, {"skipped": reason}
    previous = part.table["previous_close"].reindex(table.index).to_numpy(float)  # [N] the close before each day
    q = forecast.quantiles[:, [level_index(forecast.tau, lv) for lv in CSV_LEVELS]]  # [N, 5] percent log returns
    names = [f"risk_q{100 * lv:g}" for lv in CSV_LEVELS]
    prices = pd.DataFrame(previous[:, None] * np.exp(q / 100), index=table.index, columns=names)  # [N, 5]
    return prices, {"model": forecast.name, "label": forecast.label, "choice": CHOICE, "columns": names}
