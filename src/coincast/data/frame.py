"""The frame contract, checked once at the border between sources and everything else.

A frame is a pandas DataFrame with a UTC `DatetimeIndex` named `date` (or a RangeIndex
for date-less files such as the tutorial's), sorted, unique, with named float64 columns
and no NaNs. Every source produces one; every later step may rely on it.

Each row is one candle and its label is the candle's OPEN time: the daily row 2024-01-01
holds the candle that opens at 00:00 UTC that day and closes at 00:00 UTC the next
(coincast.data.exogenous counts on it). Files whose timestamps are close times are read
with timestamps="close" (open = close - bar length, rounded to the minute); without it, a
file whose every timestamp sits just before a full minute (23:59:59, xx:59:59.999: close
times) is refused, since an open time never looks like that.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from coincast.errors import ConfigError, DataError

# Column names that hold the time of a row, in order of preference.
DATE_COLUMNS = ("timestamp", "date", "datetime", "time", "open_time")
TIMESTAMPS = ("open", "close")  # what a file's timestamps mark: each candle's open or close time


def find_date_column(columns: pd.Index) -> str | None:
    """The column that holds timestamps, matched case-insensitively, or None."""
    lowered = {str(c).lower(): c for c in columns}
    for name in DATE_COLUMNS:
        if name in lowered:
            return lowered[name]
    return None


def to_frame(raw: pd.DataFrame, source: str, timestamps: str = "open") -> pd.DataFrame:
    """Turn a freshly read table into a validated frame: index by open time, keep numeric columns.

    `timestamps`: "open" (each timestamp is its candle's open time) or "close" (its close time).
    """
    if raw.empty or len(raw.columns) == 0:
        raise DataError(f"{source} is empty: give a file with a header row and at least one data row")
    raw = raw.copy()
    date_col = find_date_column(raw.columns)
    if date_col is not None:
        try:
            index = pd.to_datetime(raw.pop(date_col), utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise DataError(
                f"{source}: column '{date_col}' has values that are not dates ({exc}); "
                "fix them or rename the column"
            ) from None
        raw.index = pd.DatetimeIndex(index, name="date")
    numeric = [c for c in raw.columns if _is_numeric_like(raw[c])]
    if not numeric:
        raise DataError(
            f"{source} has no numeric columns: coincast needs at least a price column "
            "such as 'close'"
        )
    frame = raw[numeric]
    return open_times(validate_frame(frame, source), source, timestamps)


def day_on(index: pd.Index, value, what: str, flag: str) -> pd.Timestamp:
    """`value` (a date the user gave as `flag`) as a timestamp in the time zone of `index`."""
    try:
        when = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ConfigError(f"{what} {value!r} is not a date: use {flag} YYYY-MM-DD") from None
    if when.tzinfo is None and getattr(index, "tz", None) is not None:
        when = when.tz_localize(index.tz)
    return when


def bar_length(index: pd.Index) -> pd.Timedelta | None:
    """The bar length: the most common step between dated rows (robust to gaps and outages).
    None without dates or with fewer than two rows. The one statement of it: windows' gap
    rule, the exogenous join, the assets' shared bar and the trading year all use it."""
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        return None
    values, counts = np.unique(np.diff(index.asi8), return_counts=True)  # in the index's own unit
    return pd.Timedelta(int(values[counts.argmax()]), unit=index.unit)


def open_times(frame: pd.DataFrame, source: str, timestamps: str = "open") -> pd.DataFrame:
    """The frame labelled by candle open times (see the module docstring)."""
    if timestamps not in TIMESTAMPS:
        raise DataError(f"timestamps must be 'open' or 'close' (got {timestamps!r}): use --timestamps open|close")
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        return frame
    bar = bar_length(index)
    unit = min(bar, pd.Timedelta(minutes=1))
    if timestamps == "open":
        before = index.ceil(unit) - index  # [T] how far each timestamp is before a full minute
        if ((before > pd.Timedelta(0)) & (before <= pd.Timedelta(seconds=1))).all():
            raise DataError(
                f"{source}: every timestamp sits just before a full minute ({index[0]}, ...), as candle close "
                "times do, but coincast labels each candle by its open time: pass --timestamps close to convert them"
            )
        return frame
    frame = frame.copy()
    frame.index = (index - bar).round(unit).as_unit(index.unit).rename("date")  # open = close - bar length
    dupes = frame.index[frame.index.duplicated()]
    if len(dupes):
        raise DataError(f"{source}: two close times give the open time {dupes[0]}; keep one row per candle")
    return frame


def _is_numeric_like(col: pd.Series) -> bool:
    """Numeric columns, and text columns that are mostly numbers (so a stray bad cell is reported, not dropped)."""
    if pd.api.types.is_bool_dtype(col):
        return False
    if pd.api.types.is_numeric_dtype(col):
        return True
    parsed = pd.to_numeric(col, errors="coerce")
    return parsed.notna().mean() >= 0.9


def validate_frame(frame: pd.DataFrame, source: str = "data") -> pd.DataFrame:
    """Check and normalise a frame: float64, no NaNs, unique sorted index. Returns a new frame."""
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    for col in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            parsed = pd.to_numeric(frame[col], errors="coerce")
            bad = frame[col][parsed.isna() & frame[col].notna()]
            if len(bad):
                where = _where(frame.index, bad.index[0])
                raise DataError(
                    f"{source}: column '{col}' has a non-numeric value {bad.iloc[0]!r} {where}; "
                    "fix or remove that row"
                )
            frame[col] = parsed
        frame[col] = frame[col].astype("float64")
    check_finite(frame.to_numpy(), frame, source)
    if isinstance(frame.index, pd.DatetimeIndex):
        if frame.index.tz is None:
            frame.index = frame.index.tz_localize("UTC")
        frame.index = frame.index.tz_convert("UTC").rename("date")
        dupes = frame.index[frame.index.duplicated()]
        if len(dupes):
            raise DataError(
                f"{source}: timestamp {dupes[0]} appears more than once; "
                "keep one row per timestamp"
            )
        if not frame.index.is_monotonic_increasing:
            warnings.warn(f"{source}: timestamps were not in order; sorted them", stacklevel=2)
            frame = frame.sort_index()
    else:
        frame = frame.reset_index(drop=True)
    return frame


def check_finite(values: np.ndarray, frame: pd.DataFrame, source: str = "data", when: str = "loading") -> None:
    """DataError naming the column and row of the first NaN or infinite value in `values` ([T, F] of `frame`)."""
    if np.isnan(values).any():
        row, col = np.argwhere(np.isnan(values))[0]
        raise DataError(
            f"{source}: column '{frame.columns[col]}' has a missing value (NaN) "
            f"{_where(frame.index, frame.index[row])}; fill or drop it before {when}"
        )
    if np.isinf(values).any():
        row, col = np.argwhere(np.isinf(values))[0]
        raise DataError(
            f"{source}: column '{frame.columns[col]}' has an infinite value "
            f"{_where(frame.index, frame.index[row])}; fix or drop that row"
        )


def _where(index: pd.Index, label) -> str:
    return f"at {label}" if isinstance(index, pd.DatetimeIndex) else f"in data row {int(label) + 1}"


def select_columns(
    frame: pd.DataFrame, target: str | int | None, features: list[str] | None
) -> tuple[pd.DataFrame, str]:
    """Resolve the target and feature columns (by name or 0-based index); target first if new."""
    target_name = resolve_column(frame, target if target is not None else _default_target(frame))
    if features is None:
        names = list(frame.columns)
    else:
        names = [resolve_column(frame, f) for f in features]
        if target_name not in names:
            names = [target_name] + names
    return frame[list(dict.fromkeys(names))], target_name


def resolve_column(frame: pd.DataFrame, key: str | int) -> str:
    """A column by exact name, case-insensitive name, or 0-based index."""
    cols = list(frame.columns)
    key_s = str(key).strip()
    if key_s in cols:
        return key_s
    lowered = {c.lower(): c for c in cols}
    if key_s.lower() in lowered:
        return lowered[key_s.lower()]
    if key_s.lstrip("-").isdigit() and 0 <= int(key_s) < len(cols):
        return cols[int(key_s)]
    shown = ", ".join(cols[:12]) + (", ..." if len(cols) > 12 else "")
    raise DataError(f"unknown column '{key_s}': choose a name or 0-based index among {shown}")


def _default_target(frame: pd.DataFrame) -> str:
    for name in ("close", "price", "Close"):
        if name.lower() in {c.lower() for c in frame.columns}:
            return name
    raise DataError("no 'close' or 'price' column to predict: name the target with --target")
