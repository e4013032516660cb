"""`run_evaluation()`: the walk-forward skill grid (coins x presets) as one run folder.

The protocol of benchmarks/skill.py (`make skill`), for any coins and presets: for each pair,
the backtest `coincast backtest` runs over the last `days` days, retrained every
`retrain_every` days with warm refits (the first fold trains in full, later folds continue for
a few epochs on the most recent rows), one-step forecasts from data before each day; then the
RMSE and MAE ratios to persistence, the one-sided Diebold-Mariano p-value, directional accuracy,
the always-up rate, the binomial p-values and the mean shrinkage factor.

Every pair is checked (data, preset, days) before anything is trained or written. The pairs
are independent: they run in order in this process, in local processes, or as Ray tasks
(backtest/executors.py); each task gets its coin's candles, loaded once here.
"""

from __future__ import annotations

import copy
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from coincast.backtest import executors
from coincast.backtest.engine import BacktestSettings, check, walk_forward
from coincast.config import Settings, apply_overrides
from coincast.config import preset as get_preset
from coincast.data.datasets import default_target, load
from coincast.errors import ConfigError
from coincast.evaluation import stats
from coincast.evaluation.metrics import score
from coincast.machine import describe
from coincast.prep.features import ALL_FEATURES
from coincast.prep.inputs import build_inputs, validated
from coincast.report.evaluate_folder import write_evaluation
from coincast.report.run_folder import final_name, staging_folder

TA_SUFFIX = "+ta"  # "default+ta": the preset with every indicator and the Fear & Greed index as inputs


@dataclass
class Job:
    coin: str
    preset: str
    settings: Settings
    raw: pd.DataFrame  # the coin's candles, loaded once by the caller
    bt: BacktestSettings


@dataclass
class EvaluationRun:
    folder: Path
    rows: list[dict]
    meta: dict


def preset_settings(name: str, coin: str, overrides: dict | None = None) -> Settings:
    """A preset's settings for a coin: `default+ta` adds every indicator and the Fear & Greed
    index (as `coincast run --features ... --exog fear-greed` builds them); `overrides`
    ({"train": {"epochs": 1}, ...}) are set on top, as the command's flags are."""
    s = get_preset(name.removesuffix(TA_SUFFIX))
    s.data.target = default_target(coin)
    if name.endswith(TA_SUFFIX):
        s.data.features, s.data.exog = ALL_FEATURES.split(","), ["fear-greed"]
    return validated(apply_overrides(s, copy.deepcopy(overrides or {})))


def plan_jobs(coins: list[str], presets: list[str], days: int, retrain_every: int, overrides: dict | None = None) -> list[Job]:
    """Every (coin, preset) pair, checked as its backtest checks itself: nothing trains before all pass."""
    if not coins or not presets:
        raise ConfigError("give at least one coin and one preset: e.g. --data btc-usd,eth-usd --presets default,tutorial")
    if not isinstance(days, int) or days < 1:
        raise ConfigError(f"days must be at least 1 (got {days}): e.g. --days 730")
    jobs = []
    for coin in coins:
        raw = load(coin)
        for name in presets:
            s = preset_settings(name, coin, overrides)
            d = s.data
            frame = build_inputs(raw, d.target, d.features, d.exog, d.exog_max_age).frame
            if days > len(frame):
                raise ConfigError(f"{coin} has {len(frame)} days of inputs for preset {name}, fewer than --days {days}: "
                                  f"use --days {len(frame) - 1} or fewer")
            bt = BacktestSettings(start=str(frame.index[-days].date()), retrain_every=retrain_every, refit="warm")
            check(frame, s, bt)
            jobs.append(Job(coin, name, s, raw, bt))
    return jobs


def evaluate_one(job: Job) -> dict:
    """One pair's walk-forward and its scores (the row benchmarks/skill.py writes)."""
    return scored_walk(job)[0]


def scored_walk(job: Job) -> tuple[dict, pd.DataFrame]:
    """One pair's walk-forward: its row of scores, and its forecasts (actual, previous, model, persistence)."""
    d = job.settings.data
    inputs = build_inputs(job.raw, d.target, d.features, d.exog, d.exog_max_age)
    t0 = time.perf_counter()
    result = walk_forward(inputs, job.settings, job.bt)
    table = result.table
    m = score(table, result.models)["model"]
    pers = table["persistence"] - table["actual"]
    err = table["model"] - table["actual"]
    direction = stats.binomial_tests(table)
    return {
        "coin": job.coin, "preset": job.preset, "days": len(table), "folds": len(result.folds),
        "first": str(table.index[0].date()), "last": str(table.index[-1].date()),
        "rmse_ratio": m["rmse_ratio"],
        "mae_ratio": float(np.mean(np.abs(err)) / np.mean(np.abs(pers))),
        "dm_p": stats.dm_record(table)["p_one_sided"],
        "accuracy": direction["accuracy"], "always_up_rate": direction["always_up_rate"],
        "p_vs_50": direction["p_vs_50"], "p_vs_always_up": direction["p_vs_always_up"],
        "mean_shrink": float(result.folds["shrink"].mean()) if "shrink" in result.folds else None,
        "seconds": time.perf_counter() - t0,
    }, table[["actual", "previous", "model", "persistence"]]


def run_evaluation(
    coins: list[str],
    presets: list[str],
    days: int = 730,
    retrain_every: int = 7,
    ex: executors.Executor | None = None,
    runs_dir: str | Path = "runs",
    overrides: dict | None = None,
    on_row=lambda row: None,
) -> EvaluationRun:
    ex = ex or executors.Executor()
    executors.check(ex)
    jobs = plan_jobs(coins, presets, days, retrain_every, overrides)
    runs_dir = Path(runs_dir)
    staging = staging_folder(runs_dir)
    try:
        rows = []
        for row, node in executors.run_in_order(evaluate_one, (), jobs, ex):
            if node is not None:
                row["node"] = node
            rows.append(row)
            on_row(row)
        meta = {"coins": coins, "presets": presets, "days": days, "retrain_every": retrain_every,
                "refit": "warm", "overrides": copy.deepcopy(overrides or {}), "executor": ex.kind,
                "torch": torch.__version__, "machine": describe()}
        write_evaluation(staging, rows, meta)
        folder = final_name(runs_dir, "-".join(coins) if len(coins) <= 3 else f"{len(coins)}-coins", "evaluate")
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return EvaluationRun(folder, rows, meta)
