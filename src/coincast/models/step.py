"""One batch's loss and gradients: split into shards, run side by side, bf16 where native.

The fast path for training on a CPU (its measurements: BENCHMARKS.md, and "Speed" in
benchmarks/results/HISTORY.md):
- A batch is split into `shards` equal parts whose gradients add up to the batch's. oneDNN's
  recurrent kernels use two cores poorly (half a batch on one thread takes nearly as long as
  the whole batch on two), so each shard runs forward and backward on its own thread with one
  intra-op thread.
- Each shard draws its dropout masks from its own generator, seeded from the training
  generator, so a run repeats exactly and the shards give the same gradients whether they
  run side by side or one after the other (`threads=1`, the plain path).
- Under bf16 autocast (fp32 master weights, fp32 loss) where the hardware computes bf16
  natively: AVX-512 BF16/AMX CPUs (oneDNN then runs the recurrent layers on AMX tiles) and
  bf16 GPUs. Elsewhere bf16 would be emulated and slower, so `auto` stays fp32. On a CPU,
  layers of odd size then run one unit larger (models/padding.py: same function, faster).
  An explicit `bf16` on a CPU whose oneDNN has no bf16 recurrent kernels at all (AVX2 only, e.g.
  an AMD EPYC without AVX-512: "could not create a primitive descriptor") is a ConfigError
  before training, not a traceback in the first batch.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from coincast.errors import ConfigError
from coincast.models.padding import run_even


def native_bf16(device: torch.device) -> bool:
    """Does this device compute bf16 in hardware?"""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
    return False


@functools.cache
def cpu_runs_bf16_lstm() -> bool:
    """Can this CPU run an LSTM under bf16 autocast at all? Tried once on a 2-unit layer, whose
    initial weights come from a forked RNG: the caller's seeded stream is untouched."""
    try:
        with torch.random.fork_rng(), torch.autocast("cpu", dtype=torch.bfloat16):
            nn.LSTM(1, 2, batch_first=True)(torch.zeros(1, 2, 1))
    except RuntimeError:
        return False
    return True


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a `precision` setting (auto, fp32, bf16); None = plain fp32."""
    if precision == "bf16" and device.type == "cpu" and not cpu_runs_bf16_lstm():
        raise ConfigError("precision bf16: this CPU cannot run LSTM layers in bf16 (its oneDNN has no bf16 kernels "
                          "without AVX-512): use --precision auto or fp32")
    if precision == "bf16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


class ShardedStep:
    """Computes a batch's mean loss and sets every parameter's .grad to its gradient.

    Use as a context manager: it owns the worker threads and restores the caller's
    intra-op thread count when it closes.
    """

    def __init__(self, module: nn.Module, loss_fn: nn.Module, device: torch.device,
                 shards: int = 2, threads: int | None = None, dtype: torch.dtype | None = None):
        self.module, self.loss_fn, self.device, self.dtype = module, loss_fn, device, dtype
        self.run_layer = run_even if dtype == torch.bfloat16 and device.type == "cpu" else None
        self.params = [p for p in module.parameters() if p.requires_grad]
        # on a GPU one whole batch keeps the device busiest: no shards, no worker threads
        self.shards = max(1, shards) if device.type == "cpu" else 1
        self.caller_threads = torch.get_num_threads()
        if threads is None:  # one shard per core
            threads = min(self.shards, self.caller_threads)
        self.threads = max(1, min(threads, self.shards))
        per_thread = max(1, self.caller_threads // self.threads)
        self.pool = (ThreadPoolExecutor(self.threads, initializer=torch.set_num_threads, initargs=(per_thread,))
                     if self.threads > 1 else None)

    def __enter__(self) -> "ShardedStep":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        torch.set_num_threads(self.caller_threads)

    def _parts(self, X: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        n = min(self.shards, len(X))
        return list(zip(X.tensor_split(n), y.tensor_split(n)))

    def _map(self, fn, jobs: list) -> list:
        """fn(*job) for each job: side by side on the worker threads, or one after the other."""
        if self.pool is not None:
            return list(self.pool.map(lambda job: fn(*job), jobs))
        return [fn(*job) for job in jobs]

    def _gradients(self, X: torch.Tensor, y: torch.Tensor, seed: int, weight: float):
        """This shard's share of the batch mean loss, and its gradients."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            out = self.module(X, generator=gen, run_layer=self.run_layer)  # [b]
        loss = self.loss_fn(out.float(), y) * weight
        return float(loss.detach()), torch.autograd.grad(loss, self.params)

    @torch.no_grad()
    def _loss_sum(self, X: torch.Tensor, y: torch.Tensor) -> float:
        return float(self.loss_fn(self.module(X), y)) * len(y)  # fp32

    def __call__(self, X: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> float:
        """X: [B, T, F], y: [B]. Sets each parameter's .grad; returns the batch's mean loss."""
        parts = self._parts(X, y)
        seeds = torch.randint(2**62, (len(parts),), generator=gen).tolist()
        results = self._map(self._gradients, [(Xs, ys, s, len(ys) / len(y)) for (Xs, ys), s in zip(parts, seeds)])
        for k, p in enumerate(self.params):
            p.grad = sum(grads[k] for _, grads in results)
        return sum(loss for loss, _ in results)

    def evaluate(self, X: torch.Tensor, y: torch.Tensor, batch: int) -> float:
        """Mean loss of the module in eval mode over (X, y), in fp32. X: [N, T, F], y: [N]."""
        self.module.eval()
        total = 0.0
        for i in range(0, len(X), batch):
            total += sum(self._map(self._loss_sum, self._parts(X[i : i + batch], y[i : i + batch])))
        return total / max(len(X), 1)
