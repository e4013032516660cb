"""Command-line commands `backtest`, `evaluate` and `audit` (walk-forward backtest, the skill grid
over coins, timeframes and presets, look-ahead audit).

Registered in cli/main.py, after `app` is defined (this module does not import main.py, so
there is no import cycle).

User mistakes raise CoincastError, which `cli.main()` prints on one line with exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from coincast.cli import options as opt
from coincast.config import Settings

out = Console()



def _trading(threshold: str, fee_bps: float, slippage_bps: float, long_short: bool, sizing: str, fraction: float,
             vol_target: float, max_leverage: float, stop_loss: Optional[float], take_profit: Optional[float],
             p_margin: float):
    from coincast.backtest.trading import TradingSettings, check, parse_number

    return check(TradingSettings(
        mode="long_short" if long_short else "long_flat",
        threshold_pct=parse_number(threshold, "threshold", "--threshold"),
        fee_bps=fee_bps, slippage_bps=slippage_bps, sizing=sizing, fraction=fraction,
        vol_target=vol_target, max_leverage=max_leverage, stop_loss_pct=stop_loss, take_profit_pct=take_profit,
        p_margin=p_margin,
    ))


def backtest(
    data: str = typer.Option("btc-usd", help="Bundled dataset name or a CSV/Parquet path."),
    start: Optional[str] = typer.Option(None, help="First forecast day (YYYY-MM-DD); default: the last 10% of windows."),
    retrain_every: int = typer.Option(7, help="Retrain the model every N steps (weekly on daily data)."),
    window: str = typer.Option("expanding", help="Training span: expanding (all rows so far) or rolling (last --train-size rows)."),
    train_size: Optional[int] = typer.Option(None, help="Rows per training span (rolling); default: all rows before --start."),
    refit: str = typer.Option("fresh", help="fresh: new model each fold; warm: continue from the previous fold's weights."),
    warm_epochs: int = typer.Option(5, help="Epochs of each warm refit after the first full fit."),
    warm_span: int = typer.Option(400, help="Warm refits train on the last N rows of their span (0: all of it)."),
    jobs: Optional[int] = typer.Option(None, help="Parallel processes for fresh refits (default: one per usable core)."),
    shrink_from: str = typer.Option("record", help="Shrinkage towards persistence fitted on the earlier folds' "
                                    "out-of-sample forecasts (record) or on each fold's validation windows."),
    executor: opt.ExecutorKind = "local",
    ray_address: opt.RayAddress = None,
    threads_per_task: opt.ThreadsPerTask = 1,
    preset: opt.Preset = "default",
    config: opt.Config = None,
    features: opt.Features = None,
    exog: opt.Exog = None,
    target: opt.Target = None,
    timestamps: opt.Timestamps = None,
    window_size: Optional[int] = typer.Option(None, help="Rows per model window (inputs + 1 target)."),
    epochs: opt.Epochs = None,
    hidden: opt.Hidden = None,
    cell: opt.Cell = None,
    risk_head: opt.RiskHead = None,
    precision: opt.Precision = None,
    model_target: opt.ModelTarget = None,
    seed: opt.Seed = None,
    intraday: opt.Intraday = None,
    threshold: str = typer.Option("0", help="Trade only when the predicted move exceeds this many percent."),
    fee_bps: float = typer.Option(10.0, help="Fees per position change, basis points of the traded notional."),
    slippage_bps: float = typer.Option(5.0, help="Slippage per position change, basis points."),
    long_short: bool = typer.Option(False, "--long-short/--long-flat", help="Allow short positions (default: long or flat)."),
    sizing: str = typer.Option("fixed", help="fixed (a fraction of equity), vol (volatility target with the realised "
                               "20-day volatility) or forecast_vol (with the risk forecast's volatility; daily candles)."),
    fraction: float = typer.Option(1.0, help="Fixed sizing: share of equity in the position."),
    vol_target: float = typer.Option(0.5, help="Vol sizing: annualised volatility target (0.5 = 50%)."),
    max_leverage: float = typer.Option(1.0, help="Vol sizing: largest position size."),
    p_margin: float = typer.Option(0.0, help="The P(up) strategy: long when the risk forecast's P(up) is above "
                                   "0.5 + this, short (--long-short) below 0.5 - this, else flat."),
    stop_loss: Optional[float] = typer.Option(None, help="Stop-loss in percent, on the next candle's low/high."),
    take_profit: Optional[float] = typer.Option(None, help="Take-profit in percent, on the next candle's high/low."),
    bootstrap: int = typer.Option(2000, help="Block-bootstrap resamples."),
    out_dir: opt.OutDir = Path("runs"),
    quiet: opt.Quiet = False,
):
    """Walk-forward backtest: retrain on a schedule, forecast every day, test, trade, report."""
    from coincast.backtest.engine import BacktestSettings
    from coincast.cli import fold_progress
    from coincast.flows.backtest import run_backtest
    from coincast.report.terminal import terminal_table

    t = _trading(threshold, fee_bps, slippage_bps, long_short, sizing, fraction, vol_target, max_leverage, stop_loss,
                 take_profit, p_margin)
    s = opt.settings(
        preset, config, data__target=target, data__features=opt.csv(features), data__exog=opt.csv(exog),
        data__window=window_size, data__timestamps=timestamps, train__epochs=epochs, train__seed=seed,
        model__hidden=opt.hidden(hidden), model__cell=cell, model__risk_head=risk_head, train__precision=precision, model__target=model_target,
    )
    bt = BacktestSettings(start=start, retrain_every=retrain_every, window=window, train_size=train_size,
                          refit=refit, warm_epochs=warm_epochs, warm_span=warm_span or None, shrink_from=shrink_from,
                          jobs=fold_progress.default_jobs(refit) if jobs is None else jobs,
                          executor=executor, ray_address=ray_address, threads_per_task=threads_per_task)
    bar, task = fold_progress.bar(quiet)

    def on_start(n_folds: int, processes: int) -> None:
        bar.update(task, total=n_folds)
        out.print(fold_progress.start_line(n_folds, processes, refit, jobs is not None, executor, ray_address))

    with bar:
        run = run_backtest(data, s, bt, t, runs_dir=out_dir, log=out.print, on_start=on_start,
                           on_fold=lambda info: fold_progress.advance(bar, task), n_boot=bootstrap, intraday=intraday)
    summ = run.summary
    out.print(terminal_table(summ["metrics"], f"{data}: walk-forward, {summ['test']['days']} days, {summ['test']['folds']} folds"))
    table = Table(title="trading after costs", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("strategy", "total %", "CAGR %", "Sharpe", "max DD %", "trades"):
        table.add_column(col, justify="right" if col != "strategy" else "left")
    for name, m in summ["trading"]["results"].items():
        table.add_row(name, f"{100 * m['total_return']:+.1f}", f"{100 * m['cagr']:+.1f}", f"{m['sharpe']:.2f}",
                      f"{100 * m['max_drawdown']:.1f}", str(m["n_trades"]))
    out.print(table)
    cov = ", ".join(f"{k} interval covered {100 * v['coverage']:.1f}%" for k, v in summ["intervals"].items())
    out.print(f"refit: {summ['refit_rule']}")
    out.print(cov)
    for line in run.verdict:
        out.print(line)
    risk = summ["risk"]  # the risk baselines' verdict, or why they were skipped
    out.print(risk["verdict"] if risk["skipped"] is None else f"risk baselines skipped: {risk['skipped']}", soft_wrap=True)
    out.print(f"run folder: {run.folder}")


SKILL_COINS = "btc-usd,eth-usd,ltc-usd,xrp-usd,ada-usd,bnb-usd"  # the bundled daily coins, as `make skill`


def evaluate(
    data: str = typer.Option(SKILL_COINS, help="Coins, comma-separated: bundled names or CSV/Parquet paths."),
    presets: str = typer.Option("default,tutorial,default+ta", help="Presets, comma-separated; NAME+ta adds every "
                                "indicator and the Fear & Greed index as inputs."),
    timeframes: str = typer.Option("1d", help="Timeframes, comma-separated: 1d (each coin's daily candles), 1h (its "
                                   "bundled hourly candles, <coin>-1h)."),
    days: int = typer.Option(730, help="Walk forward over the last N days of each coin: its last N daily candles; on "
                             "1h the hours of its last N calendar days (UTC)."),
    retrain_every: int = typer.Option(7, help="Retrain every N days: every N daily candles, every 24 x N hourly ones."),
    refit: str = typer.Option("warm", help="warm: the first fold trains in full, later folds continue from the "
                              "previous fold's weights (one job a run); fresh: a new model every fold (each fold a job)."),
    window_size: Optional[int] = typer.Option(None, help="Rows per model window (every preset; default: each preset's)."),
    epochs: opt.Epochs = None,
    hidden: opt.Hidden = None,
    executor: opt.ExecutorKind = "local",
    ray_address: opt.RayAddress = None,
    threads_per_task: opt.ThreadsPerTask = 1,
    jobs: int = typer.Option(1, help="Jobs at once (warm: runs; fresh: folds): local processes, or the CPUs of the "
                             "run's own Ray instance."),
    out_dir: opt.OutDir = Path("runs"),
):
    """Walk-forward skill of presets on coins and timeframes (the grid `make skill` runs): one report, JSON and CSV."""
    from coincast.backtest.executors import Executor
    from coincast.flows.evaluate import run_evaluation

    def say(r: dict) -> None:
        out.print(f"{r['coin']} {r['timeframe']} {r['preset']}: RMSE/pers {r['rmse_ratio']:.3f}, DM p {r['dm_p']:.3g}, "
                  f"acc {r['accuracy']:.3f} (always-up {r['always_up_rate']:.3f}), {r['seconds']:.0f} s", soft_wrap=True)

    run = run_evaluation(opt.csv(data) or [], opt.csv(presets) or [], days, retrain_every,
                         Executor(executor, jobs, ray_address, threads_per_task), out_dir,
                         opt.overrides(window_size, epochs, hidden), on_row=say, timeframes=opt.csv(timeframes) or [],
                         refit=refit)
    out.print(f"run folder: {run.folder}")


def audit(
    data: str = typer.Option("btc-usd", help="Bundled dataset name or a CSV/Parquet path."),
    features: Optional[str] = typer.Option(None, help="Feature spec to audit (default: close, volume and every indicator at its default periods)."),
    exog: str = typer.Option("fear-greed", help="Exogenous series to audit, comma-separated ('none': no series)."),
    cutoff: Optional[str] = typer.Option(None, help="First perturbed day (default: inside the second fold)."),
    start: Optional[str] = typer.Option(None, help="First forecast day of the audited backtest."),
    retrain_every: int = typer.Option(7, help="Retrain interval of the audited backtest."),
    refit: str = typer.Option("fresh", help="fresh or warm."),
    window_size: int = typer.Option(20, help="Rows per model window."),
    epochs: int = typer.Option(2, help="Epochs per fit (the audit tests causality, not accuracy)."),
    hidden: str = typer.Option("8", help="Units per layer."),
    seed: int = typer.Option(0, help="Seed of the perturbation and the model."),
    intraday: opt.Intraday = None,
):
    """Look-ahead audit: perturb the data after a cut-off; no input, forecast, interval, position or
    risk quantile made before it may change."""
    from coincast.backtest.audit import audit_backtest, audit_features, audit_risk, inputs_transform
    from coincast.backtest.engine import BacktestSettings
    from coincast.backtest.trading import TradingSettings
    from coincast.data import load
    from coincast.data.datasets import default_target
    from coincast.data.intraday import resolve
    from coincast.prep.features import ALL_FEATURES, parse_spec

    s = Settings()  # the default model (shrinkage on), small: the audit tests causality, not accuracy
    s.data.window, s.train.epochs, s.model.hidden, s.train.seed = window_size, epochs, opt.hidden(hidden), seed
    s.data.target = default_target(data) or "close"
    s.data.features = parse_spec(features or ALL_FEATURES)
    s.data.exog = None if exog.strip().lower() in ("", "none") else opt.csv(exog)
    raw = load(data)
    hourly = resolve(intraday, {data: raw})  # checked before any training
    bt = BacktestSettings(start=start, retrain_every=retrain_every, refit=refit)
    model = audit_backtest(raw, s, bt, TradingSettings(sizing="vol"), cutoff=cutoff, seed=seed)
    feats = audit_features(raw, inputs_transform(s), cutoff if cutoff is not None else model.cutoff, seed)
    # soft_wrap: one line each, however long the column list (a verdict is never split)
    out.print(f"inputs ({', '.join(c.removeprefix('feature ') for c in feats.compared)}): {feats.summary()}", soft_wrap=True)
    out.print(f"forecasts, intervals and positions of {', '.join(c for c in model.compared if ' ' not in c and c[:2] not in ('lo', 'hi'))}: {model.summary()}", soft_wrap=True)
    risk = audit_risk(raw, model.cutoff, start, retrain_every, seed, data, hourly.frame)
    if isinstance(risk, str):
        out.print(f"risk quantiles: not audited: {risk}", soft_wrap=True)
    else:
        out.print(f"risk quantiles of {', '.join(c.removeprefix('risk ') for c in risk.compared)}: {risk.summary()}", soft_wrap=True)
    if not (model.passed and feats.passed and (isinstance(risk, str) or risk.passed)):
        raise typer.Exit(1)
