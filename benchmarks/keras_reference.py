"""Keras/TensorFlow reference for the speed benchmark: the tutorial's steps 1-3 and its test metrics.

Runs in its own environment (benchmarks/.venv-keras, made by setup_keras_env.sh); TensorFlow
is never a dependency of coincast. Faithful to the tutorial on purpose, faults included
(random validation split of shuffled windows, first-row normalisation of every column):
it is the yardstick coincast's speed and quality are measured against.

    benchmarks/.venv-keras/bin/python benchmarks/keras_reference.py \
        --data src/coincast/data/bundled/tutorial.csv.gz --target "Bitcoin Price" \
        --epochs 100 --out benchmarks/results/keras_tutorial.json

Departures from the tutorial's code, none of which changes the result on its dataset:
- windows are cut with sliding_window_view instead of a Python loop (same values);
- a zero in row 0 stays 0 (the tutorial reads row -1, the last row: a look-ahead leak);
- where a window's first row is 0 (only possible from such a row-0 zero), the tutorial
  would divide by zero and feed inf/NaN to the network: that column is set to 0 in that
  window instead; the count of such cells is recorded as ``zero_base_cells``;
- the de-normalising bases start at the split line, not at a hard-coded 2400;
- precision/recall/F1 are null instead of a ZeroDivisionError when undefined.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # keep TF's info lines out of the log

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import epoch_flops, training_flops  # noqa: E402

SEQUENCE_LENGTH = 50  # window rows: 49 inputs + 1 target
HIDDEN = (49, 98, 49)  # window_size, 2 * window_size, window_size
DROPOUT = 0.2
BATCH_SIZE = 1024
VALIDATION_SPLIT = 0.1


def read_numeric_csv(path: str) -> pd.DataFrame:
    """Read the CSV and keep its numeric columns as float64 (drops date/timestamp text)."""
    frame = pd.read_csv(path)
    numeric = frame.select_dtypes("number").astype(np.float64)
    if numeric.shape[1] == 0:
        raise SystemExit(f"{path}: no numeric columns")
    return numeric


def resolve_target(columns: list[str], target: str) -> int:
    """Index of the target column, given by name or by position among the numeric columns."""
    if target in columns:
        return columns.index(target)
    if target.lstrip("-").isdigit() and -len(columns) <= int(target) < len(columns):
        return int(target) % len(columns)
    raise SystemExit(f"unknown target {target!r}; numeric columns: {columns}")


def fill_zeros(raw: np.ndarray) -> np.ndarray:
    """Tutorial step 1: replace every 0 by the previous row's (already filled) value."""
    raw = raw.copy()
    for row in range(1, raw.shape[0]):  # row 0 kept as is (tutorial: reads row -1)
        zero = raw[row] == 0
        raw[row, zero] = raw[row - 1, zero]
    return raw


def load_data(raw: np.ndarray, target: int, rng: np.random.Generator) -> dict:
    """Tutorial step 1 (load_data): windows, first-row normalisation, 90/10 split, shuffle."""
    raw = fill_zeros(raw)
    # range(len(data) - 50) windows as in the tutorial: the last row is never a target.
    n_windows = raw.shape[0] - SEQUENCE_LENGTH
    if n_windows < 10:
        raise SystemExit(f"need more than {SEQUENCE_LENGTH + 10} rows, got {raw.shape[0]}")
    d0 = np.lib.stride_tricks.sliding_window_view(raw, SEQUENCE_LENGTH, axis=0)  # [N+1, F, L]
    d0 = np.ascontiguousarray(d0[:n_windows].transpose(0, 2, 1))  # [N, L, F]
    base = d0[:, 0:1, :]  # [N, 1, F]
    zero_base = np.broadcast_to(base == 0, d0[:, 1:, :].shape)
    dr = np.zeros_like(d0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dr[:, 1:, :] = np.where(zero_base, 0.0, d0[:, 1:, :] / base - 1)

    split = round(0.9 * n_windows)
    train = dr[:split].copy()
    rng.shuffle(train)  # np.random.shuffle(training_data): along the window axis
    return {
        "X_train": train[:, :-1].astype(np.float32),  # [N_train, 49, F]
        "Y_train": train[:, -1, target].astype(np.float32),  # [N_train]
        "X_test": dr[split:, :-1].astype(np.float32),  # [N_test, 49, F]
        "Y_test": dr[split:, -1, target],  # [N_test]
        "Y_daybefore": dr[split:, -2, target],  # [N_test]
        "bases": d0[split:, 0, target],  # [N_test] for de-normalising to prices
        "zero_base_cells": int(zero_base.sum()),
        "n_windows": n_windows,
    }


def build_model(n_features: int, seq_len: int):
    """Tutorial step 2: the stacked bidirectional LSTM, linear head, MSE + Adam."""
    import keras
    from keras import layers

    model = keras.Sequential([
        keras.Input(shape=(seq_len, n_features)),
        layers.Bidirectional(layers.LSTM(HIDDEN[0], return_sequences=True)),
        layers.Dropout(DROPOUT),
        layers.Bidirectional(layers.LSTM(HIDDEN[1], return_sequences=True)),
        layers.Dropout(DROPOUT),
        layers.Bidirectional(layers.LSTM(HIDDEN[2], return_sequences=False)),
        layers.Dense(units=1),
        layers.Activation("linear"),
    ])
    model.compile(loss="mean_squared_error", optimizer="adam")
    return model


def epoch_timer():
    """A Keras callback recording wall seconds of every epoch (fit + validation)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self.cpu_seconds: list[float] = []  # process CPU time, all threads

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()
            self._cpu = time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)
            self.cpu_seconds.append(time.process_time() - self._cpu)

    return EpochTimer()


def direction_metrics(y_pred: np.ndarray, y_true: np.ndarray, daybefore: np.ndarray) -> dict:
    """Tutorial steps 5-8: price change, up/down, confusion counts, precision/recall/F1, MSE."""
    delta_pred = (y_pred - daybefore) / (1 + daybefore)
    delta_real = (y_true - daybefore) / (1 + daybefore)
    up_pred, up_real = delta_pred > 0, delta_real > 0
    tp = int(np.sum(up_real & up_pred))
    fn = int(np.sum(up_real & ~up_pred))
    tn = int(np.sum(~up_real & ~up_pred))
    fp = int(np.sum(~up_real & up_pred))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall else None)
    return {
        "test_mse": float(np.mean((y_pred - y_true) ** 2)),
        "test_mse_persistence": float(np.mean((daybefore - y_true) ** 2)),
        "precision": precision, "recall": recall, "f1": f1,
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def cpu_info() -> dict:
    """Model name and SIMD flags relevant to the speed comparison."""
    info = {"cpu_count": os.cpu_count(), "machine": platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            info["model"] = value.strip()
        elif key.strip() == "flags":
            flags = value.split()
            info["simd"] = [f for f in flags if f in {"avx", "avx2", "fma", "avx512f",
                            "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"}]
            break
    return info


def allocator() -> str:
    """The malloc this process runs on: a preloaded replacement's path, else the system's (glibc)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    for name in ("libmimalloc", "libjemalloc", "libtcmalloc"):
        if name in maps:
            return os.environ.get("LD_PRELOAD") or name
    return "glibc"


def _onednn_enabled() -> bool | None:
    """Whether TF runs its oneDNN (MKL) kernels: by default only on CPUs with AVX512_VNNI,
    AVX512_BF16 or AMX, or when TF_ENABLE_ONEDNN_OPTS=1. None if TF no longer tells."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CSV (may be .gz) of daily numeric columns")
    parser.add_argument("--target", default="20",
                        help="target column name or index among numeric columns (tutorial: 20)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results JSON here")
    parser.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity")
    parser.add_argument("--intra-op", type=int, default=0, help="TF intra-op threads (0: TF's default)")
    parser.add_argument("--inter-op", type=int, default=0, help="TF inter-op threads (0: TF's default)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    # before anything runs: TF fixes its thread pools when it first executes an op
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    import keras

    keras.utils.set_random_seed(args.seed)  # Python, numpy and TF
    frame = read_numeric_csv(args.data)
    target = resolve_target(list(frame.columns), args.target)
    data = load_data(frame.to_numpy(), target, np.random.default_rng(args.seed))
    x_train, y_train = data["X_train"], data["Y_train"]
    print(f"data {args.data}: {frame.shape[0]} rows x {frame.shape[1]} columns, "
          f"target {frame.columns[target]!r} (index {target})")
    print(f"train {x_train.shape}  test {data['X_test'].shape}")
    if data["zero_base_cells"]:
        print(f"note: {data['zero_base_cells']} cells had a zero window base, set to 0")

    n_features, seq_len = x_train.shape[2], x_train.shape[1]
    model = build_model(n_features, seq_len)
    timer = epoch_timer()
    load_before = os.getloadavg()  # other processes on the CPU make epochs noisy
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=BATCH_SIZE, epochs=args.epochs,
                        validation_split=VALIDATION_SPLIT, callbacks=[timer],
                        verbose=args.verbose)
    train_seconds = time.perf_counter() - start

    y_pred = model.predict(data["X_test"], batch_size=BATCH_SIZE, verbose=0)[:, 0]
    metrics = direction_metrics(y_pred.astype(np.float64), data["Y_test"], data["Y_daybefore"])
    real_pred = (y_pred + 1) * data["bases"]
    real_true = (data["Y_test"] + 1) * data["bases"]
    metrics["test_rmse_price"] = float(np.sqrt(np.mean((real_pred - real_true) ** 2)))

    # Keras' validation_split takes the last 10% of the (already shuffled) arrays.
    n_val = int(len(x_train) * VALIDATION_SPLIT)
    n_fit = len(x_train) - n_val
    seconds = timer.seconds
    median = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    counts = training_flops(n_features, seq_len, HIDDEN, bidirectional=True, cell="lstm")
    flops_epoch = epoch_flops(counts, n_fit, n_val, BATCH_SIZE)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    result = {
        "implementation": "keras",
        "data": args.data,
        "target": frame.columns[target],
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": BATCH_SIZE,
        "shapes": {"train": list(x_train.shape), "test": list(data["X_test"].shape)},
        "n_windows": data["n_windows"], "n_fit": n_fit, "n_val": n_val,
        "zero_base_cells": data["zero_base_cells"],
        "seconds_per_epoch": seconds,
        # CPU seconds per epoch: wall x cores when the process had the machine to itself;
        # much less means other processes took cores from it.
        "cpu_seconds_per_epoch": timer.cpu_seconds,
        "median_epoch_seconds": median,
        "first_epoch_seconds": seconds[0],
        "train_seconds": train_seconds,
        "windows_per_second": n_fit / median,
        "flops": {k: v for k, v in counts.items() if k != "layers"},
        "flops_per_epoch": flops_epoch,
        "achieved_gflops": flops_epoch / median / 1e9,
        "peak_rss_mib": peak_kib / 1024,
        "final_train_loss": float(history.history["loss"][-1]),
        "final_val_loss": float(history.history["val_loss"][-1]),
        "train_loss": [float(v) for v in history.history["loss"]],
        "val_loss": [float(v) for v in history.history["val_loss"]],
        **metrics,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "threads": {
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "note": "0 = TensorFlow's default (one pool sized to the visible cores)",
            "label": "TF default threads" if not (args.intra_op or args.inter_op)
            else f"intra-op {args.intra_op or 'default'}, inter-op {args.inter_op or 'default'}",
            "onednn": _onednn_enabled(),
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                    "TF_NUM_INTEROP_THREADS", "TF_ENABLE_ONEDNN_OPTS") if k in os.environ},
        },
        "cpu": cpu_info(),
        "allocator": allocator(),
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
    }
    print(f"{result['median_epoch_seconds']:.3f} s/epoch (median after first), "
          f"{result['windows_per_second']:.0f} windows/s, {result['achieved_gflops']:.1f} GFLOP/s, "
          f"total {train_seconds:.1f} s; val loss {result['final_val_loss']:.5f}, "
          f"test MSE {metrics['test_mse']:.5f}, F1 {metrics['f1']}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(out)
        print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
