"""The training loop, once: batches by index on the device, validation, early stopping.

Tensors are moved to the device once; each epoch draws a random permutation and slices
batches from it (no DataLoader: the arrays are in memory already). Each batch's gradients
come from `ShardedStep` (shards side by side, bf16 where native: models/step.py).
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from coincast.allocator import tune as tune_allocator
from coincast.config import TrainSettings
from coincast.models.step import ShardedStep, autocast_dtype


def seed_everything(seed: int) -> None:
    """One seed for Python, numpy and torch, so a CPU run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class History:
    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    best_epoch: int = 0  # 1-based epoch whose weights were kept
    stopped_early: bool = False

    @property
    def seconds(self) -> float:
        return float(sum(self.epoch_seconds))


def _loss_fn(name: str) -> nn.Module:
    return nn.HuberLoss(delta=1.0) if name == "huber" else nn.MSELoss()


def train(
    module: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    settings: TrainSettings,
    device: torch.device,
    progress: bool = False,
    on_epoch: Callable[[History], bool] | None = None,
    threads: int | None = None,
) -> History:
    """Fit `module` in place with Adam; with early stopping, restore the best weights.

    `on_epoch(history)` runs after each epoch; returning True stops training there.
    `threads` runs the shards of a batch on that many threads (None: one per core; 1: one
    after the other, the plain path). The result does not depend on it.
    """
    tune_allocator()  # once per process, on glibc: keep freed memory (coincast/allocator.py)
    module.to(device)
    Xt, yt = torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)  # [N, T, F], [N]
    Xv, yv = torch.as_tensor(X_val, device=device), torch.as_tensor(y_val, device=device)
    opt = torch.optim.Adam(module.parameters(), lr=settings.lr)
    loss_fn = _loss_fn(settings.loss)
    gen = torch.Generator().manual_seed(settings.seed)
    hist = History()
    best, best_state, waited = float("inf"), None, 0

    bar = Progress(
        TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[msg]}"), TimeElapsedColumn(), disable=not progress, transient=False,
    )
    step = ShardedStep(module, loss_fn, device, settings.shards, threads, autocast_dtype(settings.precision, device))
    with bar, step:
        task = bar.add_task("train", total=settings.epochs, msg="")
        for epoch in range(1, settings.epochs + 1):
            start = time.perf_counter()
            module.train()
            order = torch.randperm(len(Xt), generator=gen).to(device)
            total = 0.0
            for i in range(0, len(order), settings.batch_size):
                idx = order[i : i + settings.batch_size]
                total += step(Xt[idx], yt[idx], gen) * len(idx)  # sets each parameter's .grad
                opt.step()
            hist.loss.append(total / len(Xt))
            hist.val_loss.append(step.evaluate(Xv, yv, settings.batch_size))
            hist.epoch_seconds.append(time.perf_counter() - start)
            bar.update(task, advance=1, msg=f"loss {hist.loss[-1]:.5f}  val {hist.val_loss[-1]:.5f}")

            if hist.val_loss[-1] < best:
                best, waited, hist.best_epoch = hist.val_loss[-1], 0, epoch
                if settings.early_stopping:
                    best_state = copy.deepcopy(module.state_dict())
            elif settings.early_stopping:
                waited += 1
                if waited >= settings.patience:
                    hist.stopped_early = True
                    break
            if on_epoch is not None and on_epoch(hist):
                break
    if settings.early_stopping and best_state is not None:
        module.load_state_dict(best_state)
    else:
        hist.best_epoch = len(hist.loss)
    return hist
