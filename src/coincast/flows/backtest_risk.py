"""The risk models over a backtest's test days: quantiles, scores and a one-sentence verdict.

`coincast backtest` on daily candles walks the risk baselines (models/risk_baselines.py: empirical
365 days, EWMA-t, GARCH(1,1)-t, HAR-t; with hourly candles (`intraday`) HAR-RV and HARQ on the
days' realized measures too), the network's distribution head where the data have the history it
needs (NetworkRisk.min_history returns before the first test day), and the forecast combinations
of models/risk_walk.COMBINATIONS, over the backtest's own test days with its retrain interval
(models/risk_walk.py: each fold refitted on the rows before its first day, each day forecast from
the candles through the day before), and scores them with evaluation/risk.py: CRPS of the percent
log return from the 99 quantiles 1..99%, its ratio to the empirical random walk and to
GARCH(1,1)-t with the one-sided Diebold-Mariano p, 80%/95% coverage and width, the 5% VaR's Kupiec
and Christoffersen p-values, the variance forecast's QLIKE and MSE against the realized variance
(with hourly candles; days without their hours left out) and their ratio to GARCH-t's with the DM
p, and the 90% Model Confidence Set on CRPS. Where it does not apply (no open/high/low/close, not
daily, too little history before the first test day) `risk_part` says why in one line and the
backtest goes on.

The served risk model, which trading (backtest/trading.py), forecast.csv, the fan chart and
`predict` use, is chosen by a fixed rule and never by the test period's scores (that would look
ahead): the first of SERVED_MODELS the walk holds. That order was fixed on the tuning periods
before the test period was scored (benchmarks/results/intraday_risk/RULE.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from coincast.backtest.trading import RiskForecast
from coincast.data.datasets import daily_coins
from coincast.data.frame import bar_length
from coincast.errors import CoincastError, DataError
from coincast.evaluation import risk
from coincast.models.risk_baselines import GarchT, HarRV, Harq, all_baselines
from coincast.models.risk_network import NetworkRisk
from coincast.models.risk_walk import (COMBINATIONS, SERVED_MODELS, RiskWalk, percent_returns, pooled_returns,
                                      walk_forward_risk)
from coincast.prep import realized
from coincast.prep.features import PRICES

REFERENCE = "empirical"  # the random walk every baseline's CRPS is divided by
LABELS = {"empirical": "the empirical random walk", "ewma_t": "EWMA-t", "garch_t": "GARCH(1,1)-t", "har_t": "HAR-t",
          "har_rv": "HAR-RV", "harq": "HARQ", "network": "the network",
          "garch_har": "the GARCH-t + HAR-RV average", "network_har": "the network + HAR-RV average"}
GARCH = "garch_t"  # the baseline every model is also measured against
CHOICE = f"the first of {', '.join(SERVED_MODELS)} the risk walk holds, fixed before the test period"
MCS_SIZE = 0.10  # the Model Confidence Set's size: the 90% set
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
    models, network_skipped = all_baselines(intraday=intraday is not None), None
    intraday_skipped = None if intraday is not None else "no hourly candles were given (--intraday)"
    network, before = NetworkRisk(), _returns_before(candles, days)
    if not head:
        network_skipped = "the network's risk head is turned off (model.risk_head = false)"
    elif before >= network.min_history:
        network.pool = pooled_returns(candles, daily_coins(but=data))
        models.append(network)
    else:
        network_skipped = f"the network's risk head needs {network.min_history} daily returns before the first test day; the data have {before}"
    try:
        walk = walk_forward_risk(candles, start=days[0], retrain_every=retrain_every, end=days[-1], baselines=models,
                                 intraday=intraday)
    except CoincastError as e:  # candles the range variance refuses (a high below the close, a zero price)
        return RiskPart({"skipped": f"the risk baselines could not run: {str(e).rstrip('.')}"}, None)
    walk = walk.subset(walk.actual.index.isin(days))  # the days the backtest scored (a gap day has no forecast)
    seconds = time.perf_counter() - t0
    summary = {**summarise(walk, retrain_every), "network_skipped": network_skipped, "intraday_skipped": intraday_skipped}
    return RiskPart(summary, table(candles, walk), seconds, walk)


def _returns_before(candles: pd.DataFrame, days: pd.DatetimeIndex) -> int:
    return int(candles.index.searchsorted(days[0])) - 1


def served_model(names) -> str | None:
    """The served risk model: the first of SERVED_MODELS among `names` (None: none of them)."""
    return next((name for name in SERVED_MODELS if name in names), None)


def trading_forecast(part: RiskPart, days: pd.DatetimeIndex) -> tuple[RiskForecast | None, str | None]:
    """(the trading risk model's quantiles on `days`, None), or (None, why there are none).
    A day the walk lacks gets a NaN row (trading stays flat that day)."""
    if part.walk is None:
        return None, part.summary["skipped"]
    name = served_model(part.walk.names)
    if name is None:
        return None, f"the risk walk holds none of {', '.join(SERVED_MODELS)}"
    q = part.walk.quantiles[name].reindex(days).to_numpy(float)  # [N, K] NaN rows: days without a forecast
    return RiskForecast(name, LABELS.get(name, name), q, part.walk.tau), None


def served_move(candles: pd.DataFrame, tau, intraday: pd.DataFrame | None = None, head: bool = True,
                data: str | None = None) -> tuple[np.ndarray, int, str]:
    """([K] the served model's quantiles at `tau` of the next candle's percent log return, the returns
    fitted on, its label): the first of SERVED_MODELS these inputs can give (the intraday models need
    `intraday` and daily open/high/low/close, the network `head` and its history), fitted on every
    return of `candles` and forecast from the data through the last candle; GARCH(1,1)-t needs only
    the closes. A DataError where not even GARCH-t has the returns it needs."""
    tau = risk.check_levels(tau)
    candles = candle_columns(candles)
    r = 100 * np.diff(np.log(candles["close"].to_numpy(float)))  # [T-1]
    n = len(r)
    try:
        _, gk, index = percent_returns(candles)
    except DataError:  # no open/high/low: GARCH-t from the closes only
        gk = index = None
    rm = None
    if intraday is not None and gk is not None:
        rm, _ = realized.model_inputs(realized.on_days(realized.daily_measures(intraday), index), gk)

    def model(name: str):
        """A fresh, runnable instance of one model (None: these inputs cannot give it)."""
        made = {"garch_t": GarchT, "har_rv": HarRV, "harq": Harq, "network": NetworkRisk}.get(name)
        if made is None or (name != "garch_t" and gk is None) or (name in ("har_rv", "harq") and rm is None):
            return None
        m = made()
        if name == "network":
            if not head or n < m.min_history:
                return None
            m.pool = pooled_returns(candles, daily_coins(but=data))
        return m if n >= m.min_history else None

    for name in SERVED_MODELS:
        members = [model(m) for m in COMBINATIONS.get(name, (name,))]
        if all(m is not None for m in members):
            break
    else:
        raise DataError(f"the risk forecast needs {GarchT.min_history} returns; the data has {n}")
    rows = [m.fit(r, gk, rm).forecast(r, gk, n, risk.LEVELS, rm)[-1] for m in members]  # [K] each: the day after the data
    q = np.mean(rows, axis=0)  # [101] level by level
    return np.interp(tau, risk.LEVELS, q), n, LABELS.get(name, name)


def scores(walk: RiskWalk) -> dict[str, dict]:
    """{model: flat scores}: CRPS, its ratio to the reference and to GARCH(1,1)-t with the DM p,
    80/95% coverage and width, the 5% VaR's breaches and its Kupiec and Christoffersen p-values; with
    realized variances, the variance forecast's QLIKE and MSE, their ratios to GARCH-t's and the DM p."""
    y, tau, ref = walk.actual.to_numpy(float), walk.tau, walk.q(REFERENCE)  # y [N], ref [N, K]
    proxy, scored = variance_proxy(walk)
    out = {}
    for name in walk.names:
        q = walk.q(name)  # [N, K]
        s, dm = risk.risk_scores(y, q, tau), risk.crps_dm(y, q, ref, tau)
        i80, i95, v5 = s["intervals"]["80"], s["intervals"]["95"], s["var"]["0.05"]
        g = risk.crps_dm(y, q, walk.q(GARCH), tau)
        out[name] = {
            "crps": s["crps"], "crps_ratio": dm["ratio"], "dm_p": None if name == REFERENCE else dm["dm_p"],
            "crps_ratio_garch": g["ratio"], "dm_p_garch": None if name == GARCH else g["dm_p"],
            "coverage_80": i80["coverage"], "width_80": i80["width"],
            "coverage_95": i95["coverage"], "width_95": i95["width"],
            "var5_breaches": v5["breaches"], "var5_kupiec_p": v5["kupiec_p"], "var5_christoffersen_p": v5["christoffersen_p"],
        }
        if proxy is not None:
            h, hg = walk.variance[name].to_numpy(float)[scored], walk.variance[GARCH].to_numpy(float)[scored]
            v = risk.variance_dm(proxy, h, hg)
            out[name].update({"qlike": v["qlike"], "qlike_ratio_garch": v["qlike_ratio"],
                              "qlike_dm_p_garch": None if name == GARCH else v["qlike_dm_p"],
                              "mse": v["mse"], "mse_ratio_garch": v["mse_ratio"],
                              "mse_dm_p_garch": None if name == GARCH else v["mse_dm_p"]})
    return out


def variance_proxy(walk: RiskWalk):
    """(the realized variance [M] of the days that have their hours, which days [N] those are), or
    (None, None) without realized measures or with fewer than two such days."""
    if walk.realized is None:
        return None, None
    scored = ~walk.realized["filled"].to_numpy(bool)  # [N]
    if scored.sum() < 2:
        return None, None
    return walk.realized["rv"].to_numpy(float)[scored], scored


def confidence_set(walk: RiskWalk) -> dict | None:
    """The 90% Model Confidence Set of the walk's models on daily CRPS (None: fewer than two models)."""
    if len(walk.names) < 2:
        return None
    y = walk.actual.to_numpy(float)
    losses = pd.DataFrame({name: risk.crps(y, walk.q(name), walk.tau) for name in walk.names})  # [N, M]
    return {"size": MCS_SIZE, "loss": "crps", **risk.model_confidence_set(losses, size=MCS_SIZE)}


def verdict(rows: dict[str, dict], days: int, served: str | None = None) -> str:
    """One sentence: the best baseline by CRPS, whether it beat the empirical random walk
    significantly (one-sided DM p < ALPHA), and how often its 80%/95% ranges held the return; a
    second gives every other model's CRPS as a multiple of GARCH(1,1)-t's (daily and intraday models
    side by side); a third names the served model and says whether it beat GARCH-t (where it is
    another)."""
    best = min(rows, key=lambda n: rows[n]["crps"])
    r = rows[best]
    cover = (f"its 80%/95% ranges covered {100 * r['coverage_80']:.0f}%/{100 * r['coverage_95']:.0f}% "
             f"of {days:,} days")
    if best == REFERENCE:
        line = f"No risk model beat {LABELS[REFERENCE]} (CRPS {r['crps']:.4f}, the best); {cover}."
    else:
        sig = "significantly" if r["dm_p"] is not None and r["dm_p"] < ALPHA else "NOT significantly"
        line = (f"{LABELS.get(best, best)} gave the best risk forecast: CRPS {r['crps_ratio']:.3f}x "
                f"{LABELS[REFERENCE]}'s, {sig} better (Diebold-Mariano one-sided p = {r['dm_p']:.3g}); {cover}.")
    others = [n for n in rows if n != GARCH]
    line += (" CRPS as a multiple of GARCH(1,1)-t's: "
             + ", ".join(f"{LABELS.get(n, n)} {rows[n]['crps_ratio_garch']:.3f}" for n in others) + ".")
    return line if served in (None, GARCH) else f"{line} {served_verdict(served, rows[served])}"


def served_verdict(name: str, r: dict) -> str:
    """One sentence: did the served model's risk forecast beat GARCH(1,1)-t's (CRPS, one-sided DM p)?"""
    beat = r["crps_ratio_garch"] < 1
    sig = ("significantly" if r["dm_p_garch"] < ALPHA else "not significantly") if beat else ""
    label = LABELS.get(name, name)
    return (f"The served risk model, {label}, {'beat' if beat else 'did NOT beat'} {LABELS[GARCH]}"
            f"{' ' + sig if sig else ''}: CRPS {r['crps_ratio_garch']:.3f}x, DM p = {r['dm_p_garch']:.3g}.")


def summarise(walk: RiskWalk, retrain_every: int) -> dict:
    """metrics.json's "risk": the protocol, every baseline's scores, the best one and the verdict."""
    rows = scores(walk)
    best = min(rows, key=lambda n: rows[n]["crps"])
    served = served_model(walk.names)
    forecast = served or best
    return {
        "skipped": None, "first": str(walk.actual.index[0]), "last": str(walk.actual.index[-1]),
        "days": len(walk.actual), "folds": walk.counts["folds"], "retrain_every": retrain_every,
        "reference": REFERENCE, "best": best, "best_label": LABELS.get(best, best),
        "verdict": verdict(rows, len(walk.actual), served),
        # the served model (trading, forecast.csv, the fan chart, predict): a fixed rule, not test scores
        "forecast": forecast, "forecast_label": LABELS.get(forecast, forecast), "choice": CHOICE,
        "baselines": rows, "mcs": confidence_set(walk),
        "fits": {k: v for k, v in walk.counts.items() if isinstance(v, dict)},
    }


def table(candles: pd.DataFrame, walk: RiskWalk) -> pd.DataFrame:
    """risk.csv: per test day the previous and actual close, the realised percent log return, its
    realized variance and hours (with hourly candles: `rv`, `hours`), and each model's CSV_LEVELS
    quantiles of it (columns `<model>_q<level in percent>`), the day's CRPS (`<model>_crps`) and
    variance forecast (`<model>_var`, percent^2): enough to pool days across coins and test a panel."""
    close = candles["close"].astype(float)
    days = walk.actual.index
    y = walk.actual.to_numpy(float)
    out = pd.DataFrame({"previous_close": close.shift(1).loc[days], "close": close.loc[days],
                        "actual": walk.actual}, index=days)
    if walk.realized is not None:
        out["rv"] = walk.realized["rv"].where(~walk.realized["filled"].astype(bool))  # NaN: too few hours
        out["hours"] = walk.realized["hours"]
    cols = [risk.level_index(walk.tau, lv) for lv in CSV_LEVELS]  # [5] columns of the 101 levels
    for name in walk.names:
        q = walk.q(name)[:, cols]  # [N, 5]
        for j, lv in enumerate(CSV_LEVELS):
            out[f"{name}_q{100 * lv:g}"] = q[:, j]
        out[f"{name}_crps"] = risk.crps(y, walk.q(name), walk.tau)
        out[f"{name}_var"] = walk.variance[name].to_numpy(float)
    out.index.name = "date"
    return out

