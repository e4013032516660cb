"""Join daily exogenous series (Fear & Greed, sentiment, any date+numbers CSV) onto candles.

The rule: a value is used only from the first candle that closes strictly after the
value was published, so no candle sees a number that did not exist when it closed.

- known="end" (the default for files): the value dated D summarises day D, so it is
  published at 00:00 UTC of D+1. A daily candle D+1 is the first to use it.
- known="start" (the bundled `fear-greed`): alternative.me stamps the value dated D at
  00:00 UTC of day D (computed from the day before). The daily candle D-1 closes exactly
  then, so strictly-after makes candle D the first to use it; an hourly candle opening
  00:00 D (closing 01:00 D) is the first hourly one.

Between publications the latest value carries forward, at most `max_age_days` old;
candles before the first value or after the last one goes stale are dropped (and
counted in `attrs["exogenous_dropped"]`); a stale stretch in the middle is an error.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from coincast.data.datasets import DATASETS, load
from coincast.data.frame import bar_length
from coincast.errors import DataError

KNOWN = {"start": pd.Timedelta(0), "end": pd.Timedelta(days=1)}


def read_series(spec: str | Path) -> pd.DataFrame:
    """A daily series as a frame (UTC midnight index, numeric columns) from a bundled name or a file."""
    text = str(spec).strip()
    if text not in exogenous_datasets() and not Path(text).exists() and "/" not in text and "." not in text:
        raise DataError(
            f"unknown exogenous series '{text}': use {', '.join(exogenous_datasets())} or a CSV file "
            "of dates and numbers, e.g. --exog my_sentiment.csv"
        )
    frame = load(spec)
    name = Path(str(spec)).name
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataError(
            f"{name} has no date column: an exogenous series needs one named 'date' (or timestamp) "
            "plus numeric columns"
        )
    if (frame.index != frame.index.normalize()).any():
        raise DataError(f"{name} has times within the day: give one row per UTC date (aggregate it per day first)")
    today = pd.Timestamp.now(tz="UTC").normalize()
    if frame.index[-1] > today:
        raise DataError(
            f"{name} has dates in the future (latest {frame.index[-1].date()}, today is {today.date()}): "
            "no forecast could have known them; check the date column and its format"
        )
    return frame


def default_known(spec: str | Path) -> str:
    """'start' for the bundled Fear & Greed index, 'end' (the safe choice) for everything else."""
    return "start" if str(spec) == "fear-greed" else "end"


def series_name(spec: str | Path) -> str:
    """A column prefix from a spec: 'fear-greed' -> 'fear_greed', 'out/tweets.csv' -> 'tweets'."""
    stem = Path(str(spec)).name.split(".")[0]
    return re.sub(r"\W+", "_", stem).strip("_").lower() or "exog"


def join_series(
    frame: pd.DataFrame,
    series: pd.DataFrame,
    name: str,
    known: str = "end",
    max_age_days: float = 7,
    candle: pd.Timedelta | None = None,
) -> pd.DataFrame:
    """Add `series`' columns to `frame` (named `name` or `name_column`), aligned causally."""
    if known not in KNOWN:
        raise DataError(f"known='{known}' is not a publication rule: use 'start' or 'end'")
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataError("exogenous series join only onto dated candles; this data has no date column")
    candle = candle if candle is not None else _candle_length(frame.index)
    columns = {c: name if len(series.columns) == 1 else f"{name}_{c}" for c in series.columns}
    clash = [c for c in columns.values() if c in frame.columns]
    if clash:
        raise DataError(f"column(s) {', '.join(clash)} already exist in the data; join each series once")
    published = series.rename(columns=columns)
    published.index = published.index + KNOWN[known]
    close = pd.DataFrame({"close_time": frame.index + candle})
    pub = published.reset_index(names="published")
    pub["published"] = pub["published"].astype(close["close_time"].dtype)
    merged = pd.merge_asof(
        close, pub, left_on="close_time", right_on="published",
        direction="backward", allow_exact_matches=False,  # published strictly before the close
    )
    fresh = (merged["close_time"] - merged["published"]) <= pd.Timedelta(days=max_age_days)
    fresh = fresh.to_numpy()
    if not fresh.any():
        raise DataError(
            f"series '{name}' ({series.index[0].date()} to {series.index[-1].date()}) does not overlap the data "
            f"({frame.index[0].date()} to {frame.index[-1].date()}); use data from the same period"
        )
    first, last = int(fresh.argmax()), len(fresh) - int(fresh[::-1].argmax())
    stale = ~fresh[first:last]
    if stale.any():
        pos = np.flatnonzero(stale)
        breaks = np.flatnonzero(np.diff(pos) > 1)
        end = pos[breaks[0]] if len(breaks) else pos[-1]
        span = frame.index[first:last]
        raise DataError(
            f"series '{name}' has no value newer than {max_age_days:g} days for {len(pos)} candles in "
            f"{len(breaks) + 1} stretch(es), the first from {span[pos[0]]:%Y-%m-%d %H:%M} to {span[end]:%Y-%m-%d %H:%M} UTC; "
            "fill those gaps or allow older values (max_age_days)"
        )
    out = frame.iloc[first:last].copy()
    for col in columns.values():
        out[col] = merged[col].to_numpy()[first:last]
    out.attrs["exogenous_dropped"] = out.attrs.get("exogenous_dropped", 0) + len(frame) - len(out)
    return out


def join_exogenous(frame: pd.DataFrame, specs: str | list[str], max_age_days: float = 7, read=None) -> pd.DataFrame:
    """Join several series ('fear-greed,my_sentiment.csv'), each with its default publication rule.

    `read(spec) -> frame`: how a series is read (default `read_series`).
    """
    read = read or read_series
    items = [s.strip() for s in specs.split(",")] if isinstance(specs, str) else list(specs)
    for spec in filter(None, items):
        frame = join_series(frame, read(spec), series_name(spec), default_known(spec), max_age_days)
    return frame


def exogenous_datasets() -> list[str]:
    """Names of the bundled exogenous series."""
    return [d.name for d in DATASETS.values() if d.kind == "exogenous"]


def _candle_length(index: pd.DatetimeIndex) -> pd.Timedelta:
    bar = bar_length(index)
    if bar is None:
        raise DataError("need at least 2 candles to tell their length; pass candle= explicitly")
    return bar
