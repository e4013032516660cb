"""`run_evaluation()`: the walk-forward skill grid (coins x timeframes x presets) as one run folder.

The protocol of benchmarks/skill.py (`make skill`), for any coins, timeframes and presets: for
each run, the backtest `coincast backtest` runs over the last `days` days, retrained every
`retrain_every` days, one-step forecasts from data before each step; then the RMSE and MAE
ratios to persistence, the one-sided Diebold-Mariano p-value, directional accuracy, the
always-up rate, the binomial p-values and the mean shrinkage factor.

Timeframes: "1d" walks a coin's daily candles over their last `days` rows, retrained every
`retrain_every` rows; "1h" its hourly candles (the bundled `<coin>-1h`) over the same calendar
span, the hours of the last `days` UTC days (through the day of its last candle), retrained
every `retrain_every` x 24 candles. Refits: "warm" (the first fold trains in full, later folds
continue for a few epochs on the most recent rows) or "fresh" (a new model every fold).

Every run is checked (data, timeframe, preset, days) before anything is trained or written.
Runs are independent, and so are fresh folds: warm runs are one job each (a chain of folds),
fresh folds one job each, all submitted at once, so a cluster runs folds of different runs side
by side (backtest/executors.py: in this process, in local processes, or as Ray tasks).
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
from coincast.backtest.engine import BacktestResult, BacktestSettings, assemble, check, fold_result, prepare, walk_forward
from coincast.config import Settings, apply_overrides
from coincast.config import preset as get_preset
from coincast.data.datasets import DATASETS, default_target, load
from coincast.data.frame import bar_length
from coincast.errors import ConfigError, DataError
from coincast.evaluation import stats
from coincast.evaluation.metrics import score
from coincast.machine import describe
from coincast.prep.features import ALL_FEATURES
from coincast.prep.inputs import Inputs, build_inputs, validated
from coincast.report.evaluate_folder import write_evaluation
from coincast.report.run_folder import final_name, staging_folder

TA_SUFFIX = "+ta"  # "default+ta": the preset with every indicator and the Fear & Greed index as inputs
TIMEFRAMES = {"1d": pd.Timedelta(days=1), "1h": pd.Timedelta(hours=1)}  # bar length of each
HOURLY_SUFFIX = "-1h"  # a bundled coin's hourly candles: `<coin>-1h` (data/datasets.py)
REFITS = ("warm", "fresh")


@dataclass
class Job:
    coin: str
    preset: str
    settings: Settings
    raw: pd.DataFrame  # the run's candles (the coin's in its timeframe), loaded once by the caller
    bt: BacktestSettings
    timeframe: str = "1d"


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


def check_timeframes(timeframes: list[str]) -> list[str]:
    if not timeframes:
        raise ConfigError("give at least one timeframe: e.g. --timeframes 1d,1h")
    for tf in timeframes:
        if tf not in TIMEFRAMES:
            raise ConfigError(f"unknown timeframe {tf!r}: use 1d, 1h or both (e.g. --timeframes 1d,1h)")
    return list(dict.fromkeys(timeframes))


def series(coin: str, timeframe: str) -> str:
    """The data of a coin in a timeframe: the coin itself for 1d, its bundled hourly candles for 1h."""
    if timeframe == "1d":
        return coin
    if coin + HOURLY_SUFFIX not in DATASETS:
        hourly = ", ".join(n.removesuffix(HOURLY_SUFFIX) for n in DATASETS if n.endswith(HOURLY_SUFFIX))
        raise ConfigError(f"no hourly candles for {coin}: 1h runs on the bundled coins with hourly data ({hourly}); "
                          f"leave {coin} out or use --timeframes 1d")
    return coin + HOURLY_SUFFIX


def spelled(bar: pd.Timedelta) -> str:
    """A bar length as a timeframe is spelled: 1d, 1h, 4h, 15min."""
    for unit, size in (("d", pd.Timedelta(days=1)), ("h", pd.Timedelta(hours=1)), ("min", pd.Timedelta(minutes=1))):
        if bar % size == pd.Timedelta(0):
            return f"{bar // size}{unit}"
    return str(bar)


def load_series(coin: str, timeframe: str) -> pd.DataFrame:
    """The coin's candles in the timeframe, checked to be candles of that length."""
    name = series(coin, timeframe)
    raw = load(name)
    bar = bar_length(raw.index)
    if bar is not None and bar != TIMEFRAMES[timeframe]:
        raise DataError(f"{name} has {spelled(bar)} candles, not {timeframe} ones: give daily candles in "
                        "--data (the hourly ones of a bundled coin come with --timeframes 1h)")
    return raw


def first_step(frame: pd.DataFrame, days: int, timeframe: str) -> pd.Timestamp | None:
    """The first forecast target of the last `days` days (module docstring); None: fewer days than that."""
    if timeframe == "1d":
        return frame.index[-days] if days <= len(frame) else None
    first = frame.index[-1].normalize() - pd.Timedelta(days=days - 1)
    return first if first > frame.index[0] else None


def inputs_of(raw: pd.DataFrame, settings: Settings) -> Inputs:
    d = settings.data
    return build_inputs(raw, d.target, d.features, d.exog, d.exog_max_age)


def plan_jobs(coins: list[str], presets: list[str], days: int, retrain_every: int, overrides: dict | None = None,
              timeframes: list[str] = ("1d",), refit: str = "warm") -> list[Job]:
    """Every (coin, timeframe, preset) run, checked as its backtest checks itself: nothing trains before all pass."""
    if not coins or not presets:
        raise ConfigError("give at least one coin and one preset: e.g. --data btc-usd,eth-usd --presets default,tutorial")
    if not isinstance(days, int) or days < 1:
        raise ConfigError(f"days must be at least 1 (got {days}): e.g. --days 730")
    if not isinstance(retrain_every, int) or retrain_every < 1:
        raise ConfigError(f"retrain interval must be at least 1 day (got {retrain_every}): e.g. --retrain-every 7")
    if refit not in REFITS:
        raise ConfigError(f"refit must be 'warm' or 'fresh' (got {refit!r}): e.g. --refit fresh")
    timeframes = check_timeframes(list(timeframes))
    jobs = []
    for coin in coins:
        for tf in timeframes:
            raw = load_series(coin, tf)
            for name in presets:
                s = preset_settings(name, series(coin, tf), overrides)
                frame = inputs_of(raw, s).frame
                first = first_step(frame, days, tf)
                if first is None:
                    have = len(frame) if tf == "1d" else (frame.index[-1].normalize() - frame.index[0].normalize()).days + 1
                    raise ConfigError(f"{series(coin, tf)} has {have} days of inputs for preset {name}, fewer than "
                                      f"--days {days}: use --days {have - 1} or fewer")
                bt = BacktestSettings(start=str(first.date()) if tf == "1d" else str(first),
                                      retrain_every=retrain_every * (TIMEFRAMES["1d"] // TIMEFRAMES[tf]), refit=refit)
                check(frame, s, bt)  # the backtest's own checks
                jobs.append(Job(coin, name, s, raw, bt, tf))
    return jobs


def scores(job: Job, result: BacktestResult, seconds: float) -> dict:
    """A run's row: its span and its scores against persistence and always-up."""
    table = result.table
    m = score(table, result.models)["model"]
    pers = table["persistence"] - table["actual"]
    err = table["model"] - table["actual"]
    direction = stats.binomial_tests(table)
    when = "%Y-%m-%d" if job.timeframe == "1d" else "%Y-%m-%d %H:%M"
    return {
        "coin": job.coin, "timeframe": job.timeframe, "preset": job.preset,
        "days": int(table.index.normalize().nunique()), "steps": len(table), "folds": len(result.folds),
        "first": table.index[0].strftime(when), "last": table.index[-1].strftime(when),
        "rmse_ratio": m["rmse_ratio"],
        "mae_ratio": float(np.mean(np.abs(err)) / np.mean(np.abs(pers))),
        "dm_p": stats.dm_record(table)["p_one_sided"],
        "accuracy": direction["accuracy"], "always_up_rate": direction["always_up_rate"],
        "p_vs_50": direction["p_vs_50"], "p_vs_always_up": direction["p_vs_always_up"],
        "mean_shrink": float(result.folds["shrink"].mean()) if "shrink" in result.folds else None,
        "seconds": seconds,
    }


def evaluate_one(job: Job) -> dict:
    """One run's walk-forward and its scores (the row benchmarks/skill.py writes)."""
    return scored_walk(job)[0]


def scored_walk(job: Job) -> tuple[dict, pd.DataFrame]:
    """One run's walk-forward in this process: its row of scores, and its forecasts (actual,
    previous, model, persistence)."""
    t0 = time.perf_counter()
    result = walk_forward(inputs_of(job.raw, job.settings), job.settings, job.bt)
    return scores(job, result, time.perf_counter() - t0), result.table[["actual", "previous", "model", "persistence"]]


def timed_fold(inputs, settings, p) -> dict:
    """A fresh fold's results without its model (the grid keeps none), and its seconds of work."""
    t0 = time.perf_counter()
    r = fold_result(inputs, settings, p)
    del r["model"]
    return {**r, "seconds": time.perf_counter() - t0}


def warm_rows(jobs: list[Job], ex: executors.Executor):
    """(row, nodes) of each warm run, in order: one job a run, its folds one after the other."""
    for row, node in executors.run_in_order(evaluate_one, (), jobs, ex):
        yield row, [node]


def fresh_rows(jobs: list[Job], ex: executors.Executor):
    """(row, nodes) of each fresh run, in order: every fold of every run a job, all submitted at once;
    a run's row is made as soon as its last fold is back."""
    walks = [prepare(inputs_of(job.raw, job.settings), job.settings, job.bt) for job in jobs]
    done: list[list] = [[] for _ in jobs]
    groups = [((inputs, settings), plans) for settings, inputs, plans in walks]
    for g, r, node in executors.run_grouped(timed_fold, groups, ex):
        done[g].append((r, node))
        settings, inputs, plans = walks[g]
        if len(done[g]) == len(plans):
            results = [r for r, _ in done[g]]
            result = assemble(inputs, settings, jobs[g].bt, plans, results, None, 0.0)
            yield scores(jobs[g], result, sum(r["seconds"] for r in results)), [n for _, n in done[g]]


def run_evaluation(
    coins: list[str],
    presets: list[str],
    days: int = 730,
    retrain_every: int = 7,
    ex: executors.Executor | None = None,
    runs_dir: str | Path = "runs",
    overrides: dict | None = None,
    on_row=lambda row: None,
    timeframes: list[str] = ("1d",),
    refit: str = "warm",
) -> EvaluationRun:
    ex = ex or executors.Executor()
    executors.check(ex)
    jobs = plan_jobs(coins, presets, days, retrain_every, overrides, timeframes, refit)
    runs_dir = Path(runs_dir)
    staging = staging_folder(runs_dir)
    try:
        rows = []
        for row, nodes in (fresh_rows if refit == "fresh" else warm_rows)(jobs, ex):
            if ex.kind == "ray":
                row["nodes"] = nodes  # the Ray node of each of the run's jobs (fresh: of each fold, in order)
            rows.append(row)
            on_row(row)
        meta = {"coins": coins, "timeframes": check_timeframes(list(timeframes)), "presets": presets, "days": days,
                "retrain_every": retrain_every, "refit": refit, "overrides": copy.deepcopy(overrides or {}),
                "executor": ex.kind, "torch": torch.__version__, "machine": describe()}
        write_evaluation(staging, rows, meta)
        folder = final_name(runs_dir, "-".join(coins) if len(coins) <= 3 else f"{len(coins)}-coins", "evaluate")
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return EvaluationRun(folder, rows, meta)
