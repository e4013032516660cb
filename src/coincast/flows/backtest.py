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

import numpy as np
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
from coincast.data.intraday import resolve as resolve_intraday
from coincast.errors import ConfigError
from coincast.evaluation import conformal, stats
from coincast.evaluation.metrics import score, verdict
from coincast.flows.backtest_risk import CHOICE, risk_part, skip_reason, trading_forecast
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


# the strategies a risk forecast adds (trading.RISK_STRATEGIES), as the verdict names them
RISK_LABELS = {"p_up": "trading on {}'s P(up)", "model_vol_target": "the model's strategy sized to {}'s forecast volatility"}


def evaluate(result: BacktestResult, t: trading.TradingSettings, n_boot: int = 2000,
             risk: trading.RiskForecast | None = None, no_risk: str | None = None) -> tuple[dict, dict, list[str]]:
    """Scores, tests, intervals and trading for a finished walk-forward; (summary, sims, verdict).
    `risk`: the risk model's forecast of the table's days, which adds the risk strategies (or
    `no_risk`, the reason there is none, in metrics.json's trading.risk)."""
    table, models = result.table, result.models
    if risk is None and t.sizing == "forecast_vol":
        raise ConfigError(f"sizing forecast_vol needs a risk forecast, and there is none ({no_risk}): use --sizing vol")
    metrics = score(table, models)
    results, sims = trading.run_strategies(table, models, t, risk)
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
    risk_trading = risk_strategies(results, returns, risk, no_risk, n_boot, ppy)
    lines += risk_trading.get("verdict", [])
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
        "trading": {"settings": t.to_dict(), "results": results, "risk": risk_trading},
        "per_year": stats.per_year(table, models, returns).reset_index().to_dict(orient="records"),
    }
    return summary, sims, lines


def risk_strategies(results: dict, returns: dict, risk: trading.RiskForecast | None, no_risk: str | None,
                    n_boot: int, ppy: float) -> dict:
    """metrics.json's trading.risk: which risk model the risk strategies used and by what rule, the
    Sharpe-difference CI and the verdict of each against buy-and-hold; or `skipped`, the reason."""
    if risk is None:
        return {"skipped": no_risk or "no risk forecast was given"}
    cis = {name: stats.sharpe_vs_buy_and_hold(returns, name, n_boot, ppy=ppy) for name in trading.RISK_STRATEGIES}
    return {
        "skipped": None, "model": risk.name, "label": risk.label,
        "choice": CHOICE,
        "days_without_forecast": int(np.isnan(risk.quantiles).any(axis=1).sum()),  # traded flat
        "sharpe_minus_buy_and_hold": cis,
        "verdict": [trading.verdict(results, cis[n], n, RISK_LABELS[n].format(risk.label)) for n in trading.RISK_STRATEGIES],
    }


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
    intraday: str | Path | None = None,
) -> BacktestRun:
    """Walk forward over `data` (the model's folds, then the risk models over the same days), score,
    trade and write the run folder. `intraday`: the hourly candles the risk models may use, as
    --intraday gives them (None: the data's hourly companion where it has one, data/intraday.py),
    checked before any training and recorded in metrics.json's `intraday`."""
    settings = validated(copy.deepcopy(settings) if settings else Settings())
    bt = bt or BacktestSettings()
    t = trading.check(t or trading.TradingSettings())
    if settings.data.target is None:
        settings.data.target = default_target(data)
    inputs, raw = load_inputs(data, settings)
    settings.data.target = inputs.target
    pos = check(inputs.frame, settings, bt)  # every user mistake surfaces here, before anything is written
    hourly = resolve_intraday(intraday, {str(data): raw}, settings.data.timestamps)
    reason = skip_reason(raw, inputs.frame.index[pos:]) if t.sizing == "forecast_vol" else None
    if reason is not None:
        raise ConfigError(f"sizing forecast_vol sizes by the risk baselines' forecast, but {reason}: use --sizing vol")
    runs_dir = Path(runs_dir)
    staging = staging_folder(runs_dir)

    def say_plan(folds: int, processes: int) -> None:
        if processes > 1:
            log(f"{folds} folds, fresh refits in {processes} processes")

    try:
        result = walk_forward(inputs, settings, bt, extra=raw, log=log, on_fold=on_fold, on_start=on_start or say_plan)
        # the risk baselines over the same test days, from the raw candles (skipped, with the reason, where they do not apply)
        risk = risk_part(raw, result.table.index, bt.retrain_every, settings.model.risk_head, str(data), hourly.frame)
        forecast, no_risk = trading_forecast(risk, result.table.index)  # the risk model trading uses, or why none
        summary, sims, lines = evaluate(result, t, n_boot, forecast, no_risk)
        summary = {"data": str(data), "features": ",".join(inputs.frame.columns), **summary, "risk": risk.summary,
                   "intraday": hourly.record()}
        write_backtest(staging, data, result, t, summary, sims, risk.table, risk.seconds)
        folder = final_name(runs_dir, data, f"backtest-{bt.refit}")
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BacktestRun(folder, result, summary, lines)
