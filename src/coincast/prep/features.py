"""Technical indicators (TA-Lib) chosen by a spec string such as `close,rsi14,macd,bb20`.

Every indicator looks only backwards, so a value at time t uses candles up to t alone
(tests/test_features.py proves it). Warm-up rows, where an indicator is not yet defined,
are dropped, never zero-filled. Each produced column declares how a window normalises it:

- "ratio":    divide by the window's first value (price-like, as in the tutorial)
- "standard": z-score with statistics of the training windows only
- "none":     use as it is (already scale-free and centred, e.g. log returns)

Price-scaled indicators (MACD, ATR) are divided by the close so they are scale-free.
RSI, MACD, ATR and EMA are recursive: their first values depend on where the data starts
and that fades within months, so compute features on the full history, then cut or join.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import pandas as pd
import talib

from coincast.errors import ConfigError, DataError
from coincast.prep.volatility import garman_klass

PRICES = ("open", "high", "low", "close")


def _rsi(f: pd.DataFrame, n: int) -> dict:
    return {f"rsi{n}": talib.RSI(f["close"], timeperiod=n)}


def _macd(f: pd.DataFrame, fast: int, slow: int, signal: int) -> dict:
    line, sig, hist = talib.MACD(f["close"], fastperiod=fast, slowperiod=slow, signalperiod=signal)
    suffix = "" if (fast, slow, signal) == (12, 26, 9) else f"{fast}_{slow}_{signal}"
    name = f"macd{suffix}"
    return {name: line / f["close"], f"{name}_signal": sig / f["close"], f"{name}_hist": hist / f["close"]}


def _bollinger(f: pd.DataFrame, n: int) -> dict:
    upper, middle, lower = talib.BBANDS(f["close"], timeperiod=n, nbdevup=2, nbdevdn=2)
    width = upper - lower
    return {f"bb{n}_pctb": (f["close"] - lower) / width.where(width > 0), f"bb{n}_width": width / middle}


def _atr(f: pd.DataFrame, n: int) -> dict:
    return {f"atr{n}": talib.ATR(f["high"], f["low"], f["close"], timeperiod=n) / f["close"]}


def _obv(f: pd.DataFrame) -> dict:
    return {"obv": talib.OBV(f["close"], f["volume"])}


def _ema(f: pd.DataFrame, n: int) -> dict:
    return {f"ema{n}": f["close"] / talib.EMA(f["close"], timeperiod=n)}


def _sma(f: pd.DataFrame, n: int) -> dict:
    return {f"sma{n}": f["close"] / talib.SMA(f["close"], timeperiod=n)}


def _logret(f: pd.DataFrame, n: int) -> dict:
    return {f"logret{n}": np.log(f["close"] / f["close"].shift(n))}


def _vol(f: pd.DataFrame, n: int) -> dict:
    """Realised volatility: standard deviation of the last n one-step log returns."""
    return {f"vol{n}": np.log(f["close"] / f["close"].shift(1)).rolling(n).std()}


def _gk(f: pd.DataFrame, *windows: int) -> dict:
    """Garman-Klass volatility (prep/volatility.py) averaged HAR-style: for each window n, the
    square root of the mean Garman-Klass variance of the last n candles (a log-return scale)."""
    variance = garman_klass(f)
    return {f"gk{n}": np.sqrt(variance.rolling(n, min_periods=n).mean()) for n in windows}


# name -> (function, default periods, columns it needs, normalisation of each output)
INDICATORS: dict[str, tuple[Callable, tuple[int, ...], tuple[str, ...], str]] = {
    "rsi": (_rsi, (14,), ("close",), "standard"),
    "macd": (_macd, (12, 26, 9), ("close",), "standard"),
    "bb": (_bollinger, (20,), ("close",), "standard"),
    "atr": (_atr, (14,), ("high", "low", "close"), "standard"),
    "obv": (_obv, (), ("close", "volume"), "standard"),
    "ema": (_ema, (20,), ("close",), "standard"),
    "sma": (_sma, (50,), ("close",), "standard"),
    "logret": (_logret, (1,), ("close",), "none"),
    "vol": (_vol, (20,), ("close",), "standard"),
    "gk": (_gk, (1, 7, 30), PRICES, "standard"),
}
# Every indicator at its default periods, with close and volume: what `coincast audit` checks.
ALL_FEATURES = ",".join(["close", "volume", *INDICATORS])

# How each column is normalised inside a window, for the default spellings; `normalisation`
# answers for any column (other periods, raw and exogenous columns).
FEATURE_NORMALISATION: dict[str, str] = {
    **{p: "ratio" for p in PRICES},
    "volume": "standard",
    "rsi14": "standard", "macd": "standard", "macd_signal": "standard", "macd_hist": "standard",
    "bb20_pctb": "standard", "bb20_width": "standard", "atr14": "standard", "obv": "standard",
    "ema20": "standard", "sma50": "standard", "logret1": "none", "vol20": "standard",
    "gk1": "standard", "gk7": "standard", "gk30": "standard",
}

TOKEN = re.compile(r"([a-z]+)(\d+(?:_\d+)*)?")


def parse_spec(spec: str | list[str]) -> list[str]:
    """'close, RSI14,macd' -> ['close', 'rsi14', 'macd']; duplicates removed, order kept."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    tokens = [t.strip().lower() for t in items if t.strip()]
    if not tokens:
        raise ConfigError("the feature list is empty: give e.g. --features close,rsi14,macd")
    return list(dict.fromkeys(tokens))


def add_features(frame: pd.DataFrame, spec: str | list[str]) -> pd.DataFrame:
    """A new frame holding exactly the spec's columns, in order, warm-up rows dropped.

    A token is either a column of `frame` (kept as it is: `close`, `volume`, an exogenous
    column) or an indicator with optional periods: rsi14, macd or macd12_26_9, bb20,
    atr14, obv, ema20, sma50, logret1, vol20, gk or gk1_7_30. `attrs["normalisation"]` maps each column
    to "ratio", "standard" or "none".
    """
    lower = {str(c).lower(): c for c in frame.columns}
    out: dict[str, pd.Series] = {}
    for token in parse_spec(spec):
        if token in lower:
            out[token] = frame[lower[token]].astype("float64")
            continue
        out.update(_indicator(frame, lower, token))
    result = pd.DataFrame(out, index=frame.index)
    defined = result.notna().all(axis=1).to_numpy()
    if not defined.any():
        raise DataError(
            f"{len(frame)} rows are too few for features {spec!r}: every row is still in an "
            "indicator's warm-up; use more data or shorter periods"
        )
    first = int(defined.argmax())
    if not defined[first:].all():
        bad = result.index[first:][~defined[first:]][0]
        raise DataError(f"feature values are undefined at {bad} (a flat or zero price?); check the candles there")
    result = result.iloc[first:]
    result.attrs["normalisation"] = {c: normalisation(c) for c in result.columns}
    return result


MAX_PERIOD = 10_000  # rows an indicator may look back: beyond any sane use, and TA-Lib's own limit is 100,000


def indicator_periods(token: str) -> tuple[str, tuple[int, ...]] | None:
    """'macd12_26_9' -> ('macd', (12, 26, 9)); 'rsi' -> ('rsi', (14,)); None for a non-indicator.

    Every period is checked here, before TA-Lib sees it: the right count, whole numbers from
    1 to MAX_PERIOD, and for MACD a fast period shorter than the slow one.
    """
    token = token.strip().lower()
    head = re.fullmatch(r"([a-z]+)([-\d_]*)", token)  # rsi14, macd12_26_9, sma-5: indicator-shaped
    if not head or head.group(1) not in INDICATORS:
        return None  # a column of the data, or unknown (add_features says which)
    name, rest = head.groups()
    _, defaults, _, _ = INDICATORS[name]
    example = f"{name}{'_'.join(map(str, defaults))}" if defaults else name
    if not rest:
        return name, defaults
    if not re.fullmatch(r"\d+(?:_\d+)*", rest):
        raise ConfigError(
            f"feature '{token}': periods must be whole numbers from 1 to {MAX_PERIOD:,} joined by '_', e.g. {example}"
        )
    periods = tuple(int(p) for p in rest.split("_"))
    if len(periods) != len(defaults) or any(p < 1 for p in periods):
        raise ConfigError(f"feature '{token}' takes {len(defaults)} positive period(s), e.g. {example}")
    if max(periods) > MAX_PERIOD:
        raise ConfigError(
            f"feature '{token}' looks back {max(periods):,} rows, more than the {MAX_PERIOD:,} allowed: "
            f"use a shorter period, e.g. {example}"
        )
    if name == "macd" and periods[0] >= periods[1]:
        raise ConfigError(
            f"feature '{token}': the fast period ({periods[0]}) must be shorter than the slow one "
            f"({periods[1]}), e.g. macd12_26_9"
        )
    return name, periods


def check_spec(spec: str | list[str]) -> list[str]:
    """A user's feature list checked without the data: not empty, every indicator's periods
    valid, nothing listed twice (`rsi` and `rsi14` are the same feature). Returns the tokens."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    tokens = [str(t).strip().lower() for t in items]
    if not any(tokens):
        raise ConfigError("the feature list is empty: give e.g. --features close,rsi14,macd")
    if "" in tokens:
        raise ConfigError(f"the feature list {','.join(tokens)!r} has an empty entry: remove the extra comma")
    seen: dict[object, str] = {}
    for token in tokens:
        parsed = indicator_periods(token)
        key = parsed or token
        if key in seen:
            same = f" (as '{seen[key]}' and '{token}')" if seen[key] != token else ""
            raise ConfigError(f"feature '{token}' is listed twice{same}: list each feature once")
        seen[key] = token
    return tokens


def _indicator(frame: pd.DataFrame, lower: dict, token: str) -> dict:
    parsed = indicator_periods(token)
    if parsed is None:
        known = ", ".join(f"{k}{'_'.join(map(str, d))}" for k, (_, d, _, _) in INDICATORS.items())
        raise ConfigError(
            f"unknown feature '{token}': use a column of the data ({', '.join(lower.values())}) "
            f"or an indicator: {known}"
        )
    name, periods = parsed
    fn, defaults, needs, _ = INDICATORS[name]
    lookback = periods[1] + periods[2] - 1 if name == "macd" else max(periods, default=0)
    if lookback >= len(frame):
        raise DataError(
            f"feature '{token}' looks back {lookback:,} rows but the data has {len(frame):,}: use a shorter "
            f"period or more data"
        )
    missing = [c for c in needs if c not in lower]
    if missing:
        raise DataError(f"feature '{token}' needs column(s) {', '.join(missing)}, which the data lacks; use OHLCV candles")
    cols = pd.DataFrame({c: frame[lower[c]].astype("float64") for c in needs}, index=frame.index)
    return fn(cols, *periods)


def normalisation(column: str) -> str:
    """How a window normalises `column`: ratio for prices, none for log returns, else standard."""
    if column in FEATURE_NORMALISATION:
        return FEATURE_NORMALISATION[column]
    match = TOKEN.fullmatch(column)
    if match and match.group(1) == "logret":
        return "none"
    return "standard"
