"""Windowing: zero filling, per-column normalisation rules, sliding windows, splits.

A window is `window` consecutive rows: the first `window-1` are the input, the last row's
target value is what the model predicts. As in the tutorial, each window is normalised by
its own first row, so the network sees shapes, not price levels.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from coincast.data.frame import check_finite
from coincast.errors import DataError

# Per-column rules. "ratio": x / x0 - 1 (the tutorial's), for columns that are always
# positive. "shift": (x - x0) / s with s the column's standard deviation on the training
# rows, for columns that reach zero or go negative, where a ratio is undefined or flips sign.
# Plain data columns get one of these two automatically. Indicators and exogenous series
# declare theirs (coincast.prep.features.normalisation): "standard": (x - m) / s with the
# training rows' mean and standard deviation; "none": x as it is (log returns).
RATIO, SHIFT, STANDARD, NONE = "ratio", "shift", "standard", "none"
RULES = (RATIO, SHIFT, STANDARD, NONE)
# RevIN's smallest scale: 1 basis point of a column's level (and of the price, for the target's
# step volatility), so a flat window (a stablecoin, zero-filled candles) is not blown up by 1e8.
REVIN_FLOOR = 1e-4


def fill_zeros(frame: pd.DataFrame) -> pd.DataFrame:
    """Replace each 0 with the column's previous value, as the tutorial does.

    The tutorial's row 0 read row -1 (the last row: the future); here zeros with no
    earlier value stay 0. A NaN (or inf) is not a zero: it is an error naming the column
    and the date, on every path (files are checked on reading, frames given to the API here).
    """
    values = frame.to_numpy(dtype=np.float64)  # [T, F]
    check_finite(values, frame, "data", "training or forecasting")
    missing = values == 0  # [T, F]
    rows = np.arange(len(values))[:, None]  # [T, 1]
    last = np.maximum.accumulate(np.where(missing, 0, rows), axis=0)  # [T, F] row of the last value seen
    filled = values[last, np.arange(values.shape[1])]  # [T, F]
    filled[~np.logical_or.accumulate(~missing, axis=0)] = 0.0  # no earlier value: stays 0
    return pd.DataFrame(filled, index=frame.index, columns=frame.columns)


@dataclass
class Normaliser:
    """Which rule each column gets and its training-only centre and scale."""

    columns: list[str]
    rules: list[str]
    scales: list[float]
    centers: list[float] | None = None  # the "standard" rule's mean; None: all 0 (older models)

    @classmethod
    def fit(cls, frame: pd.DataFrame, target: str, declared: dict[str, str] | None = None) -> "Normaliser":
        """Choose rules from the training rows only (nothing after the cut is looked at).

        `declared`: the rule of each indicator or exogenous column; other columns get
        "ratio" when always positive, else "shift".
        """
        if (frame[target] <= 0).any():
            bad = frame.index[(frame[target] <= 0).to_numpy()][0]
            raise DataError(
                f"target column '{target}' has a non-positive value at {bad}; a price must be "
                "positive to be normalised by the window's first value: choose a price column "
                "with --target"
            )
        declared = declared or {}
        rules, scales, centers = [], [], []
        for col in frame.columns:
            positive = bool((frame[col] > 0).all())
            rule = declared.get(col, RATIO if positive else SHIFT)
            if rule not in RULES:
                raise ValueError(f"unknown normalisation rule {rule!r} for {col}")  # internal
            if rule == RATIO and not positive:
                rule = SHIFT  # a declared ratio column that reaches zero cannot be divided by x0
            std = float(frame[col].std(ddof=0))
            usable = np.isfinite(std) and std > 0
            scales.append(std if rule in (SHIFT, STANDARD) and usable else 1.0)
            centers.append(float(frame[col].mean()) if rule == STANDARD else 0.0)
            rules.append(rule)
        return cls(list(frame.columns), rules, scales, centers)

    def to_dict(self) -> dict:
        return {"columns": self.columns, "rules": self.rules, "scales": self.scales, "centers": self.centers}


@dataclass
class Windows:
    """Normalised windows and what it takes to turn a prediction back into a price.

    The network's target is `y = (r - offset) / scale`, where r is the target price relative
    to an anchor: the window's first price (target "window", the tutorial's) or the last
    observed price (target "change", where an output of 0 is exactly persistence).
    """

    X: np.ndarray  # [N, L-1, F] float32, normalised inputs
    y: np.ndarray  # [N] float32, the network's target
    anchor: np.ndarray  # [N] price the relative target is measured from
    offset: np.ndarray  # [N] per-window shift of the relative target (0 without scaling)
    scale: np.ndarray  # [N] per-window scale of the relative target (1 without scaling)
    base: np.ndarray  # [N] target price in the window's first row
    prev: np.ndarray  # [N] last observed target price (row L-2)
    actual: np.ndarray  # [N] the target price to predict (row L-1)
    index: pd.Index  # [N] label (date) of each target row

    def __len__(self) -> int:
        return len(self.y)

    def to_price(self, y_hat: np.ndarray) -> np.ndarray:
        """Undo the scaling and the anchoring: network outputs -> prices."""
        return self.anchor * (1.0 + self.offset + self.scale * np.asarray(y_hat, dtype=np.float64))

    def take(self, idx) -> "Windows":
        """The windows at the given positions or mask."""
        return Windows(*(getattr(self, f.name)[idx] for f in fields(self)))

    @staticmethod
    def concat(parts: list["Windows"]) -> "Windows":
        """The windows of several frames (assets) one after another; labels may repeat."""
        if len(parts) == 1:
            return parts[0]
        arrays = [np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Windows) if f.name != "index"]
        return Windows(*arrays, index=parts[0].index.append([p.index for p in parts[1:]]))


def make_windows(
    frame: pd.DataFrame, target: str, length: int, norm: Normaliser,
    target_mode: str = "window", scaling: str = "none",
) -> Windows:
    """Cut every window of `length` rows from the frame (one per possible target row).

    scaling "revin": each input column is standardised over the window's own steps, and the
    target is standardised with the window's own statistics (reversible instance
    normalisation); undone on the way out, so nothing outside the window is used.
    """
    if frame.columns.tolist() != norm.columns:
        raise ValueError("frame columns differ from the normaliser's")  # internal: callers select
    values = frame.to_numpy(dtype=np.float64)  # [T, F]
    if len(values) < length:
        raise DataError(f"need at least {length} rows for one window of {length}; got {len(values)}")
    w = sliding_window_view(values, length, axis=0).transpose(0, 2, 1)  # [N, L, F]
    first = w[:, :1, :]  # [N, 1, F]
    ratio = np.array([r == RATIO for r in norm.rules])  # [F]
    if (first[:, 0, ratio] <= 0).any():
        n, f = np.argwhere(first[:, 0, ratio] <= 0)[0]
        col = np.array(norm.columns)[ratio][f]
        raise DataError(
            f"column '{col}' was positive in the training data but is {first[n, 0, ratio][f]} at "
            f"{frame.index[n]}; drop that column with --features or retrain on data that covers it"
        )
    rules = np.asarray(norm.rules)  # [F]
    scales = np.asarray(norm.scales)  # [F]
    centers = np.asarray(norm.centers if norm.centers is not None else [0.0] * len(rules))  # [F]
    with np.errstate(divide="ignore", invalid="ignore"):
        normed = np.where(
            ratio, w / np.where(ratio, first, 1.0) - 1.0,  # [N, L, F]
            np.where(rules == SHIFT, (w - first) / scales,
                     np.where(rules == STANDARD, (w - centers) / scales, w)),
        )
    X = normed[:, :-1, :]  # [N, L-1, F]
    t = norm.columns.index(target)
    base, prev, actual = w[:, 0, t], w[:, -2, t], w[:, -1, t]  # [N] each
    anchor = base if target_mode == "window" else prev
    rel = actual / anchor - 1.0  # [N]
    offset, scale = np.zeros_like(rel), np.ones_like(rel)
    if scaling == "revin":
        mean, std = X.mean(axis=1, keepdims=True), X.std(axis=1, keepdims=True) + 1e-8  # [N, 1, F]
        # floor: 1 bp of the column's level in the window, in the column's normalised units
        level = np.abs(w[:, :-1, :]).mean(axis=1, keepdims=True)  # [N, 1, F] raw units
        with np.errstate(divide="ignore"):
            per_raw = np.where(ratio, 1.0 / np.abs(first), np.where(np.isin(rules, (SHIFT, STANDARD)), 1.0 / scales, 1.0))
        std = np.maximum(std, REVIN_FLOOR * level * per_raw)  # [N, 1, F]
        if target_mode == "window":  # the target lives in the target column's units
            offset, scale = mean[:, 0, t], std[:, 0, t]
        else:  # a move: scale by the window's own step volatility, keep 0 = persistence
            price = w[:, :-1, t]  # [N, L-1]
            scale = np.maximum((price[:, 1:] / price[:, :-1] - 1.0).std(axis=1) + 1e-8, REVIN_FLOOR)
        X = (X - mean) / std
    return Windows(
        X=X.astype(np.float32),
        y=((rel - offset) / scale).astype(np.float32),
        anchor=anchor.copy(), offset=offset, scale=scale,
        base=base.copy(), prev=prev.copy(), actual=actual.copy(),
        index=frame.index[length - 1 :],
    )


def gap_free(index: pd.Index, length: int, step: pd.Timedelta | None, max_gap: float | None) -> np.ndarray:
    """[N] True for each window of `length` rows that spans no step longer than max_gap * step
    (`step`: the bar length, `data.frame.bar_length`).

    Only dated rows have gaps; with no date index, no step or max_gap None every window is kept.
    """
    n = max(len(index) - length + 1, 0)
    if max_gap is None or step is None or not isinstance(index, pd.DatetimeIndex) or n == 0:
        return np.ones(n, dtype=bool)
    utc = index.tz_convert(None) if index.tz is not None else index
    big = np.diff(utc.to_numpy()) > (max_gap * step).to_timedelta64()  # [T-1] step t -> t+1 too long
    return ~sliding_window_view(big, length - 1).any(axis=1)  # [N] window i spans steps i..i+L-2


def first_test_row(n_rows: int, window: int, test_fraction: float) -> int:
    """Row of the first test target when the last `test_fraction` of the windows are held out.

    The one statement of the split rule (`coincast run` and the backtest's default start):
    the tutorial's round((1 - test_fraction) * windows) training windows, the first of which
    ends at row window-1.
    """
    n_windows = n_rows - window + 1
    return int(round((1 - test_fraction) * n_windows)) + window - 1


def split_train_val(n: int, val_fraction: float, mode: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions of training and validation windows.

    "chronological": validation is the last part of the training span (no future leaks in).
    "random": the tutorial's split, the last 10% of the shuffled windows, as Keras'
    validation_split does after the tutorial's np.random.shuffle.
    """
    order = np.arange(n) if mode == "chronological" else rng.permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 1:
        raise DataError(f"only {n} training windows: too few to hold out validation; give more rows")
    return order[: n - n_val], order[n - n_val :]
