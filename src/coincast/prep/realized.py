"""Realized measures of each UTC day from its hourly candles: the intraday inputs of the risk models.

A day is a UTC calendar day of the hourly candles' open times, and it uses only its own hours.
Each hour's return is its own candle's, r_h = 100 ln(close_h / open_h) (percent), so an hour
never reaches into the day before or across a gap; on a 24/7 exchange the next candle opens at
this one's close, so the day's hourly returns add up to its open-to-close return. From the n
hourly returns present on a day (M = 24 hours in a full day):

- realized variance      RV  = sum r_h^2
- bipower variation      BV  = (pi / 2) sum |r_h| |r_h-1| over adjacent hours (jump-robust;
                               Barndorff-Nielsen & Shephard 2004)
- realized semivariances RS+ = sum r_h^2 [r_h > 0], RS- = sum r_h^2 [r_h < 0]
                               (Barndorff-Nielsen, Kinnebrock & Shephard 2010; RS+ + RS- = RV)
- realized quarticity    RQ  = (M / 3) sum r_h^4  (Bollerslev, Patton & Quaedvlieg 2016)

Units: percent^2 (RQ percent^4), the units of the daily percent returns' squares.

Missing hours (exchange outages leave no candle) follow one stated rule: a day with at least
`MIN_HOURS` (18) of its 24 hours present gets every sum scaled to the full day, that is each
sum's mean per hour (per adjacent pair for BV) times 24; a day with fewer has NaN in every measure
(`hours` still says how many were there), and the risk models use the day's Garman-Klass variance
in its place, counted (models/risk_walk.py). A full day is unscaled except BV, whose 23 pairs are
scaled by 24/23 (the usual n/(n-1) correction).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from coincast.errors import DataError

HOURS = 24  # hours in a full day
MIN_HOURS = 18  # fewer hours present than this: the day's measures are NaN
MEASURES = ("rv", "bv", "rs_pos", "rs_neg", "rq")  # the columns of `daily_measures`, before `hours`


def hourly_returns(hourly: pd.DataFrame) -> pd.Series:
    """[H] Each hourly candle's percent log return 100 ln(close / open), indexed by its open time."""
    missing = [c for c in ("open", "close") if c not in hourly.columns]
    if missing:
        raise DataError(f"realized measures need hourly candles with open and close; missing {', '.join(missing)}")
    if not isinstance(hourly.index, pd.DatetimeIndex) or hourly.index.tz is None:
        raise DataError("realized measures need hourly candles indexed by their UTC open times")
    o, c = hourly["open"].to_numpy(float), hourly["close"].to_numpy(float)
    if not (np.all(np.isfinite(o) & np.isfinite(c)) and np.all((o > 0) & (c > 0))):
        raise DataError("realized measures need positive, finite hourly open and close prices")
    if not hourly.index.is_monotonic_increasing or hourly.index.has_duplicates:
        raise DataError("hourly candles must be sorted by open time with no time twice")
    return pd.Series(100 * np.log(c / o), index=hourly.index, name="r")


def daily_measures(hourly: pd.DataFrame, min_hours: int = MIN_HOURS) -> pd.DataFrame:
    """[D, 6] RV, BV, RS+, RS-, RQ and the hours present of each UTC day the hourly candles touch,
    indexed by the day (midnight UTC); NaN measures on a day with fewer than `min_hours` hours."""
    r = hourly_returns(hourly)
    index = r.index.tz_convert("UTC")
    day = index.floor("D")  # [H] each hour's day
    hour = ((index - day) // pd.Timedelta(hours=1)).to_numpy()  # [H] 0..23
    if len(r) and (index != index.floor("h")).any():
        raise DataError("hourly candles must open on the hour (UTC); resample them to 1-hour bars first")
    x = r.to_numpy()
    # |r_h| |r_h-1| where the previous row is the hour before on the same day, else NaN (no pair)
    prev_ok = np.r_[False, (day[1:] == day[:-1]) & (hour[1:] == hour[:-1] + 1)]  # [H]
    pair = np.where(prev_ok, np.abs(x) * np.abs(np.r_[np.nan, x[:-1]]), np.nan)  # [H]
    frame = pd.DataFrame({"r2": x**2, "pos": np.where(x > 0, x**2, 0.0), "neg": np.where(x < 0, x**2, 0.0),
                          "r4": x**4, "pair": pair}, index=day)
    g = frame.groupby(level=0)
    n = g["r2"].size()  # [D] hours present
    mean = g[["r2", "pos", "neg", "r4"]].mean()  # [D, 4] per hour
    out = pd.DataFrame({
        "rv": HOURS * mean["r2"],
        "bv": HOURS * (math.pi / 2) * g["pair"].mean(),  # mean over the adjacent pairs present
        "rs_pos": HOURS * mean["pos"],
        "rs_neg": HOURS * mean["neg"],
        "rq": HOURS**2 / 3 * mean["r4"],
    })
    out.loc[n < min_hours, list(MEASURES)] = np.nan
    out["hours"] = n.astype(int)
    out.index.name = "date"
    return out


def on_days(measures: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """[N, 6] `measures` (daily_measures) on the calendar days of `days` (daily candles' open times):
    NaN measures and 0 hours on a day the hourly candles do not have."""
    out = measures.reindex(pd.DatetimeIndex(days).tz_convert("UTC").normalize())
    out["hours"] = out["hours"].fillna(0).astype(int)
    out.index = days
    return out


def model_inputs(measures: pd.DataFrame, gk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rm [N] a structured array with the fields MEASURES, filled [N] bool) of the days of
    `measures` (on_days), for the risk models: a day without measures (too few hours, or none), or
    with no movement at all (RV 0, whose log a HAR cannot take), gets its Garman-Klass variance gk
    [N] (percent^2) as RV, BV and RS+ + RS- (half each) and gk^2 as RQ, and is marked filled; RV
    (and RQ) stay at least the least positive RV (its square), so that a log is finite."""
    gk = np.asarray(gk, float)
    rv = measures["rv"].to_numpy(float)
    filled = ~(np.isfinite(rv) & (rv > 0))  # [N]
    rm = np.zeros(len(rv), dtype=[(m, float) for m in MEASURES])
    fill = {"rv": gk, "bv": gk, "rs_pos": gk / 2, "rs_neg": gk / 2, "rq": gk**2}
    for m in MEASURES:
        rm[m] = np.where(filled, fill[m], measures[m].to_numpy(float))
    positive = rm["rv"][rm["rv"] > 0]
    floor = positive.min() if positive.size else 1e-8  # a flat candle's GK is 0 too: the least positive RV
    rm["rv"], rm["rq"] = np.maximum(rm["rv"], floor), np.maximum(rm["rq"], floor**2)
    return rm, filled
