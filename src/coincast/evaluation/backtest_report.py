"""`run_backtest()`: data to walk-forward backtest to run folder, with a plain verdict.

Everything the user can get wrong is checked before any training, and the run folder is
built under a temporary name and renamed at the end (as `pipeline.run` does), so a failed
backtest leaves nothing behind. The folder holds: config.json, forecast.csv (every test
day), folds.csv, returns.csv (daily net returns per strategy), metrics.json, timing.json,
PNG plots and a self-contained report.html.
"""

from __future__ import annotations

import copy
import html
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from coincast import allocator, io
from coincast.config import Settings, validate
from coincast.data.datasets import default_target, load
from coincast.evaluation import conformal, stats, trading
from coincast.evaluation.backtest import BacktestResult, BacktestSettings, check, settings_dict, walk_forward
from coincast.evaluation.metrics import score, verdict
from coincast.evaluation.plots import COLORS as BASE_COLORS
from coincast.evaluation.plots import _png, plt
from coincast.evaluation.report import _kv_html, _table_html, figures_html, page
from coincast.inputs import build_inputs
from coincast.pipeline import _final_name, _staging_folder

COLORS = {**BASE_COLORS, "moving_average": "tab:purple", "ar": "tab:brown", "buy_and_hold": "black"}


@dataclass
class BacktestRun:
    folder: Path
    result: BacktestResult
    summary: dict  # everything in metrics.json
    verdict: list[str]


def load_frame(data, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(model frame, raw frame, target): the inputs `settings.data` asks for, as `coincast run` builds them.

    Indicators are computed once on the full history and exogenous series joined causally,
    so every fold sees the values it would have seen live.
    """
    raw = load(data)
    d = settings.data
    built = build_inputs(raw, d.target, d.features, d.exog, d.exog_max_age)
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
        trading.verdict(results) + _sharpe_ci(cis["sharpe_minus_buy_and_hold"]),
    ]
    summary = {
        "verdict": lines,
        "test": {"first": str(table.index[0]), "last": str(table.index[-1]), "days": len(table),
                 "folds": len(result.folds)},
        "refit_rule": result.backtest.describe(),
        "metrics": metrics,
        "diebold_mariano": stats.dm_vs_persistence(table),
        "direction": {m: stats.binomial_tests(table, m) for m in models},
        "bootstrap": cis,
        "intervals": conformal.coverage(table, result.backtest.levels),
        "trading": {"settings": t.to_dict(), "results": results},
        "per_year": stats.per_year(table, models, returns).reset_index().to_dict(orient="records"),
    }
    return summary, sims, lines


def _sharpe_ci(ci: dict) -> str:
    if ci["lo"] is None:
        return ""
    sure = "excludes" if ci["lo"] > 0 or ci["hi"] < 0 else "includes"
    return f" Sharpe difference 95% block-bootstrap CI [{ci['lo']:.2f}, {ci['hi']:.2f}] ({sure} 0)."


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
    settings = validate(copy.deepcopy(settings) if settings else Settings())
    bt = bt or BacktestSettings()
    t = trading.check(t or trading.TradingSettings())
    if settings.data.target is None:
        settings.data.target = default_target(data)
    frame, raw, target = load_frame(data, settings)
    check(frame, settings, bt)  # every user mistake surfaces here, before anything is written
    runs_dir = Path(runs_dir)
    staging = _staging_folder(runs_dir)
    try:
        on_start = on_start or (lambda n, p: p > 1 and log(f"{n} folds, fresh refits in {p} processes"))
        result = walk_forward(frame, settings, bt, target, extra=raw, log=log, on_fold=on_fold, on_start=on_start)
        summary, sims, lines = evaluate(result, t, n_boot)
        summary = {"data": str(data), "features": ",".join(frame.columns), **summary}
        _write(staging, data, result, t, summary, sims)
        folder = _final_name(runs_dir, data, f"backtest-{bt.refit}")
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BacktestRun(folder, result, summary, lines)


# -- files ----------------------------------------------------------------------------------
def _write(folder: Path, data, result: BacktestResult, t, summary: dict, sims: dict) -> None:
    table, folds = result.table, result.folds
    io.write_json(folder / "config.json", {
        "data": str(data), "features": summary["features"], **result.settings.to_dict(),
        "backtest": settings_dict(result.backtest), "trading": t.to_dict(),
    })
    io.write_json(folder / "metrics.json", summary)
    io.write_json(folder / "timing.json", {
        "backtest_seconds": result.seconds,
        "train_seconds_total": float(folds["train_seconds"].sum()),
        "folds": len(folds), "jobs": result.backtest.jobs, "refit": result.backtest.refit,
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "machine": platform.processor() or platform.machine(),
        "allocator": allocator.describe(),
    })
    io.write_text(folder / "forecast.csv", table.to_csv(float_format="%.6f"))
    io.write_text(folder / "folds.csv", folds.to_csv(index=False, float_format="%.6f"))
    returns = pd.DataFrame({k: v["net"] for k, v in sims.items()})
    returns.index.name = "date"
    io.write_text(folder / "returns.csv", returns.to_csv(float_format="%.8f"))
    images = {
        "forecast_intervals.png": interval_plot(table, str(data)),
        **({"forecast_intervals_last90.png": interval_plot(table.iloc[-90:], f"{data}, last 90 steps")}
           if len(table) > 120 else {}),
        "equity.png": equity_plot(sims),
        "drawdown.png": drawdown_plot(sims),
        "per_year.png": per_year_plot(pd.DataFrame(summary["per_year"]).set_index("year"), result.models),
    }
    for name, png in images.items():
        io.write_bytes(folder / name, png)
    io.write_text(folder / "report.html", html_page(data, result, summary, images))


# -- plots ----------------------------------------------------------------------------------
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


# -- HTML -----------------------------------------------------------------------------------
def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:,.4g}"
    return html.escape(str(v))


def _dict_table(rows: dict[str, dict], keys: list[str]) -> str:
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join(
        f"<tr><th>{html.escape(name)}</th>{''.join(f'<td>{_fmt(r.get(k))}</td>' for k in keys)}</tr>"
        for name, r in rows.items()
    )
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


TRADING_KEYS = ["total_return", "cagr", "ann_vol", "sharpe", "sortino", "max_drawdown", "calmar",
                "hit_rate", "turnover", "exposure", "n_trades", "stops_hit"]


def html_page(data, result: BacktestResult, s: dict, images: dict[str, bytes]) -> str:
    verdict_html = "".join(f"<p class='verdict'>{html.escape(v)}</p>" for v in s["verdict"])
    bt, st = result.backtest, result.settings
    run = {
        "data": data, "features": s["features"], "target": result.target,
        "test period": f"{s['test']['first']} → {s['test']['last']} ({s['test']['days']} steps)",
        "folds": s["test"]["folds"], "retrain every": f"{bt.retrain_every} steps",
        "training window": bt.window + (f" ({bt.train_size} rows)" if bt.train_size else ""),
        "refit": s["refit_rule"], "model window": st.data.window, "hidden": st.hidden_sizes(),
        "epochs (full fit)": st.train.epochs, "model target": st.model.target,
        "backtest time (s)": f"{result.seconds:.1f}",
    }
    dm = s["diebold_mariano"]
    years = pd.DataFrame(s["per_year"]).set_index("year")
    folds = result.folds.drop(columns=["train_first"], errors="ignore")
    return page(f"coincast walk-forward backtest: {data}", f"""{verdict_html}
<h2>Forecasts vs baselines (every test day, each from a model trained only on earlier data)</h2>
<p>Diebold-Mariano (HLN, squared error) model vs persistence: statistic {dm['stat']:.3f},
one-sided p = {dm['p_one_sided']:.3g}. Direction: up when the forecast is above the previous price.</p>
{_table_html(s['metrics'])}
<h2>Direction: binomial tests</h2>
<p>One-sided p-values that the accuracy exceeds 50% and the always-up rate of the same days.</p>
{_dict_table(s['direction'], ['n', 'accuracy', 'p_vs_50', 'always_up_rate', 'p_vs_always_up'])}
<h2>Moving-block bootstrap (95% CIs)</h2>
{_dict_table(s['bootstrap'], ['estimate', 'lo', 'hi', 'block', 'n_boot'])}
<h2>Prediction intervals (split conformal, each fold's validation residuals)</h2>
{_dict_table(s['intervals'], ['nominal', 'coverage', 'mean_width_pct', 'n'])}
<h2>Trading simulation (after {s['trading']['settings']['fee_bps']} bps fees + {s['trading']['settings']['slippage_bps']} bps slippage per change)</h2>
<p>Mode {html.escape(s['trading']['settings']['mode'])}, threshold {s['trading']['settings']['threshold_pct']}%,
sizing {html.escape(s['trading']['settings']['sizing'])}. Positions are set at the previous close from the forecast.</p>
{_dict_table(s['trading']['results'], TRADING_KEYS)}
<h2>Per calendar year</h2>
{years.to_html(float_format=lambda v: f"{v:.4g}", na_rep="–")}
<h2>Run</h2>{_kv_html(run)}
<h2>Plots</h2>{figures_html(images)}
<h2>Folds</h2>
{folds.to_html(index=False, float_format=lambda v: f"{v:.4g}")}""")
