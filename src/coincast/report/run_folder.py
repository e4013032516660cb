"""Write a finished run into its folder: config, metrics, timing, forecast table, plots,
the risk models' risk.csv and fan chart (daily OHLC candles only, report/risk_files.py),
the self-contained HTML report and the model itself.
"""

from __future__ import annotations

import platform
import re
import tempfile
import time
from pathlib import Path

import torch

from coincast import allocator, io
from coincast.config import Settings
from coincast.data.datasets import split_spec
from coincast.errors import OutputError
from coincast.evaluation.compare import PRICE_ONLY
from coincast.machine import describe
from coincast.report import plots
from coincast.report.html import render
from coincast.report.risk_files import write_risk


def staging_folder(runs_dir: Path) -> Path:
    """A new hidden folder in `runs_dir` to build a run in; renamed to `final_name` when complete."""
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".incomplete-", dir=runs_dir))
    except OSError as exc:
        raise OutputError(
            f"cannot write run folders to {runs_dir} ({exc.strerror}); choose a writable folder with --out"
        ) from None


def final_name(runs_dir: Path, data: str, preset: str) -> Path:
    """runs/<time>-<data>-<preset>, unique: the finished run folder's name."""
    stem = Path(str(data)).name.split(".")[0] if Path(str(data)).is_file() else str(data)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_")[:60]  # store:binance/BTC/USDT/1d
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}-{preset}"
    path, i = runs_dir / base, 1
    while path.exists():
        path, i = runs_dir / f"{base}-{i}", i + 1
    return path


def dataset_spec(data) -> str:
    """The data as config.json records it: bundled names and store refs as given, files absolute."""
    return ",".join(str(Path(d).resolve()) if Path(d).is_file() else d for d in split_spec(data))


def write_run(folder: Path, data, settings: Settings, r) -> None:
    """`r`: the pipeline's RunResult (its folder is still the staging one)."""
    forecaster, table, metrics = r.forecaster, r.forecast, r.metrics
    hist = forecaster.history_
    rules = dict(zip(forecaster.normaliser_.columns, forecaster.normaliser_.rules))
    test_span = {"first": str(table.index.min()), "last": str(table.index.max()), "days": len(table)}
    io.write_json(folder / "config.json", {"dataset": dataset_spec(data), **settings.to_dict()})
    io.write_json(folder / "metrics.json", {
        "data": str(data),
        "preset": settings.preset,
        "test": test_span,
        "split": r.split,
        "shapes": r.shapes,
        "verdict": r.verdict,
        "metrics": metrics,
        "per_asset": r.per_asset or None,
        "comparison": r.comparison,
        "risk": r.risk.summary,
        "intraday": r.intraday,
        "inputs": r.inputs,
        "gaps": r.gaps,
        "normalisation": rules,
        "training": {
            "epochs_run": len(hist.loss),
            "best_epoch": hist.best_epoch,
            "stopped_early": hist.stopped_early,
            "final_loss": hist.loss[-1],
            "final_val_loss": hist.val_loss[-1],
            "best_val_loss": min(hist.val_loss),
            "networks": len(forecaster.modules_),
            "shrink": forecaster.shrink_,
            "price_only_shrink": r.price_only.shrink_ if r.price_only is not None else None,
        },
    })
    seconds = sum(h.seconds for h in forecaster.histories_)
    po_seconds = sum(h.seconds for h in r.price_only.histories_) if r.price_only is not None else None
    io.write_json(folder / "timing.json", {  # kept apart: times differ between identical runs
        "train_seconds": hist.seconds,
        "epoch_seconds": hist.epoch_seconds,
        "price_only_train_seconds": po_seconds,
        "risk_seconds": r.risk.seconds,
        "device": str(forecaster.device_),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": describe(),
        "allocator": allocator.describe(),
    })
    out = table.copy()
    out.index.name = "date"
    io.write_text(folder / "forecast.csv", out.to_csv(float_format="%.6f"))
    images = _plots(table, metrics, hist, data)
    for name, png in images.items():
        io.write_bytes(folder / name, png)
    fan = write_risk(folder, r.risk.table, r.risk.summary, str(data))
    io.write_text(folder / "report.html", render(
        "run_report.html", title=f"coincast run: {data}", verdict=r.verdict, metrics=metrics, rules=rules,
        summary=_summary(data, settings, r, test_span, seconds), images=images,
        comparison=r.comparison,  # scored on pooled (relative) prices when several assets
        per_asset=r.per_asset, asset_models=[m for m in metrics if m in ("model", PRICE_ONLY, "persistence")],
        risk=r.risk.summary, fan=fan,
    ))
    forecaster.save(folder)


def _plots(table, metrics, hist, data) -> dict[str, bytes]:
    shown = ["model"] + (["price_only"] if "price_only" in table.columns else []) + ["persistence"]
    if "asset" not in table.columns:
        images = {"price.png": plots.price_plot(table, shown, str(data)), "change.png": plots.change_plot(table)}
    else:
        images = {}
        for asset, part in table.groupby("asset", sort=False):
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(asset)).strip("_")
            images[f"price-{safe}.png"] = plots.price_plot(part, shown, str(asset))
    images["confusion.png"] = plots.confusion_plot(metrics["model"])
    images["training.png"] = plots.training_plot(hist.loss, hist.val_loss, hist.best_epoch)
    return images


def _summary(data, settings: Settings, r, test_span: dict, seconds: float) -> dict:
    hist, forecaster = r.forecaster.history_, r.forecaster
    summary = {
        "data": data, "preset": settings.preset, "target": r.shapes["target"],
        "inputs": ", ".join(forecaster.columns_),
        "test period": f"{test_span['first']} → {test_span['last']} ({test_span['days']} steps)",
        "train windows": tuple(r.shapes["train"]), "epochs run": len(hist.loss),
        "kept epoch": hist.best_epoch, "validation": settings.data.val_split,
        "model target": settings.model.target, "scaling": settings.model.scaling,
        "shrinkage a (fitted on validation)": f"{forecaster.shrink_:.3f}" if settings.model.shrink else "off",
        "networks averaged": len(forecaster.modules_),
        "training time (s)": f"{seconds:.1f}",
    }
    dropped = {a: d for a, d in r.inputs.get("rows_dropped", {}).items() if d.get("in all")}
    for asset, d in dropped.items():
        label = f"leading rows dropped ({asset})" if len(r.inputs["rows_dropped"]) > 1 else "leading rows dropped"
        summary[label] = f"{d['in all']}: " + ", ".join(f"{n} {why}" for why, n in d.items() if why != "in all")
    g = r.gaps
    summary["windows dropped: time gap"] = (
        "off" if g["max_gap_steps"] is None else
        f"{g['train_windows_dropped']} train, {g['test_windows_dropped']} test "
        f"(gap over {g['max_gap_steps']:g} x {g['step']})"
    )
    return summary
