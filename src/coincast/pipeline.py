"""`run()`: the whole flow, data to report, as one call shared by the CLI and the API.

source -> frame -> windows -> model -> forecast table -> metrics -> run folder. Everything
the user can get wrong is checked before training starts, and the run folder is built
under a temporary name and renamed at the end, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import copy
import platform
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from coincast import io
from coincast.config import Settings, validate
from coincast.data.datasets import default_target, load
from coincast.data.frame import select_columns
from coincast.errors import DataError, OutputError
from coincast.evaluation import plots
from coincast.evaluation.metrics import score, verdict
from coincast.evaluation.report import html_report
from coincast.models.baselines import BASELINES
from coincast.models.forecaster import MIN_TRAIN_WINDOWS, Forecaster
from coincast.windows import fill_zeros


@dataclass
class RunResult:
    folder: Path
    metrics: dict  # forecast name -> metric name -> value
    forecast: pd.DataFrame
    forecaster: Forecaster
    verdict: str
    shapes: dict


def split_point(n_rows: int, settings: Settings) -> int:
    """Row of the first test target: the tutorial's round(0.9 * windows) training windows."""
    L = settings.data.window
    n_windows = n_rows - L + 1
    n_train = int(round((1 - settings.data.test_fraction) * n_windows))
    if n_windows - n_train < 2 or n_train < MIN_TRAIN_WINDOWS:
        need = L - 1 + max(MIN_TRAIN_WINDOWS + 2, int(2 / settings.data.test_fraction) + 1)
        raise DataError(
            f"{n_rows} rows are too few for windows of {L} plus a usable test set: give at least "
            f"{need} rows, or a shorter --window"
        )
    return n_train + L - 1


def _staging_folder(runs_dir: Path) -> Path:
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".incomplete-", dir=runs_dir))
    except OSError as exc:
        raise OutputError(
            f"cannot write run folders to {runs_dir} ({exc.strerror}); choose a writable folder with --out"
        ) from None


def _final_name(runs_dir: Path, data: str, preset: str) -> Path:
    stem = Path(str(data)).name.split(".")[0] if Path(str(data)).is_file() else str(data)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_")[:60]  # store:binance/BTC/USDT/1d
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}-{preset}"
    path, i = runs_dir / base, 1
    while path.exists():
        path, i = runs_dir / f"{base}-{i}", i + 1
    return path


def run(
    data: str | Path = "btc-usd",
    settings: Settings | None = None,
    runs_dir: str | Path = "runs",
    progress: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> RunResult:
    """Train on the first 90% of windows, forecast the rest, score against baselines, save."""
    settings = validate(copy.deepcopy(settings) if settings else Settings())
    if settings.data.target is None:
        settings.data.target = default_target(data)
    frame = load(data)
    if settings.data.skip_last_row:
        frame = frame.iloc[:-1]
    frame, target = select_columns(frame, settings.data.target, settings.data.features)
    frame = fill_zeros(frame)
    L = settings.data.window
    cut = split_point(len(frame), settings)
    runs_dir = Path(runs_dir)
    staging = _staging_folder(runs_dir)
    try:
        forecaster = Forecaster(settings).fit(frame.iloc[:cut], progress=progress)
        start = frame.index[cut]
        table = forecaster.predict(frame, start=start).rename(columns={"predicted": "model"})
        for cls in BASELINES:
            table[cls.name] = cls(target, L).fit(frame.iloc[:cut]).predict(frame, start=start)
        models = ["model"] + [cls.name for cls in BASELINES]
        metrics = score(table, models)
        sentence = verdict(metrics)
        shapes = {
            "train": list(forecaster.train_shape_),
            "test": [len(table), L - 1, len(forecaster.columns_)],
            "target_column": forecaster.columns_.index(target),
            "target": target,
        }
        log(f"windows: train {tuple(shapes['train'])}, test {tuple(shapes['test'])}, "
            f"target column {shapes['target_column']} '{target}'")
        _write_run(staging, data, settings, forecaster, table, metrics, sentence, shapes)
        folder = _final_name(runs_dir, data, settings.preset)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RunResult(folder, metrics, table, forecaster, sentence, shapes)


def _write_run(folder, data, settings, forecaster, table, metrics, sentence, shapes) -> None:
    hist = forecaster.history_
    rules = dict(zip(forecaster.normaliser_.columns, forecaster.normaliser_.rules))
    test_span = {"first": str(table.index[0]), "last": str(table.index[-1]), "days": len(table)}
    dataset = str(Path(data).resolve()) if Path(data).is_file() else str(data)
    io.write_json(folder / "config.json", {"dataset": dataset, **settings.to_dict()})
    io.write_json(folder / "metrics.json", {
        "data": str(data),
        "preset": settings.preset,
        "test": test_span,
        "shapes": shapes,
        "verdict": sentence,
        "metrics": metrics,
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
        },
    })
    io.write_json(folder / "timing.json", {  # kept apart: times differ between identical runs
        "train_seconds": hist.seconds,
        "epoch_seconds": hist.epoch_seconds,
        "device": str(forecaster.device_),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
    })
    out = table.copy()
    out.index.name = "date"
    io.write_text(folder / "forecast.csv", out.to_csv(float_format="%.6f"))
    images = {
        "price.png": plots.price_plot(table, ["model", "persistence"], str(data)),
        "change.png": plots.change_plot(table),
        "confusion.png": plots.confusion_plot(metrics["model"]),
        "training.png": plots.training_plot(hist.loss, hist.val_loss, hist.best_epoch),
    }
    for name, png in images.items():
        io.write_bytes(folder / name, png)
    summary = {
        "data": data, "preset": settings.preset, "target": shapes["target"],
        "test period": f"{test_span['first']} → {test_span['last']} ({test_span['days']} steps)",
        "train windows": tuple(shapes["train"]), "epochs run": len(hist.loss),
        "kept epoch": hist.best_epoch, "validation": settings.data.val_split,
        "model target": settings.model.target, "scaling": settings.model.scaling,
        "shrinkage a (fitted on validation)": f"{forecaster.shrink_:.3f}" if settings.model.shrink else "off",
        "networks averaged": len(forecaster.modules_),
        "training time (s)": f"{sum(h.seconds for h in forecaster.histories_):.1f}",
    }
    io.write_text(folder / "report.html", html_report(
        f"coincast run: {data}", sentence, summary, metrics, rules, images))
    forecaster.save(folder)
