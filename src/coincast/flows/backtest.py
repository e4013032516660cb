"""`run_backtest()`: data to walk-forward backtest to run folder, with a plain verdict.

Everything the user can get wrong is checked before any training, and the run folder is
built under a temporary name and renamed at the end (as `flows.run` does), so a failed
backtest leaves nothing behind (coincast.report.backtest_folder writes its files).
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from coincast.backtest import trading
from coincast.backtest.engine import (
    BacktestResult,
    BacktestSettings,
    check,
    walk_forward,
)
from coincast.config import Settings
from coincast.data.datasets import default_target, load
from coincast.evaluation import conformal, stats
from coincast.evaluation.metrics import score, verdict
from coincast.flows.backtest_risk import risk_part
from coincast.prep.inputs import Inputs, build_inputs, validated
from coincast.report.backtest_folder import write_backtest
from coincast.report.run_folder import final_name, staging_folder


@dataclass
class BacktestRun:
    folder: Path
    result: BacktestResult
    summary: dict  # everything in metrics.json
    verdict: list[str]


def load_inputs(data, settings: Settings) -> tuple[Inputs, pd.DataFrame]:
    """(model inputs, raw frame): the inputs `settings.data` asks for, as `coincast run` builds them.

    Indicators are computed once on the full history and exogenous series joined causally,
    so every fold sees the values it would have seen live; folds take rows of these Inputs.
    """
    raw = load(data, timestamps=settings.data.timestamps)
    d = settings.data
    return build_inputs(raw, d.target, d.features, d.exog, d.exog_max_age), raw


def load_frame(data, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(model frame, raw frame, target): `load_inputs` as plain frames."""
    built, raw = load_inputs(data, settings)
    return built.frame, raw, built.target


def evaluate(result: BacktestResult, t: trading.TradingSettings, n_boot: int = 2000) -> tuple[dict, dict, list[str]]:
    """Scores, tests, intervals and trading for a finished walk-forward; (summary, sims, verdict)."""
    table, models = result.table, result.models
    metrics = score(table, models)
    results, sims = trading.run_strategies(table, models, t)
    returns = {k: v["net"].to_numpy() for k, v in sims.items()}
    ppy = trading.periods_per_year(table.index)
    cis = stats.headline_cis(table, returns=returns, n_boot=n_boot, ppy=ppy)
    r = cis["rmse_ratio"]
    lines = [
        verdict(metrics),
        f"RMSE ratio to persistence {r['estimate']:.3f}, 95% block-bootstrap CI "
        + (f"[{r['lo']:.3f}, {r['hi']:.3f}]." if r["lo"] is not None else "undefined."),
        stats.direction_verdict(stats.binomial_tests(table)),
        trading.verdict(results, cis["sharpe_minus_buy_and_hold"]),
    ]
    summary = {
        "verdict": lines,
        "test": {"first": str(table.index[0]), "last": str(table.index[-1]), "days": len(table),
                 "folds": len(result.folds), "days_skipped_gap": result.gaps.get("days_skipped", 0)},
        "gaps": result.gaps,
        "refit_rule": result.backtest.describe(),
        "metrics": metrics,
        "diebold_mariano": stats.dm_record(table),
        "direction": {m: stats.binomial_tests(table, m) for m in models},
        "bootstrap": cis,
        "intervals": conformal.coverage(table, result.backtest.levels),
        "trading": {"settings": t.to_dict(), "results": results},
        "per_year": stats.per_year(table, models, returns).reset_index().to_dict(orient="records"),
    }
    return summary, sims, lines


def run_backtest(
    data: str | Path = "btc-usd",
    settings: Settings | None = None,
    bt: BacktestSettings | None = None,
    t: trading.TradingSettings | None = None,
    runs_dir: str | Path = "runs",
    log: Callable[[str], None] = lambda _: None,
    on_fold: Callable[[dict], None] = lambda _: None,
    n_boot: int = 2000,
    on_start: Callable[[int, int], None] | None = None,  # (folds, processes), once the plan is known
) -> BacktestRun:
    settings = validated(copy.deepcopy(settings) if settings else Settings())
    bt = bt or BacktestSettings()
    t = trading.check(t or trading.TradingSettings())
    if settings.data.target is None:
        settings.data.target = default_target(data)
    inputs, raw = load_inputs(data, settings)
    settings.data.target = inputs.target
    check(inputs.frame, settings, bt)  # every user mistake surfaces here, before anything is written
    runs_dir = Path(runs_dir)
    staging = staging_folder(runs_dir)

    def say_plan(folds: int, processes: int) -> None:
        if processes > 1:
            log(f"{folds} folds, fresh refits in {processes} processes")

    try:
        result = walk_forward(inputs, settings, bt, extra=raw, log=log, on_fold=on_fold, on_start=on_start or say_plan)
        summary, sims, lines = evaluate(result, t, n_boot)
        # the risk baselines over the same test days, from the raw candles (skipped, with the reason, where they do not apply)
        risk = risk_part(raw, result.table.index, bt.retrain_every)
        summary = {"data": str(data), "features": ",".join(inputs.frame.columns), **summary, "risk": risk.summary}
        write_backtest(staging, data, result, t, summary, sims, risk.table, risk.seconds)
        folder = final_name(runs_dir, data, f"backtest-{bt.refit}")
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BacktestRun(folder, result, summary, lines)
