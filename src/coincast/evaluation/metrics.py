"""Scores of every prediction column of a forecast table, side by side.

The forecast table has one row per target date with `actual`, `previous` (last observed
price), `base` (the window's first price) and one column per model or baseline. Point
errors are in price units, plus the tutorial's MSE on window-normalised values. Direction
is "up" when a prediction exceeds the previous price, as in the tutorial.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

ALWAYS_UP = "always_up"


def point_metrics(actual: np.ndarray, pred: np.ndarray, base: np.ndarray) -> dict:
    err = pred - actual
    return {
        "mse_norm": float(np.mean((err / base) ** 2)),  # the tutorial's number
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "mape": float(100 * np.mean(np.abs(err / actual))),
    }


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def direction_metrics(up_true: np.ndarray, up_pred: np.ndarray) -> dict:
    """Confusion counts of up-moves and the scores built on them (None where undefined)."""
    t, p = np.asarray(up_true, bool), np.asarray(up_pred, bool)
    tp, fp = int(np.sum(t & p)), int(np.sum(~t & p))
    tn, fn = int(np.sum(~t & ~p)), int(np.sum(t & ~p))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "accuracy": (tp + tn) / len(t),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "mcc": (tp * tn - fp * fn) / denom if denom else 0.0,
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, h: int = 1) -> tuple[float, float]:
    """Diebold-Mariano test of equal accuracy, with the Harvey-Leybourne-Newbold correction.

    `loss_a`, `loss_b`: per-step losses (e.g. squared errors) of two forecasts of the same
    targets. Returns (statistic, one-sided p-value that A is more accurate than B), using a
    Student t with n-1 degrees of freedom as HLN recommend. Negative statistic: A is better.
    """
    d = np.asarray(loss_a, float) - np.asarray(loss_b, float)
    n = len(d)
    dbar = d.mean()
    dc = d - dbar
    lrv = np.dot(dc, dc) / n  # gamma_0
    for k in range(1, h):
        lrv += 2 * np.dot(dc[k:], dc[:-k]) / n  # gamma_k
    if lrv <= 0:
        return 0.0, 0.5 if dbar == 0 else (0.0 if dbar < 0 else 1.0)
    dm = dbar / math.sqrt(lrv / n)
    hln = math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    stat = dm * hln
    return float(stat), float(stats.t.cdf(stat, df=n - 1))


def up(price: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """[N] "Up": the price (actual or forecast) above the previous close. A flat day counts as not
    up. The one statement of direction: scores, binomial tests, bootstraps and per-year rows."""
    return np.asarray(price) > np.asarray(previous)


def dm_vs_persistence(table: pd.DataFrame, column: str = "model") -> tuple[float, float]:
    """Diebold-Mariano (HLN, squared error, h = 1) of `column` against "tomorrow = today" on a
    forecast table: (statistic, one-sided p that `column` is the more accurate). The one
    statement of the headline test: run, backtest, per-year rows and benchmarks use it."""
    actual = table["actual"].to_numpy()  # [N]
    return diebold_mariano((table[column].to_numpy() - actual) ** 2, (table["persistence"].to_numpy() - actual) ** 2)


def score(forecast: pd.DataFrame, models: list[str]) -> dict[str, dict]:
    """Metrics for each prediction column, plus "always up" for direction."""
    actual = forecast["actual"].to_numpy()
    prev = forecast["previous"].to_numpy()
    base = forecast["base"].to_numpy()
    up_true = up(actual, prev)
    out: dict[str, dict] = {}
    for name in models:
        pred = forecast[name].to_numpy()
        m = point_metrics(actual, pred, base)
        m.update(direction_metrics(up_true, up(pred, prev)))
        if name != "persistence":
            m["dm_stat_vs_persistence"], m["dm_p_vs_persistence"] = dm_vs_persistence(forecast, name)
        out[name] = m
    pers_rmse = out["persistence"]["rmse"]
    for m in out.values():
        m["rmse_ratio"] = m["rmse"] / pers_rmse if pers_rmse else None
    out[ALWAYS_UP] = direction_metrics(up_true, np.ones_like(up_true))
    return out


def outcome(ratio: float, p_better: float, alpha: float = 0.05) -> tuple[str, float]:
    """What an RMSE ratio and its one-sided Diebold-Mariano p (`p_better`: that the forecast is
    the more accurate) support, and the p that says so: ("better", p) significantly lower RMSE,
    ("lower", p) lower but not significantly, ("worse", 1 - p) significantly higher, ("higher",
    1 - p) higher but not significantly (1 - p: the one-sided p the other way, a t distribution)."""
    if ratio < 1:
        return ("better" if p_better < alpha else "lower"), p_better
    p_worse = 1.0 - p_better
    return ("worse" if p_worse < alpha else "higher"), p_worse


def verdict(metrics: dict, model: str = "model", alpha: float = 0.05) -> str:
    """One plain sentence: did the model beat "tomorrow = today"? "Significantly" only where the
    one-sided Diebold-Mariano test in that direction says so at level `alpha`."""
    ratio = metrics[model]["rmse_ratio"]
    kind, p = outcome(ratio, metrics[model]["dm_p_vs_persistence"], alpha)
    lost = f"The model did NOT beat persistence (\"tomorrow = today\"): its RMSE is {ratio:.3f}x persistence's, "
    return {
        "better": f"The model beat persistence (\"tomorrow = today\") significantly: RMSE {ratio:.3f}x persistence's "
                  f"(Diebold-Mariano one-sided p = {p:.3g}).",
        "lower": f"The model's RMSE is {ratio:.3f}x persistence's (\"tomorrow = today\"), lower but not significantly "
                 f"(Diebold-Mariano one-sided p = {p:.3g}): no evidence it beats persistence.",
        "worse": lost + f"significantly worse (Diebold-Mariano one-sided p = {p:.3g} for persistence being better).",
        "higher": lost + f"a difference that is not significant (Diebold-Mariano one-sided p = {p:.3g} for persistence "
                  "being better).",
    }[kind]
