"""The live risk forecast: the distribution of the next daily candle's log return.

Each point model of a daily stream (champion and challenger in shadow) carries a risk model fitted
on the same candles it was trained on (through its `trained_through`), so the distribution is
refit on the retraining schedule, not at every candle; at each forecast the fitted parameters are
held and the volatility filter runs through the newest candle (models/risk_baselines.py's
`forecast`). A fit is made once per model and kept in memory (after a restart it is made again
from the stored candles, the same data).

The served risk model is the first of models/risk_walk.SERVED_MODELS (the backtest's rule) the
model and the stream's data support. A model whose folder holds the network's risk head (trained
with the point model in the training job, `live/head.py`) serves network_har (the head's and
HAR-RV's quantiles averaged level by level) where the stream has hourly candles of the same market
(`intraday`), else network; the head is loaded from the folder, also after a restart, and never
fitted here. A model without one serves GARCH(1,1)-t + HAR-RV averaged (with hourly candles), else
GARCH(1,1)-t. GARCH-t's own quantiles are forecast beside it for the guard (`live/scoring.py`),
which compares the two live records.

Quantiles are of the percent log return 100 ln(close[t] / close[t-1]) at evaluation/risk.LEVELS
(1..99% and 2.5/97.5%), as the backtest scores them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from coincast.errors import DataError
from coincast.evaluation.risk import LEVELS, level_index
from coincast.models.risk_baselines import GarchT, Harq, HarRV
from coincast.models.risk_network import NetworkRisk
from coincast.models.risk_walk import COMBINATIONS, SERVED_MODELS, percent_returns
from coincast.prep import realized

GARCH = GarchT.name  # the benchmark, forecast beside the served model for the guard
MAKERS = {"garch_t": GarchT, "har_rv": HarRV, "harq": Harq}  # fitted here; the network's head is loaded (live/head.py)
HEAD = NetworkRisk.name
DAY = pd.Timedelta(days=1)


@dataclass
class RiskFit:
    """One point model's risk models: the served one's members and GARCH-t, fitted through `through`."""

    served: str  # the served risk model's name (one of SERVED_MODELS)
    fitted: dict  # member name -> fitted estimator (GARCH-t always among them)
    through: pd.Timestamp
    returns: int  # returns fitted on


def inputs(candles: pd.DataFrame, intraday: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(r [T-1] percent log returns, gk [T-1] Garman-Klass variances, rm [T-1] realized measures or None)."""
    r, gk, index = percent_returns(candles)  # the store's candles: open/high/low/close
    if intraday is None or intraday.empty:
        return r, gk, None
    rm, _ = realized.model_inputs(realized.on_days(realized.daily_measures(intraday), index), gk)
    return r, gk, rm


def members(name: str) -> tuple[str, ...]:
    return COMBINATIONS.get(name, (name,))


def fit(candles: pd.DataFrame, through: pd.Timestamp, intraday: pd.DataFrame | None = None,
        head: NetworkRisk | None = None) -> RiskFit:
    """Fit the served risk model and GARCH-t on the candles (and hours) through `through`; `head`:
    the model's network risk head, fitted on the same candles in its training (None: it has none)."""
    past = candles.loc[:through]
    hours = None if intraday is None else intraday.loc[: through + DAY - pd.Timedelta(seconds=1)]
    r, gk, rm = inputs(past, hours)
    if len(r) < GarchT.min_history:
        raise DataError(f"the risk forecast needs {GarchT.min_history} daily returns; the stream has {len(r)} "
                        f"through {through:%Y-%m-%d}")

    def runs(m: str) -> bool:
        if m == HEAD:
            return head is not None
        return m == GARCH or (rm is not None and len(r) >= MAKERS[m]().min_history)

    served = next(name for name in SERVED_MODELS if all(runs(m) for m in members(name)))
    names = dict.fromkeys((*members(served), GARCH))
    return RiskFit(served, {m: head if m == HEAD else MAKERS[m]().fit(r, gk, rm) for m in names}, through, len(r))


def forecast(risk_fit: RiskFit, candles: pd.DataFrame, intraday: pd.DataFrame | None = None) -> dict[str, np.ndarray]:
    """{risk model: [len(LEVELS)] quantiles of the next candle's percent log return} for the served
    model and GARCH-t, with the fitted parameters and the data through the newest candle."""
    r, gk, rm = inputs(candles, intraday)
    if rm is None and any(getattr(est, "intraday", False) for est in risk_fit.fitted.values()):
        raise DataError(f"{risk_fit.served} was fitted on hourly candles, and none are stored now")
    rows = {m: est.forecast(r, gk, len(r), LEVELS, rm)[-1] for m, est in risk_fit.fitted.items()}  # [K] each
    return {risk_fit.served: np.mean([rows[m] for m in members(risk_fit.served)], axis=0), GARCH: rows[GARCH]}


def summary(q: np.ndarray, previous: float) -> dict:
    """The row's ranges in price (80%: 10..90%, 95%: 2.5..97.5% of the return) and the 5% VaR (a
    percent return: the 5% quantile)."""
    def price(level: float) -> float:
        return float(previous * np.exp(q[level_index(LEVELS, level)] / 100))

    return {"lo80": price(0.10), "hi80": price(0.90), "lo95": price(0.025), "hi95": price(0.975),
            "var5": float(q[level_index(LEVELS, 0.05)])}
