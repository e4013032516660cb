"""Significance and uncertainty for a forecast table: binomial tests, block bootstrap, per year.

Daily forecast errors are autocorrelated and heavy-tailed, so confidence intervals come from
a moving-block bootstrap (whole runs of consecutive days are resampled together), and the
model-vs-persistence test is Diebold-Mariano with the HLN correction (`metrics.diebold_mariano`).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

from coincast.evaluation.metrics import dm_vs_persistence, up


def binomial_tests(table: pd.DataFrame, column: str = "model") -> dict:
    """Directional accuracy and one-sided binomial p-values against 50% and the always-up rate.

    The always-up rate is measured on the same days (it is what "always say up" scores), so
    beating it is the fair bar in a rising market.
    """
    up_true = up(table["actual"].to_numpy(), table["previous"].to_numpy())
    up_pred = up(table[column].to_numpy(), table["previous"].to_numpy())
    n, k = len(up_true), int((up_true == up_pred).sum())
    up_rate = float(up_true.mean())
    return {
        "n": n,
        "correct": k,
        "accuracy": k / n,
        "p_vs_50": float(stats.binomtest(k, n, 0.5, alternative="greater").pvalue),
        "always_up_rate": up_rate,
        "p_vs_always_up": float(stats.binomtest(k, n, up_rate, alternative="greater").pvalue) if 0 < up_rate < 1 else None,
    }


def direction_verdict(tests: dict, alpha: float = 0.05, model: str = "The model") -> str:
    """One plain sentence from `binomial_tests`: did the model call the direction better than
    saying "up" every day and than a coin? "Significantly" only where both one-sided binomial
    tests reject at level `alpha`."""
    acc, up, n = tests["accuracy"], tests["always_up_rate"], tests["n"]
    p50, p_up = tests["p_vs_50"], tests["p_vs_always_up"]
    if p_up is None:  # every day moved the same way: always-up is right on all of them or none
        p_up = 0.0 if acc > up else 1.0
    facts = f"{100 * acc:.1f}% of {n:,} moves right vs always-up's {100 * up:.1f}% and a coin's 50%"
    ps = f"binomial one-sided p = {p_up:.3g} vs always-up, {p50:.3g} vs 50%"
    if acc > max(up, 0.5) and p_up < alpha and p50 < alpha:
        return f"{model} called the direction significantly better than always-up and a coin: {facts} ({ps})."
    if acc > max(up, 0.5):
        return (f"{model} called the direction better than always-up and a coin, but not significantly: "
                f"{facts} ({ps}).")
    return f"{model} did NOT call the direction better than always-up and a coin: {facts} ({ps})."


def default_block(n: int) -> int:
    """Block length n^(1/3), the usual rate for the moving-block bootstrap of a mean."""
    return max(1, int(math.ceil(n ** (1 / 3))))


def block_indices(n: int, block: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n] resampled positions: ceil(n/block) blocks with uniform starts in 0..n-block."""
    k = math.ceil(n / block)
    starts = rng.integers(0, n - block + 1, size=(n_boot, k))  # [B, k]
    idx = starts[:, :, None] + np.arange(block)  # [B, k, block]
    return idx.reshape(n_boot, k * block)[:, :n]


def block_bootstrap(
    arrays: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray],
    n_boot: int = 2000,
    block: int | None = None,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """Percentile CI of `statistic` under the moving-block bootstrap of paired daily arrays.

    `statistic(*arrays)` must work on [B, n] inputs row-wise and return [B] (and on [1, n]
    for the point estimate). Resamples whose statistic is not finite (a Sharpe ratio of a
    flat resample) are left out of the interval; `dropped` says how many.
    """
    arrays = tuple(np.asarray(a, dtype=np.float64) for a in arrays)
    n = len(arrays[0])
    block = block or default_block(n)
    idx = block_indices(n, min(block, n), n_boot, np.random.default_rng(seed))
    with np.errstate(divide="ignore", invalid="ignore"):  # e.g. a Sharpe ratio of a flat resample
        boot = np.asarray(statistic(*(a[idx] for a in arrays)), dtype=np.float64)  # [B]
        est = float(np.asarray(statistic(*(a[None, :] for a in arrays)))[0])
    ok = boot[np.isfinite(boot)]
    dropped = int(len(boot) - len(ok))
    if len(ok) < 2:
        return {"estimate": est, "lo": None, "hi": None, "level": 1 - alpha, "block": int(block),
                "n_boot": int(n_boot), "dropped": dropped, "se": None}
    lo, hi = np.quantile(ok, [alpha / 2, 1 - alpha / 2])
    return {"estimate": est, "lo": float(lo), "hi": float(hi), "level": 1 - alpha,
            "block": int(block), "n_boot": int(n_boot), "dropped": dropped, "se": float(np.std(ok, ddof=1))}


def _rmse_ratio(e, ep):
    return np.sqrt((e**2).mean(axis=1) / (ep**2).mean(axis=1))


def _mae_ratio(e, ep):
    return np.abs(e).mean(axis=1) / np.abs(ep).mean(axis=1)


def _mean(x):
    return x.mean(axis=1)


def _sharpe_diff(a, b, ppy=365.0):
    return (a.mean(axis=1) / a.std(axis=1, ddof=1) - b.mean(axis=1) / b.std(axis=1, ddof=1)) * math.sqrt(ppy)


def headline_cis(table: pd.DataFrame, column: str = "model", returns: dict | None = None,
                 n_boot: int = 2000, seed: int = 0, ppy: float = 365.0) -> dict:
    """Block-bootstrap 95% CIs of the RMSE and MAE ratios to persistence, the directional
    accuracy and, given daily net returns, the strategy's Sharpe minus buy-and-hold's."""
    actual, prev = table["actual"].to_numpy(), table["previous"].to_numpy()
    e, ep = table[column].to_numpy() - actual, table["persistence"].to_numpy() - actual
    hit = (up(table[column].to_numpy(), prev) == up(actual, prev)).astype(float)
    out = {
        "rmse_ratio": block_bootstrap((e, ep), _rmse_ratio, n_boot, seed=seed),
        "mae_ratio": block_bootstrap((e, ep), _mae_ratio, n_boot, seed=seed),
        "direction_accuracy": block_bootstrap((hit,), _mean, n_boot, seed=seed),
    }
    if returns is not None:
        out["sharpe_minus_buy_and_hold"] = sharpe_vs_buy_and_hold(returns, column, n_boot, seed, ppy)
    return out


def sharpe_vs_buy_and_hold(returns: dict, name: str, n_boot: int = 2000, seed: int = 0, ppy: float = 365.0) -> dict:
    """Block-bootstrap 95% CI of strategy `name`'s annualised Sharpe ratio minus buy-and-hold's,
    from their daily net returns (`returns[name]`, `returns["buy_and_hold"]`, each [N])."""
    return block_bootstrap((returns[name], returns["buy_and_hold"]), lambda a, b: _sharpe_diff(a, b, ppy), n_boot, seed=seed)


def per_year(table: pd.DataFrame, models: list[str], returns: dict | None = None, column: str = "model") -> pd.DataFrame:
    """One row per calendar year: days, RMSE ratios, DM p, directional accuracy, up rate,
    and (given daily net returns) the strategy's and buy-and-hold's return that year."""
    rows = []
    years = table.index.year if isinstance(table.index, pd.DatetimeIndex) else np.zeros(len(table), int)
    for year, part in table.groupby(years):
        actual, prev = part["actual"].to_numpy(), part["previous"].to_numpy()
        ep2 = (part["persistence"].to_numpy() - actual) ** 2
        row = {"year": int(year), "days": len(part)}
        for m in models:
            if m != "persistence":
                row[f"rmse_ratio_{m}"] = float(np.sqrt(((part[m].to_numpy() - actual) ** 2).mean() / ep2.mean()))
        row["dm_p"] = dm_vs_persistence(part, column)[1] if len(part) > 2 else None
        row["accuracy"] = float((up(part[column].to_numpy(), prev) == up(actual, prev)).mean())
        row["up_rate"] = float(up(actual, prev).mean())
        if returns is not None:
            for name in (column, "buy_and_hold"):
                r = returns[name][np.asarray(years) == year]
                row[f"return_{name}"] = float(np.prod(1 + r) - 1)
        rows.append(row)
    return pd.DataFrame(rows).set_index("year")


def dm_record(table: pd.DataFrame, column: str = "model") -> dict:
    """`metrics.dm_vs_persistence` as metrics.json records it, with what the test is."""
    stat, p = dm_vs_persistence(table, column)
    return {"stat": stat, "p_one_sided": p, "loss": "squared error", "correction": "Harvey-Leybourne-Newbold", "h": 1}
