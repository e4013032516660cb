"""coincast side of the speed benchmark: the tutorial network, trained and timed.

Runs one dataset per process (so peak memory is this run's alone) and writes JSON with the
same keys as keras_reference.py, plus time-to-target and inference latency:

    .venv/bin/python benchmarks/bench.py --data tutorial --epochs 100 \
        --keras benchmarks/results/keras_tutorial.json benchmarks/results/keras-intra1-inter2_tutorial.json \
        --out benchmarks/results/coincast_tutorial.json

It trains on the allocator the `coincast` command uses (mimalloc preloaded by re-exec:
coincast/allocator.py; COINCAST_ALLOCATOR=system for glibc) and records it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from coincast import allocator

if __name__ == "__main__":
    allocator.reexec()  # the allocator the `coincast` command trains on (COINCAST_ALLOCATOR=system: glibc)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import epoch_flops, training_flops  # noqa: E402
from summarise import fastest_keras, peak_gflops  # noqa: E402

import coincast  # noqa: E402
from coincast.data.datasets import default_target  # noqa: E402
from coincast.data.frame import select_columns  # noqa: E402
from coincast.evaluation.metrics import direction_metrics  # noqa: E402
from coincast.machine import cpu_model  # noqa: E402
from coincast.models.bilstm import BiLSTM  # noqa: E402
from coincast.models.step import autocast_dtype  # noqa: E402
from coincast.models.training import seed_everything, train  # noqa: E402
from coincast.prep.windows import (  # noqa: E402
    Normaliser,
    fill_zeros,
    first_test_row,
    make_windows,
    split_train_val,
)


def _settings(data: str, epochs: int, precision: str) -> coincast.Settings:
    s = coincast.preset("tutorial")
    s.data.target = default_target(data)
    s.train.epochs, s.train.precision = epochs, precision
    return s


def measure_training(data: str, epochs: int, precision: str) -> tuple[dict, coincast.Forecaster, object]:
    """Train with the tutorial preset through the public Forecaster, as a user would."""
    s = _settings(data, epochs, precision)
    frame = coincast.load(data).iloc[:-1]  # the tutorial never uses the last row as a target
    cut = first_test_row(len(frame), s.data.window, s.data.test_fraction)
    model = coincast.Forecaster(s).fit(frame.iloc[:cut])
    test = model.predict(frame, start=frame.index[cut])
    h = model.history_
    n_fit = int(round(model.train_shape_[0] * (1 - s.data.val_fraction)))
    n_val = model.train_shape_[0] - n_fit
    counts = training_flops(model.train_shape_[2], s.data.window - 1, tuple(s.hidden_sizes()))
    per_epoch = epoch_flops(counts, n_fit, n_val, s.train.batch_size)
    median = statistics.median(h.epoch_seconds[1:] or h.epoch_seconds)
    err = (test["predicted"] - test["actual"]) / test["base"]
    pers = (test["previous"] - test["actual"]) / test["base"]
    up = direction_metrics(test["actual"] > test["previous"], test["predicted"] > test["previous"])
    return {
        "shapes": {"train": list(model.train_shape_), "test": [len(test), s.data.window - 1, model.train_shape_[2]]},
        "n_fit": n_fit, "n_val": n_val,
        "seconds_per_epoch": h.epoch_seconds,
        "median_epoch_seconds": median,
        "first_epoch_seconds": h.epoch_seconds[0],
        "train_seconds": h.seconds,
        "windows_per_second": n_fit / median,
        "flops": counts, "flops_per_epoch": per_epoch, "achieved_gflops": per_epoch / median / 1e9,
        "final_train_loss": h.loss[-1], "final_val_loss": h.val_loss[-1],
        "train_loss": h.loss, "val_loss": h.val_loss,
        "test_mse": float(np.mean(err**2)), "test_mse_persistence": float(np.mean(pers**2)),
        "precision": up["precision"], "recall": up["recall"], "f1": up["f1"],
    }, model, frame


def time_to_target(data: str, target_loss: float, batch: int, lr: float, max_epochs: int, precision: str) -> dict:
    """Wall time until the validation loss first reaches `target_loss` (the Keras final one).

    Same network, data, windows and random validation split as the tutorial preset; only
    the batch size and learning rate differ (more updates per epoch).
    """
    s = _settings(data, max_epochs, precision)
    s.train.batch_size, s.train.lr = batch, lr
    frame = coincast.load(data).iloc[:-1]
    cut = first_test_row(len(frame), s.data.window, s.data.test_fraction)
    train_frame, target = select_columns(frame.iloc[:cut], s.data.target, None)
    train_frame = fill_zeros(train_frame)
    start = time.perf_counter()  # windowing counts: a user waits for it too
    norm = Normaliser.fit(train_frame, target)
    w = make_windows(train_frame, target, s.data.window, norm, "window", "none")
    tr, va = split_train_val(len(w), s.data.val_fraction, "random", np.random.default_rng(s.train.seed))
    seed_everything(s.train.seed)
    net = BiLSTM(w.X.shape[2], s.hidden_sizes(), s.model.dropout)
    reached: dict = {}

    def stop(h) -> bool:
        if h.val_loss[-1] <= target_loss and not reached:
            reached.update(epoch=len(h.val_loss), seconds=time.perf_counter() - start)
        return bool(reached)

    h = train(net, w.X[tr], w.y[tr], w.X[va], w.y[va], s.train, torch.device("cpu"), on_epoch=stop)
    return {"target_val_loss": target_loss, "batch_size": batch, "lr": lr, "reached": bool(reached),
            "epochs": reached.get("epoch", len(h.val_loss)), "seconds": reached.get("seconds"),
            "best_val_loss": min(h.val_loss), "seconds_run": h.seconds}


def inference_latency(model: coincast.Forecaster, frame, repeats: int = 100) -> dict:
    """Median wall time of a next-step forecast for one asset, and for a batch of 100 windows."""
    L = model.settings.data.window
    one = frame.iloc[-(L - 1) :]
    batch = frame.iloc[-(L - 1 + 100) :]  # 100 windows: the compute of 100 assets' next steps
    for _ in range(5):
        model.forecast_next(one), model.predict(batch)
    times = {"one_asset_ms": [], "batch_100_ms": []}
    for _ in range(repeats):
        t = time.perf_counter()
        model.forecast_next(one)
        times["one_asset_ms"].append(1e3 * (time.perf_counter() - t))
        t = time.perf_counter()
        model.predict(batch)
        times["batch_100_ms"].append(1e3 * (time.perf_counter() - t))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--keras", nargs="*", default=[],
                   help="Keras reference JSONs: the faster run's final val loss is the time-to-target goal")
    p.add_argument("--fast-batch", type=int, default=128)
    p.add_argument("--fast-lr", type=float, default=2e-3)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--out", required=True)
    a = p.parse_args()
    load_before = os.getloadavg()
    result, model, frame = measure_training(a.data, a.epochs, a.precision)
    dtype = autocast_dtype(a.precision, torch.device("cpu"))
    result = {"implementation": "coincast", "train_dtype": "bf16" if dtype == torch.bfloat16 else "fp32",
              "data": a.data, "epochs": a.epochs, "batch_size": 1024, **result}
    result["inference"] = inference_latency(model, frame)
    keras = fastest_keras([json.loads(Path(k).read_text()) for k in a.keras if Path(k).exists()])
    if keras:
        goal = keras["final_val_loss"]
        result["time_to_target"] = time_to_target(a.data, goal, a.fast_batch, a.fast_lr, a.epochs, a.precision)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["versions"] = {"coincast": coincast.__version__, "torch": torch.__version__, "numpy": np.__version__,
                          "python": platform.python_version()}
    result["threads"] = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads(),
                         "mkldnn": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
                         "shards": model.settings.train.shards}
    result["cpu"] = {"cpu_count": os.cpu_count(), "machine": platform.machine(), "model": cpu_model(),
                     "simd": _simd(), "peak": peak_gflops()}
    result["allocator"] = allocator.describe()
    result["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    result["commit"] = _commit()
    result["loadavg_before"], result["loadavg_after"] = list(load_before), list(os.getloadavg())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{a.data} ({result['train_dtype']}): {result['median_epoch_seconds']:.3f} s/epoch, val loss {result['final_val_loss']:.4f}, "
          f"test MSE {result['test_mse']:.4f} -> {a.out}")


def _simd() -> list[str]:
    """The SIMD flags that decide the kernels (same list as keras_reference.cpu_info)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("flags"):
            return [f for f in line.split(":", 1)[1].split() if f in {"fma", "avx", "avx2", "avx512f", "avx512_bf16",
                    "avx512_vnni", "amx_bf16", "amx_tile"}]
    return []


def _commit() -> str | None:
    """The checkout measured: short hash, '+changes' if the work tree differs from it."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
    return (head + ("+changes" if dirty else "")) or None


if __name__ == "__main__":
    main()
