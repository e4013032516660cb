"""A finished backtest's run folder: config.json, forecast.csv (every test day), folds.csv,
returns.csv (daily net returns per strategy), risk.csv (the risk baselines' quantiles, daily
candles only), metrics.json, timing.json, PNG plots and a self-contained report.html.
"""

from __future__ import annotations

import platform
from pathlib import Path

import pandas as pd
import torch

from coincast import allocator, io
from coincast.backtest.engine import BacktestResult, settings_dict
from coincast.machine import describe
from coincast.report.backtest_plots import (
    drawdown_plot,
    equity_plot,
    interval_plot,
    per_year_plot,
)
from coincast.report.html import render
from coincast.report.risk_files import write_risk
from coincast.report.run_folder import dataset_spec


def write_backtest(folder: Path, data, result: BacktestResult, t, summary: dict, sims: dict,
                   risk: pd.DataFrame | None = None, risk_seconds: float = 0.0) -> None:
    """`risk`: risk.csv's table (flows/backtest_risk.py), None where `summary["risk"]` says why it was skipped."""
    table, folds = result.table, result.folds
    io.write_json(folder / "config.json", {
        "data": str(data), "dataset": dataset_spec(data), "features": summary["features"], **result.settings.to_dict(),
        "backtest": settings_dict(result.backtest), "trading": t.to_dict(),
    })
    io.write_json(folder / "metrics.json", summary)
    if result.model is not None:  # `coincast predict --model FOLDER`: the next day's forecast
        result.model.save(folder)
    io.write_json(folder / "timing.json", {
        "backtest_seconds": result.seconds,
        "train_seconds_total": float(folds["train_seconds"].sum()),
        "risk_seconds": risk_seconds, "folds": len(folds), "jobs": result.backtest.jobs, "refit": result.backtest.refit,
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "machine": describe(),
        "allocator": allocator.describe(),
    })
    io.write_text(folder / "forecast.csv", table.to_csv(float_format="%.6f"))
    io.write_text(folder / "folds.csv", folds.to_csv(index=False, float_format="%.6f"))
    returns = pd.DataFrame({k: v["net"] for k, v in sims.items()})
    returns.index.name = "date"
    io.write_text(folder / "returns.csv", returns.to_csv(float_format="%.8f"))
    fan = write_risk(folder, risk, summary["risk"], str(data))
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
    io.write_text(folder / "report.html", html_page(data, result, summary, images, fan))


def html_page(data, result: BacktestResult, s: dict, images: dict[str, bytes], fan: dict[str, bytes]) -> str:
    """The backtest's report.html: templates/backtest_report.html filled in."""
    bt, st = result.backtest, result.settings
    run = {
        "data": data, "features": s["features"], "target": result.target,
        "test period": f"{s['test']['first']} → {s['test']['last']} ({s['test']['days']} steps)",
        "days skipped: window spans a time gap": s["test"].get("days_skipped_gap", 0),
        "folds": s["test"]["folds"], "retrain every": f"{bt.retrain_every} steps",
        "training window": bt.window + (f" ({bt.train_size} rows)" if bt.train_size else ""),
        "refit": s["refit_rule"], "shrinkage towards persistence": bt.describe_shrink(st), "model window": st.data.window, "hidden": st.hidden_sizes(),
        "epochs (full fit)": st.train.epochs, "model target": st.model.target,
        "backtest time (s)": f"{result.seconds:.1f}",
    }
    return render(
        "backtest_report.html", title=f"coincast walk-forward backtest: {data}", s=s, run=run,
        images=images, fan=fan,
        years=pd.DataFrame(s["per_year"]).set_index("year"),
        folds=result.folds.drop(columns=["train_first"], errors="ignore"),
    )
