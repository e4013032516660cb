"""The risk models over a backtest's test days: quantiles, scores and a one-sentence verdict.

`coincast backtest` on daily candles walks the four risk baselines (models/risk_baselines.py:
empirical 365 days, EWMA-t, GARCH(1,1)-t, HAR-t) and, where the data have the history it needs
(NetworkRisk.min_history returns before the first test day), the network's distribution head
(models/risk_network.py) over the backtest's own test days with its
retrain interval (models/risk_walk.py: each fold refitted on the rows before its first day, each
day forecast from the candles through the day before), and scores them with evaluation/risk.py:
CRPS of the percent log return from the 99 quantiles 1..99%, its ratio to the empirical random
walk with the one-sided Diebold-Mariano p, 80%/95% coverage and width, and the 5% VaR's Kupiec and
Christoffersen p-values; the network's CRPS is also divided by GARCH(1,1)-t's, with the DM p that
it is better, and the verdict says so in a second sentence. Where it does not apply (no open/high/low/close, not daily, too little
history before the first test day) `risk_part` says why in one line and the backtest goes on.

Trading (backtest/trading.py) uses one risk model's forecasts, chosen by a fixed rule and never by
the test period's scores (that would look ahead): the first of TRADING_MODELS the walk holds, the
network's distribution head where it is walked, else GARCH(1,1)-t (the baseline BENCHMARKS.md
measured best on the bundled coins, as `predict` uses it). `trading_forecast` gives its quantiles on
the backtest's days, or the one-line reason there are none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from coincast.backtest.trading import RiskForecast
from coincast.data.datasets import daily_coins
from coincast.data.frame import bar_length
from coincast.errors import CoincastError
from coincast.evaluation import risk
from coincast.models.risk_baselines import all_baselines
from coincast.models.risk_network import NetworkRisk
from coincast.models.risk_walk import RiskWalk, pooled_returns, walk_forward_risk
from coincast.prep.features import PRICES

REFERENCE = "empirical"  # the random walk every baseline's CRPS is divided by
LABELS = {"empirical": "the empirical random walk", "ewma_t": "EWMA-t", "garch_t": "GARCH(1,1)-t", "har_t": "HAR-t",
          "network": "the network"}
GARCH = "garch_t"  # the baseline the network must beat
TRADING_MODELS = ("network", "garch_t")  # trading's risk model: the first of these the walk holds (fixed in advance)
CHOICE = f"the first of {', '.join(TRADING_MODELS)} the risk walk holds, fixed before the test period"
CSV_LEVELS = (0.025, 0.10, 0.50, 0.90, 0.975)  # risk.csv's quantiles of each baseline
ALPHA = 0.05  # the DM p below which "beat the empirical random walk" is called significant


@dataclass
class RiskPart:
    summary: dict  # metrics.json's "risk": `skipped` (None, or the one-line reason) and the scores
    table: pd.DataFrame | None  # risk.csv: per day the previous and actual close, the return, quantiles
    seconds: float = 0.0
    walk: RiskWalk | None = None  # the scored walk (the backtest's days only); None where skipped


def candle_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with Open/HIGH/... named open/high/... (a user's CSV may capitalise them)."""
    lower = {c: c.lower() for c in frame.columns if isinstance(c, str) and c.lower() in PRICES and c not in PRICES}
    taken = [c for c in PRICES if c in frame.columns]
    return frame if not lower or set(lower.values()) & set(taken) else frame.rename(columns=lower)


def skip_reason(candles: pd.DataFrame, days: pd.DatetimeIndex) -> str | None:
    """Why the risk baselines cannot run on these candles over these test days (None: they can)."""
    candles = candle_columns(candles)
    missing = [c for c in PRICES if c not in candles.columns]
    if missing:
        return f"the risk baselines need daily open/high/low/close candles; the data have no {'/'.join(missing)}"
    bar = bar_length(candles.index)
    if bar != pd.Timedelta(days=1):
        hours = None if bar is None else bar / pd.Timedelta(hours=1)
        what = "undated rows" if hours is None else f"{hours:g}-hour bars" if hours < 24 else f"{hours / 24:g}-day bars"
        return f"the risk baselines need daily candles; these are {what}"
    if len(days) < 2:
        return "the risk scores need at least two test days"
    need = max(b.min_history for b in all_baselines())
    before = _returns_before(candles, days)
    if before < need:
        return (f"the risk baselines need {need} daily returns before the first test day "
                f"({days[0].date()}); the data have {before}")
    return None


def risk_part(candles: pd.DataFrame, days: pd.DatetimeIndex, retrain_every: int, head: bool = True,
              data: str | None = None, intraday: pd.DataFrame | None = None) -> RiskPart:
    """The risk baselines, and the network's head if `head` (settings.model.risk_head), walked over
    `days` (the backtest's test days) and scored, or skipped with the reason. The head trains on
    the bundled daily coins' windows beside the data's own (all six but `data`, the data spec,
    where it is one of them). `intraday`: the same market's hourly candles (UTC open-time index,
    open/high/low/close/volume), whose realized measures the intraday models use (None: they are
    left out, and the summary says so)."""
    candles = candle_columns(candles)
    reason = skip_reason(candles, days)
    if reason is not None:
        return RiskPart({"skipped": reason}, None)
    t0 = time.perf_counter()
    models, network_skipped = all_baselines(), None
    network, before = NetworkRisk(), _returns_before(candles, days)
    if not head:
        network_skipped = "the network's risk head is turned off (model.risk_head = false)"
    elif before >= network.min_history:
        network.pool = pooled_returns(candles, daily_coins(but=data))
        models.append(network)
    else:
        network_skipped = f"the network's risk head needs {network.min_history} daily returns before the first test day; the data have {before}"
    try:
        walk = walk_forward_risk(candles, start=days[0], retrain_every=retrain_every, end=days[-1], baselines=models)
    except CoincastError as e:  # candles the range variance refuses (a high below the close, a zero price)
        return RiskPart({"skipped": f"the risk baselines could not run: {str(e).rstrip('.')}"}, None)
    keep = walk.actual.index.isin(days)  # [N] the days the backtest scored (a gap day has no forecast)
    walk = RiskWalk(walk.actual[keep], walk.quantiles[keep], walk.tau, walk.folds, walk.counts)
    seconds = time.perf_counter() - t0
    return RiskPart({**summarise(walk, retrain_every), "network_skipped": network_skipped}, table(candles, walk), seconds, walk)


def _returns_before(candles: pd.DataFrame, days: pd.DatetimeIndex) -> int:
    return int(candles.index.searchsorted(days[0])) - 1


def trading_model(walk: RiskWalk) -> str | None:
    """The risk model trading uses: the first of TRADING_MODELS the walk holds (None: none of them)."""
    return next((name for name in TRADING_MODELS if name in walk.names), None)


def trading_forecast(part: RiskPart, days: pd.DatetimeIndex) -> tuple[RiskForecast | None, str | None]:
    """(the trading risk model's quantiles on `days`, None), or (None, why there are none).
    A day the walk lacks gets a NaN row (trading stays flat that day)."""
    if part.walk is None:
        return None, part.summary["skipped"]
    name = trading_model(part.walk)
    if name is None:
        return None, f"the risk walk holds none of {', '.join(TRADING_MODELS)}"
    q = part.walk.quantiles[name].reindex(days).to_numpy(float)  # [N, K] NaN rows: days without a forecast
    return RiskForecast(name, LABELS.get(name, name), q, part.walk.tau), None


def scores(walk: RiskWalk) -> dict[str, dict]:
    """{baseline: flat scores}: CRPS, its ratio to the reference with the DM p, 80/95% coverage and
    width, the 5% VaR's breaches and its Kupiec and Christoffersen p-values."""
    y, tau, ref = walk.actual.to_numpy(float), walk.tau, walk.q(REFERENCE)  # y [N], ref [N, K]
    out = {}
    for name in walk.names:
        q = walk.q(name)  # [N, K]
        s, dm = risk.risk_scores(y, q, tau), risk.crps_dm(y, q, ref, tau)
        i80, i95, v5 = s["intervals"]["80"], s["intervals"]["95"], s["var"]["0.05"]
        out[name] = {
            "crps": s["crps"], "crps_ratio": dm["ratio"], "dm_p": None if name == REFERENCE else dm["dm_p"],
            "coverage_80": i80["coverage"], "width_80": i80["width"],
            "coverage_95": i95["coverage"], "width_95": i95["width"],
            "var5_breaches": v5["breaches"], "var5_kupiec_p": v5["kupiec_p"], "var5_christoffersen_p": v5["christoffersen_p"],
        }
        if name == "network":
            g = risk.crps_dm(y, q, walk.q(GARCH), tau)
            out[name].update({"crps_ratio_garch": g["ratio"], "dm_p_garch": g["dm_p"]})
    return out


def verdict(rows: dict[str, dict], days: int) -> str:
    """One sentence: the best baseline by CRPS, whether it beat the empirical random walk
    significantly (one-sided DM p < ALPHA), and how often its 80%/95% ranges held the return."""
    best = min(rows, key=lambda n: rows[n]["crps"])
    r = rows[best]
    cover = (f"its 80%/95% ranges covered {100 * r['coverage_80']:.0f}%/{100 * r['coverage_95']:.0f}% "
             f"of {days:,} days")
    if best == REFERENCE:
        return f"No risk model beat {LABELS[REFERENCE]} (CRPS {r['crps']:.4f}, the best); {cover}."
    sig = "significantly" if r["dm_p"] is not None and r["dm_p"] < ALPHA else "NOT significantly"
    line = (f"{LABELS.get(best, best)} gave the best risk forecast: CRPS {r['crps_ratio']:.3f}x "
            f"{LABELS[REFERENCE]}'s, {sig} better (Diebold-Mariano one-sided p = {r['dm_p']:.3g}); {cover}.")
    return line if "network" not in rows else f"{line} {network_verdict(rows['network'])}"


def network_verdict(r: dict) -> str:
    """One sentence: did the network's risk forecast beat GARCH(1,1)-t's (CRPS, one-sided DM p)?"""
    beat = r["crps_ratio_garch"] < 1
    sig = ("significantly" if r["dm_p_garch"] < ALPHA else "not significantly") if beat else ""
    return (f"The network's risk forecast {'beat' if beat else 'did NOT beat'} {LABELS[GARCH]}{' ' + sig if sig else ''}: "
            f"CRPS {r['crps_ratio_garch']:.3f}x, DM p = {r['dm_p_garch']:.3g}.")


def summarise(walk: RiskWalk, retrain_every: int) -> dict:
    """metrics.json's "risk": the protocol, every baseline's scores, the best one and the verdict."""
    rows = scores(walk)
    best = min(rows, key=lambda n: rows[n]["crps"])
    forecast = trading_model(walk) or best
    return {
        "skipped": None, "first": str(walk.actual.index[0]), "last": str(walk.actual.index[-1]),
        "days": len(walk.actual), "folds": walk.counts["folds"], "retrain_every": retrain_every,
        "reference": REFERENCE, "best": best, "best_label": LABELS.get(best, best), "verdict": verdict(rows, len(walk.actual)),
        # the model forecasts use (trading, forecast.csv, the fan chart): a fixed rule, not test scores
        "forecast": forecast, "forecast_label": LABELS.get(forecast, forecast),
        "baselines": rows, "fits": {k: v for k, v in walk.counts.items() if isinstance(v, dict)},
    }


def table(candles: pd.DataFrame, walk: RiskWalk) -> pd.DataFrame:
    """risk.csv: per test day the previous and actual close, the realised percent log return and
    each baseline's CSV_LEVELS quantiles of it (columns `<baseline>_q<level in percent>`)."""
    close = candles["close"].astype(float)
    days = walk.actual.index
    out = pd.DataFrame({"previous_close": close.shift(1).loc[days], "close": close.loc[days],
                        "actual": walk.actual}, index=days)
    cols = [risk.level_index(walk.tau, lv) for lv in CSV_LEVELS]  # [5] columns of the 101 levels
    for name in walk.names:
        q = walk.q(name)[:, cols]  # [N, 5]
        for j, lv in enumerate(CSV_LEVELS):
            out[f"{name}_q{100 * lv:g}"] = q[:, j]
    out.index.name = "date"
    return out

