"""The PNG plots of a walk-forward backtest: forecasts with their conformal intervals, equity,
drawdown, the per-year RMSE ratios, and the risk baselines' fan chart (matplotlib, no screen needed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coincast.report.plots import COLORS as BASE_COLORS
from coincast.report.plots import _png, plt

COLORS = {**BASE_COLORS, "moving_average": "tab:purple", "ar": "tab:brown", "buy_and_hold": "black"}


def interval_plot(table: pd.DataFrame, title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = table.index
    for level, alpha in (("95", 0.15), ("80", 0.3)):
        lo, hi = table[f"lo{level}"].to_numpy(), table[f"hi{level}"].to_numpy()
        ok = np.isfinite(lo) & np.isfinite(hi)
        ax.fill_between(x[ok], lo[ok], hi[ok], color="tab:blue", alpha=alpha, lw=0, label=f"{level}% interval")
    ax.plot(x, table["actual"], color="black", lw=1.2, label="actual")
    ax.plot(x, table["model"], color="tab:blue", lw=0.9, label="model")
    ax.plot(x, table["persistence"], color="tab:orange", lw=0.8, alpha=0.8, label="persistence")
    ax.set_title(f"{title}: walk-forward forecasts with split-conformal intervals")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


def equity_plot(sims: dict) -> bytes:
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for name, sim in sims.items():
        color = "black" if name == "buy_and_hold" else COLORS.get(name)
        ax.plot(sim.index, sim["equity"], lw=1.6 if name in ("model", "buy_and_hold") else 0.9, color=color, label=name)
    ax.set_yscale("log")
    ax.set_title("equity after fees and slippage (start = 1)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


def drawdown_plot(sims: dict) -> bytes:
    fig, ax = plt.subplots(figsize=(10, 3.4))
    for name in ("buy_and_hold", "model"):
        sim = sims[name]
        color = "black" if name == "buy_and_hold" else "tab:blue"
        ax.fill_between(sim.index, 100 * sim["drawdown"], 0, alpha=0.3, color=color, label=name)
    ax.set_ylabel("%")
    ax.set_title("drawdown from the running peak")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return _png(fig)


def per_year_plot(years: pd.DataFrame, models: list[str]) -> bytes:
    fig, ax = plt.subplots(figsize=(8, 3.6))
    cols = [f"rmse_ratio_{m}" for m in models if f"rmse_ratio_{m}" in years.columns]
    width = 0.8 / max(len(cols), 1)
    for i, c in enumerate(cols):
        name = c.removeprefix("rmse_ratio_")
        ax.bar(np.arange(len(years)) + i * width, years[c], width, label=name, color=COLORS.get(name))
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(years)) + 0.4 - width / 2, [str(y) for y in years.index])
    ax.set_ylabel("RMSE / persistence")
    ax.set_title("per calendar year (below 1 beats persistence)")
    ax.legend(fontsize=8)
    return _png(fig)


def fan_plot(risk: pd.DataFrame, name: str, label: str, title: str) -> bytes:
    """The price with one risk baseline's 80% and 95% bands: its quantiles of each day's percent log
    return (risk.csv's `<name>_q<level>` columns) as prices, previous close * exp(q / 100); actual closes on top."""
    x = risk.index
    prev = risk["previous_close"].to_numpy(float)  # [N]
    price = lambda level: prev * np.exp(risk[f"{name}_q{level}"].to_numpy(float) / 100)  # noqa: E731  [N]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for lo, hi, pct, alpha in (("2.5", "97.5", "95", 0.15), ("10", "90", "80", 0.3)):
        ax.fill_between(x, price(lo), price(hi), color="tab:green", alpha=alpha, lw=0, step="mid",
                        label=f"{pct}% range")
    ax.step(x, price("50"), where="mid", color="tab:green", lw=0.8, label="median")
    ax.plot(x, risk["close"], color="black", lw=1.2, marker="." if len(x) <= 120 else None, label="actual close")
    ax.set_title(f"{title}: {label}'s ranges for each day, from the close before")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _png(fig)
