"""The hourly candles beside daily data (`--intraday NAME|PATH|none`), resolved and checked once.

Daily work can use the same market's hourly candles (the risk models' realized measures: a day's
variance from its hours). `resolve` turns the user's choice into a validated frame or None:

* `none`: no hourly data.
* not given: the daily data's companion where there is one: a bundled daily coin's hourly series
  (btc-usd -> btc-usd-1h), or a store reference's 1h candles where the store holds them
  (store:binance/BTC/USDT/1d -> store:binance/BTC/USDT/1h, kept current by
  `coincast fetch --timeframe 1h`); else none (a file's hourly candles are given by path).
* a bundled name, a CSV/Parquet path (read as --data reads files, `--timestamps close` included)
  or a store reference: that series.

The frame must be 1-hour candles with open/high/low/close (named in any case; volume kept where
there is one) that overlap the daily data's days. It is cut to the daily data's span, from the
first daily candle's open to the last one's close, so no hour after the daily data's last candle
is seen. Hours without trades have no row (exchange outages): the frame keeps those gaps. A series
that ends before the daily data's last day (a store's 1h candles fetched less recently than its
1d ones) is used with a warning that names the fix.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from coincast.data.datasets import DATASETS, load
from coincast.data.frame import bar_length
from coincast.errors import CoincastError, DataError

HOUR = pd.Timedelta(hours=1)
PRICES = ("open", "high", "low", "close")
NONE = ("none", "")


@dataclass(frozen=True)
class Intraday:
    """The hourly series daily work uses: its spec and validated candles, or None and why."""

    series: str | None  # the bundled name, path or store reference; None: no hourly data
    frame: pd.DataFrame | None  # [H, 4 or 5] hourly candles (UTC open-time index), cut to the daily span
    note: str  # how it was chosen ("default: ..."/"given"), or why there is none

    def record(self) -> dict:
        """metrics.json's `intraday`: the series, how it was chosen, its rows and first/last hour."""
        if self.frame is None:
            return {"series": None, "note": self.note}
        return {"series": self.series, "note": self.note, "rows": len(self.frame),
                "first": str(self.frame.index[0]), "last": str(self.frame.index[-1])}


def companion(data: str) -> str | None:
    """The default hourly series of one daily data spec: the bundled coin's, the store's 1h candles
    of the same market where it holds them, else None."""
    hourly = f"{data}-1h"
    if data in DATASETS and DATASETS[data].bar == "1D" and hourly in DATASETS:
        return hourly
    if data.startswith("store:"):
        from coincast.data.store import Store, StoreError, parse_ref  # DuckDB only for a store

        exchange, symbol, timeframe = parse_ref(data)
        if timeframe != "1d":
            return None
        try:
            with Store(read_only=True) as db:
                held = db.last_open_time(exchange, symbol, "1h") is not None
        except StoreError:
            return None
        return f"store:{exchange}/{symbol}/1h" if held else None
    return None


def resolve(spec: str | Path | None, raws: dict[str, pd.DataFrame], timestamps: str = "open") -> Intraday:
    """The hourly series for daily data `raws` (data spec -> its candles): `spec` as --intraday gives
    it (None: the default companion, "none": no series), loaded and checked against the one daily
    series. A wrong series is a DataError that names the fix."""
    chosen = spec is not None  # by the user; else the default
    spec_s = "" if spec is None else str(spec).strip()
    if chosen and spec_s.lower() in NONE:
        return Intraday(None, None, "--intraday none")
    if len(raws) != 1:
        if chosen:
            raise DataError(f"--intraday {spec_s}: one hourly series goes with one daily series, and --data "
                            f"has {len(raws)} assets; run one asset, or drop --intraday")
        return Intraday(None, None, f"{len(raws)} assets: hourly data go with one daily series")
    data, daily = next(iter(raws.items()))
    bar = bar_length(daily.index)
    if bar != pd.Timedelta(days=1):
        what = _bars(bar)
        if chosen:
            raise DataError(f"--intraday {spec_s}: hourly data go with daily --data, and {data} has {what}; "
                            "give daily candles, or drop --intraday")
        return Intraday(None, None, f"{data} has {what}, not daily candles")
    if not chosen:
        spec_s = companion(str(data)) or ""
        if not spec_s:
            return Intraday(None, None, f"no hourly series goes with {data} by default: give one with --intraday PATH")
    frame = check(_load(spec_s, timestamps), spec_s, daily, str(data))
    return Intraday(spec_s, frame, f"default: {data}'s hourly companion" if not chosen else "given")


def _load(spec: str, timestamps: str) -> pd.DataFrame:
    if spec not in DATASETS and not spec.startswith("store:") and not Path(spec).exists() \
            and "/" not in spec and "." not in spec:
        hourly = ", ".join(d.name for d in DATASETS.values() if d.bar == "1h")
        raise DataError(f"--intraday {spec}: no such hourly dataset; use one of {hourly}, a path to an hourly "
                        "CSV/Parquet file, store:EXCHANGE/SYMBOL/1h, or none")
    try:
        return load(spec, timestamps=timestamps)
    except CoincastError as exc:
        raise DataError(f"--intraday {spec}: {exc}") from None


def check(frame: pd.DataFrame, spec: str, daily: pd.DataFrame, data: str) -> pd.DataFrame:
    """`frame` as 1-hour open/high/low/close(/volume) candles cut to `daily`'s span, or a DataError."""
    bar = bar_length(frame.index)
    if bar != HOUR:
        raise DataError(f"--intraday {spec}: has {_bars(bar)}, not 1-hour candles; give the market's hourly candles "
                        "(e.g. btc-usd-1h, or fetch them with coincast fetch --timeframe 1h), or --intraday none")
    lower = {c.lower(): c for c in frame.columns}
    missing = [c for c in PRICES if c not in lower]
    if missing:
        raise DataError(f"--intraday {spec}: no {'/'.join(missing)} column; hourly candles need open, high, low "
                        "and close columns (any case), or use --intraday none")
    keep = [c for c in (*PRICES, "volume") if c in lower]
    candles = frame[[lower[c] for c in keep]].set_axis(keep, axis=1)
    start, end = daily.index[0], daily.index[-1] + pd.Timedelta(days=1)  # the daily candles' span
    inside = candles.loc[(candles.index >= start) & (candles.index < end)]
    if inside.empty:
        raise DataError(f"--intraday {spec}: its hours ({candles.index[0]} to {candles.index[-1]}) do not overlap "
                        f"{data}'s days ({daily.index[0].date()} to {daily.index[-1].date()}); give the hourly "
                        "candles of the same market and period, or --intraday none")
    if inside.index[-1] < daily.index[-1]:
        fix = ("bring it up to date with coincast fetch --timeframe 1h" if spec.startswith("store:")
               else "give hourly candles through that day")
        warnings.warn(f"--intraday {spec}: its last hour ({inside.index[-1]}) is before {data}'s last day "
                      f"({daily.index[-1].date()}), so the days after it have no hours: {fix}", stacklevel=2)
    return inside


def _bars(bar: pd.Timedelta | None) -> str:
    """A bar length in words: undated rows, 4-hour bars, 1-day bars."""
    if bar is None:
        return "undated rows"
    return f"{bar / HOUR:g}-hour bars" if bar < pd.Timedelta(days=1) else f"{bar / pd.Timedelta(days=1):g}-day bars"

