"""Walk-forward of the risk baselines: refit every `retrain_every` days on the past, forecast the week.

Given daily candles (open/high/low/close, index = candle open time), the realised value of day t
is r[t] = 100 ln(close[t] / close[t-1]), the percent log return of candle t, known when it closes.
Its forecast is made when candle t-1 closes (= candle t opens), from candles up to t-1.

Folds: the target days from `start` on are cut into blocks of `retrain_every` rows; at each
block's first day (the cut) every baseline is refitted on the rows before it (returns and
Garman-Klass variances of candles before the cut), then forecasts the block's days one step
ahead, each from the data through the day before (models/risk_baselines.py).

With hourly candles (`intraday`), each return day also gets its realized measures
(prep/realized.py, the day's own hours); a day without them uses its Garman-Klass variance in
their place (prep/realized.model_inputs), counted in `counts["realized"]`, and the intraday
models (HAR-RV, HARQ) are walked beside the daily ones.

Forecast combinations (COMBINATIONS) are formed after the walk from their members' forecasts of
the same days: the level-by-level mean of the members' quantiles (quantile averaging, still
monotone), whose variance is the square of the members' mean standard deviation (exact when the
members' standardised shapes agree, as the average of two location-scale quantile functions).

This is the risk models' own driver, beside the point network's (backtest/engine.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from coincast.errors import ConfigError, DataError
from coincast.evaluation.risk import LEVELS, check_levels
from coincast.models.risk_baselines import all_baselines
from coincast.prep import realized
from coincast.prep.volatility import PERCENT2, garman_klass

# name -> the members whose quantiles it averages level by level (where the walk holds them all)
COMBINATIONS = {"garch_har": ("garch_t", "har_rv"), "network_har": ("network", "har_rv")}
# The served risk model: the first of these the data support (the backtest, predict and the live
# service; fixed before the test period: benchmarks/results/intraday_risk/RULE.md).
SERVED_MODELS = ("network_har", "network", "garch_har", "har_rv", "harq", "garch_t")


@dataclass
class RiskWalk:
    """The walk's result: per target day, the realised return and every baseline's quantiles."""

    actual: pd.Series  # [N] realised percent log return of each target day
    quantiles: pd.DataFrame  # [N, B * K] columns (baseline, level)
    tau: np.ndarray  # [K]
    folds: pd.DataFrame  # one row per (fold, baseline): cut, days, the fit's parameters and flags
    counts: dict = field(default_factory=dict)  # fits and GARCH non-convergence / ignored warm starts
    variance: pd.DataFrame | None = None  # [N, B] each model's variance forecast (percent^2)
    realized: pd.DataFrame | None = None  # [N, 7] the days' realized measures, hours and `filled` (intraday)

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(self.quantiles.columns.get_level_values(0)))

    def q(self, name: str) -> np.ndarray:
        """[N, K] One baseline's quantiles."""
        return self.quantiles[name].to_numpy(float)

    def subset(self, keep) -> "RiskWalk":
        """The walk on the days where `keep` [N] is true."""
        return RiskWalk(self.actual[keep], self.quantiles[keep], self.tau, self.folds, self.counts,
                        None if self.variance is None else self.variance[keep],
                        None if self.realized is None else self.realized[keep])


def percent_returns(candles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """r [T-1] percent log returns and gk [T-1] Garman-Klass variances (percent^2) of candles 1..T-1,
    with their index (the candles' open times)."""
    close = candles["close"].to_numpy(float)  # [T]
    r = 100 * np.diff(np.log(close))  # [T-1]
    gk = PERCENT2 * garman_klass(candles).to_numpy()[1:]  # [T-1]
    return r, gk, candles.index[1:]


def pooled_returns(candles: pd.DataFrame, others: dict[str, pd.DataFrame],
                   hourly: dict[str, pd.DataFrame] | None = None) -> dict[str, tuple]:
    """The network's risk head's pool: each of `others`' (name -> daily candles) percent log returns
    and Garman-Klass variances ([T-1] each) on the calendar days of `candles`' returns, NaN on a day
    it has none, so that a fit given the returns before row n takes the other coins' rows before n.
    With `hourly` (name -> hourly candles), a third element: the coin's realized measures on those
    days (prep/realized.model_inputs; NaN where it has no return)."""
    days = candles.index[1:].normalize()  # [T-1] the days of its returns (percent_returns)
    pool = {}
    for name, other in others.items():
        r, gk, index = percent_returns(other)
        both = pd.DataFrame({"r": r, "gk": gk}, index=index.normalize()).reindex(days)  # [T-1, 2]
        pool[name] = (both["r"].to_numpy(float), both["gk"].to_numpy(float))
        if hourly is not None and name in hourly:
            gk_days = both["gk"].to_numpy(float)
            rm, _ = realized.model_inputs(realized.on_days(realized.daily_measures(hourly[name]), days), gk_days)
            pool[name] += (rm,)
    return pool


def walk_forward_risk(candles: pd.DataFrame, start, retrain_every: int = 7, tau=LEVELS,
                      baselines: list | None = None, end=None, intraday: pd.DataFrame | None = None) -> RiskWalk:
    """Every baseline's quantiles (at `tau`, default LEVELS) and variance of each day's return from
    `start` through `end`, both included (dates, or row numbers of `candles`; `end` defaults to the
    last candle), and the COMBINATIONS of them. `intraday`: hourly candles (UTC open-time index,
    open/close) whose realized measures the intraday models use; `baselines` defaults to every
    baseline, the intraday ones where `intraday` is given."""
    tau = check_levels(tau)
    if retrain_every < 1:
        raise ConfigError(f"retrain_every must be at least 1 day; got {retrain_every}")
    baselines = all_baselines(intraday=intraday is not None) if baselines is None else baselines
    r, gk, index = percent_returns(candles)
    rm, measures = None, None
    if intraday is not None:
        measures = realized.on_days(realized.daily_measures(intraday), index)  # [T-1, 6]
        rm, filled = realized.model_inputs(measures, gk)
        measures["filled"] = filled
    elif any(getattr(b, "intraday", False) for b in baselines):
        raise ConfigError("HAR-RV and HARQ need hourly candles (intraday) for their realized measures")
    first = _row(index, start, "start")
    stop = len(index) if end is None else _row(index, end, "end") + 1
    need = max(b.min_history for b in baselines)
    if first < need:
        raise DataError(f"start {index[min(first, len(index) - 1)].date()} leaves {first} returns before it; the "
                        f"baselines need {need}: choose a start at least {need} days after the first candle "
                        f"({index[0].date()})")
    if stop <= first:
        raise ConfigError(f"end must be after start ({index[first].date()})")

    parts: dict[str, list[np.ndarray]] = {b.name: [] for b in baselines}
    var: dict[str, list[np.ndarray]] = {b.name: [] for b in baselines}
    head = (lambda n: {}) if rm is None else (lambda n: {"rm": rm[:n]})  # the realized measures of rows before n
    rows = []
    for cut in range(first, stop, retrain_every):
        fold_end = min(cut + retrain_every, stop)  # the fold forecasts rows cut..fold_end-1
        for b in baselines:
            b.fit(r[:cut], gk[:cut], **head(cut))  # rows before the cut only
            # data through the day before the fold's last day: forecasts of rows cut..fold_end-1
            seen = (r[: fold_end - 1], gk[: fold_end - 1])
            parts[b.name].append(b.forecast(*seen, cut, tau, **head(fold_end - 1)))
            var[b.name].append(b.variance(*seen, cut, **head(fold_end - 1)))
            rows.append({"cut": index[cut], "days": fold_end - cut, "baseline": b.name, **b.info_})

    days = index[first:stop]
    quantiles = {name: pd.DataFrame(np.vstack(p), index=days, columns=tau) for name, p in parts.items()}
    variance = pd.DataFrame({name: np.concatenate(v) for name, v in var.items()}, index=days)
    for name, members in COMBINATIONS.items():
        if all(m in quantiles for m in members):
            quantiles[name] = sum(quantiles[m] for m in members) / len(members)
            variance[name] = (sum(np.sqrt(variance[m]) for m in members) / len(members)) ** 2
    counts = {"folds": len(range(first, stop, retrain_every)), "days": len(days)}
    for b in baselines:
        if hasattr(b, "counts_"):
            counts[b.name] = b.counts_
    if measures is not None:
        counts["realized"] = {"days_filled_before": int(measures["filled"].iloc[:first].sum()),
                              "days_filled": int(measures["filled"].iloc[first:stop].sum())}
    return RiskWalk(actual=pd.Series(r[first:stop], index=days, name="actual"),
                    quantiles=pd.concat(quantiles, axis=1), tau=tau, folds=pd.DataFrame(rows), counts=counts,
                    variance=variance, realized=None if measures is None else measures.iloc[first:stop])


def _row(index: pd.Index, when, what: str) -> int:
    """The row of `when` (a date: the first row on or after it; or a row number) among the returns."""
    if isinstance(when, (int, np.integer)):
        row = int(when) - 1  # a row of the candles; returns start at candle 1
    else:
        row = int(index.searchsorted(pd.Timestamp(when, tz="UTC") if pd.Timestamp(when).tzinfo is None
                                     else pd.Timestamp(when)))
    if not 0 <= row < len(index):
        raise ConfigError(f"{what} {when} is outside the data ({index[0].date()} .. {index[-1].date()})")
    return row
