"""The command line: parses, calls the library, prints. Errors are one line and exit 2."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from coincast.cli import options as opt
from coincast.errors import CoincastError, DataError

app = typer.Typer(no_args_is_help=True, help="Honest next-step crypto forecasts with a bidirectional LSTM.")
out = Console()
err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from coincast import __version__

        out.print(f"coincast {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print coincast's version and exit."),
) -> None:
    """Honest next-step crypto forecasts with a bidirectional LSTM."""


@app.command()
def run(
    data: str = typer.Option("btc-usd", help="Bundled dataset name (see `coincast datasets`), a CSV/Parquet path or store:EXCHANGE/SYMBOL/TF; comma-separated for one model on several assets."),
    preset: opt.Preset = "default",
    config: opt.Config = None,
    target: opt.Target = None,
    features: opt.Features = None,
    exog: opt.Exog = None,
    exog_max_age: Optional[float] = typer.Option(None, help="Days an exogenous value stays usable before it counts as missing (default 7)."),
    max_gap: Optional[str] = typer.Option(None, help="Drop windows spanning a time gap over this many typical steps (default 1.5; 'none' keeps all)."),
    window: Optional[int] = typer.Option(None, help="Rows per window (inputs + 1 target)."),
    test_start: opt.TestStart = None,
    timestamps: opt.Timestamps = None,
    epochs: opt.Epochs = None,
    batch_size: Optional[int] = typer.Option(None, help="Batch size."),
    hidden: opt.Hidden = None,
    cell: opt.Cell = None,
    risk_head: opt.RiskHead = None,
    precision: opt.Precision = None,
    bidirectional: Optional[bool] = typer.Option(None, "--bidirectional/--unidirectional"),
    dropout: Optional[float] = typer.Option(None),
    model_target: opt.ModelTarget = None,
    early_stopping: Optional[bool] = typer.Option(None, "--early-stopping/--no-early-stopping"),
    seed: opt.Seed = None,
    intraday: opt.Intraday = None,
    out_dir: opt.OutDir = Path("runs"),
    quiet: opt.Quiet = False,
):
    """Train, forecast the test period, compare with baselines, and write a run folder."""
    from coincast.flows.run import run as run_pipeline
    from coincast.report.terminal import terminal_table

    s = opt.settings(
        preset, config,
        data__target=target, data__features=opt.csv(features), data__exog=opt.csv(exog), data__window=window,
        data__max_gap=max_gap, data__exog_max_age=exog_max_age, data__test_start=test_start, data__timestamps=timestamps,
        train__epochs=epochs, train__batch_size=batch_size, train__seed=seed,
        train__early_stopping=early_stopping,
        model__hidden=opt.hidden(hidden), model__cell=cell, model__risk_head=risk_head, train__precision=precision,
        model__bidirectional=bidirectional, model__dropout=dropout, model__target=model_target,
    )
    result = run_pipeline(data, s, out_dir, progress=not quiet, log=out.print, intraday=intraday)
    pooled = " (pooled over assets, RMSE in % of the last price)" if result.per_asset else ""
    out.print(terminal_table(result.metrics, f"{data}: test period, {len(result.forecast)} steps{pooled}"))
    if result.per_asset:
        from coincast.report.terminal import asset_table

        shown = [m for m in result.metrics if m in ("model", "price_only", "persistence")]
        out.print(asset_table(result.per_asset, result.metrics, shown))
    out.print(result.verdict)
    if result.comparison is not None:
        out.print(result.comparison["sentence"])
    r = result.risk.summary
    out.print(r["verdict"] if r["skipped"] is None else f"risk baselines skipped: {r['skipped']}", soft_wrap=True)
    out.print(f"run folder: {result.folder}")


@app.command()
def datasets():
    """List the bundled datasets."""
    from coincast.data import dataset_info

    info = dataset_info().drop(columns="columns")
    table = Table(box=None)
    for col in info.columns:
        table.add_column(col, no_wrap=col != "description")
    for row in info.itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    out.print(table)


def _price(x: float) -> str:
    """Cents for prices of a dollar or more, six significant digits below (XRP, ADA)."""
    return f"{x:,.2f}" if abs(x) >= 1 else f"{x:.6g}"


@app.command()
def predict(
    model: Path = typer.Option(..., help="A run folder (or any folder with model.json + model.safetensors)."),
    data: Optional[str] = typer.Option(None, help="Data to forecast from (default: what the model was trained on)."),
    timestamps: opt.Timestamps = None,
    intraday: opt.Intraday = None,
):
    """Forecast the step after the last row of the data with a saved model."""
    import json

    from coincast.data import load
    from coincast.data.datasets import split_spec
    from coincast.data.intraday import resolve
    from coincast.models.forecaster import Forecaster

    f = Forecaster.load(model)
    if data is None:
        cfg = model / "config.json"
        data = json.loads(cfg.read_text()).get("dataset") if cfg.exists() else None
        if data is None:
            raise CoincastError("no data recorded with this model: pass --data NAME|PATH")
    stamps = timestamps or f.settings.data.timestamps
    raws = {asset: load(asset, timestamps=stamps) for asset in split_spec(data)}
    hourly = resolve(intraday, raws, stamps)  # checked before any forecast
    for asset, candles in raws.items():  # a model trained on several assets forecasts each
        fc = f.forecast_next(candles)
        out.print(
            f"{asset}: next step {fc['date']}: {_price(fc['predicted_price'])} "
            f"({fc['change_pct']:+.2f}% from {_price(fc['last_price'])}, {fc['direction']})",
            soft_wrap=True,
        )
        out.print(f"  {_risk(candles, fc['last_price'], hourly.frame, head=f.settings.model.risk_head, data=asset)}", soft_wrap=True)


def _risk(candles, last: float, intraday=None, head: bool = True, data: str | None = None) -> str:
    """The next move's median and 80%/95% ranges from the served risk model (flows/backtest_risk.served_move)."""
    import numpy as np

    from coincast.flows.backtest_risk import served_move

    try:
        q, n, label = served_move(candles, (0.025, 0.1, 0.5, 0.9, 0.975), intraday, head, data)  # percent log returns
    except DataError as exc:
        return f"risk: no range ({exc})"
    price = last * np.exp(q / 100)
    return (f"risk ({label} on {n:,} returns): median {_price(price[2])} ({q[2]:+.2f}%), "
            f"80% range {_price(price[1])} .. {_price(price[3])} ({q[1]:+.2f}% .. {q[3]:+.2f}%), "
            f"95% range {_price(price[0])} .. {_price(price[4])} ({q[0]:+.2f}% .. {q[4]:+.2f}%)")


from coincast.cli.data import fetch, sentiment_app, store_app  # noqa: E402
from coincast.cli.evaluate import audit, backtest, evaluate  # noqa: E402
from coincast.cli.live import live, models_app  # noqa: E402
from coincast.cli.serve import serve  # noqa: E402
from coincast.cli.tune import tune  # noqa: E402

app.command("backtest")(backtest)
app.command("evaluate")(evaluate)
app.command("audit")(audit)
app.command("tune")(tune)
app.add_typer(store_app, name="store")
app.add_typer(sentiment_app, name="sentiment")
app.command("fetch")(fetch)
app.command("live")(live)
app.command("serve")(serve)
app.add_typer(models_app, name="models")


def main() -> None:
    """Entry point: user mistakes become one line on stderr and exit status 2."""
    warnings.simplefilter("default")
    warnings.showwarning = lambda msg, *a, **k: err.print(f"warning: {msg}", markup=False, highlight=False)
    try:
        app(standalone_mode=False)
    except CoincastError as exc:
        err.print(f"error: {exc}", soft_wrap=True, markup=False, highlight=False)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # usage errors (bad flags) arrive here in non-standalone mode
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        raise
