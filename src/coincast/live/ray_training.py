"""Trainings as Ray tasks: the live service's executor for `[service] executor = "ray"`.

The same role as `live/worker.Worker` (submit a job, poll for its result, time limits), for
several trainings at once: up to the cluster's CPUs / `threads` run side by side (`capacity`).
Each is a Ray task of `threads` CPUs that runs `worker.train_job` into a staging folder of its
own on its node and returns that folder's files as bytes (model.safetensors, model.json and
whatever else the training writes) with the figures and the node id; a warm start's files
travel to the task the same way, so no node needs the service's disk. The service writes the
files into its own staging folder and registers the model as with the local worker: it stays
the store's only writer, and `<store>.models/` never holds a partial model folder.

A task lost with its node or its worker process (killed, out of memory) is retried by Ray up to
`retries` times, then reported as a failed training with the reason; a training that raises is
reported with its last line, as the worker does; one past its time limit is cancelled
(`ray.cancel(force=True)` kills its worker process) and reported as failed.

Ray is imported only when this executor starts. Without an address a Ray instance is started
for the service on 127.0.0.1 with this machine's CPUs (as backtest/executors.py does for a run)
and shut down with it; with one (`auto`, HOST:PORT) the service joins that cluster and leaves it
running. A process already connected to Ray (tests, a user's own `ray.init`) runs the tasks there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from coincast.backtest import executors
from coincast.live.worker import duration, train_job

RETRIES = 3  # times Ray reruns a training whose node or worker process died


def read_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by its path relative to it."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _last_line(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()[:300]


def _train(fn: Callable[[dict], dict], job: dict, threads: int) -> dict:
    """One training in a Ray worker: `fn(job)` into a temporary folder, its files back as bytes."""
    import ray
    import torch

    torch.set_num_threads(threads)
    node = ray.get_runtime_context().get_node_id()
    with tempfile.TemporaryDirectory(prefix="coincast-train-") as tmp:
        init = None
        if job["init_files"]:
            init = Path(tmp) / "init"
            write_files(init, job["init_files"])
        staging = Path(tmp) / "model"
        try:
            figures = fn({**job, "init": None if init is None else str(init), "staging": str(staging)})
        except Exception as exc:  # a failed training is reported with its reason, as the worker does
            return {"ok": False, "id": job["id"], "reason": _last_line(exc), "node": node}
        return {"ok": True, "id": job["id"], "figures": figures, "files": read_files(staging), "node": node}


@dataclass
class Running:
    id: str
    staging: Path  # the service's staging folder for it
    started: float
    timeout_s: float | None


class RayTrainer:
    """The service's handle on its trainings as Ray tasks (Ray started or joined on first use).

    `fn`: the training (`worker.train_job`; tests pass one that waits for a node to be killed).
    `clock`: seconds, for time limits (real time: a training takes real time)."""

    def __init__(self, address: str | None = None, threads: int = 1, retries: int = RETRIES,
                 fn: Callable[[dict], dict] = train_job, clock: Callable[[], float] = time.monotonic):
        self.address, self.threads, self.retries, self.fn, self.clock = address, threads, retries, fn, clock
        self.running: dict = {}  # ObjectRef -> Running
        self.ray = None
        self.owned = False  # Ray was started for the service: shut down with it

    @property
    def busy(self) -> bool:
        return bool(self.running)

    @property
    def capacity(self) -> int:
        """How many trainings may run at once: the cluster's CPUs / threads per training (at least 1)."""
        self.start()
        return max(1, int(self.ray.cluster_resources().get("CPU", 0) // self.threads))

    def start(self) -> None:
        if self.ray is not None:
            return
        ex = executors.Executor("ray", jobs=max(1, (os.cpu_count() or 1) // self.threads), address=self.address,
                                threads=self.threads)
        ray = executors._import_ray(ex)
        self.owned = not ray.is_initialized()
        if self.owned:
            executors._start(ray, ex)
        self._task = ray.remote(max_retries=self.retries, retry_exceptions=False)(_train)
        self.ray = ray

    def submit(self, job: dict, timeout_s: float | None = None) -> None:
        """Start `job` (worker.train_job's: its `init` folder's files are sent along); past
        `timeout_s` seconds (None: no limit) it is cancelled."""
        self.start()
        sent = {k: v for k, v in job.items() if k not in ("init", "staging")}
        sent["init_files"] = read_files(Path(job["init"])) if job.get("init") else None
        ref = self._task.options(num_cpus=self.threads).remote(self.fn, sent, self.threads)
        self.running[ref] = Running(job["id"], Path(job["staging"]), self.clock(), timeout_s)

    def poll(self, timeout: float = 0.0) -> dict | None:
        """One finished training's result (its files written to its staging folder), a failure
        (it raised, its task was lost past its retries, or it ran past its time limit: then it is
        cancelled), or None while all train."""
        if not self.running:
            return None
        for ref, r in list(self.running.items()):
            if r.timeout_s is not None and self.clock() - r.started > r.timeout_s:
                del self.running[ref]
                self.ray.cancel(ref, force=True)
                return {"ok": False, "id": r.id, "reason": f"the training did not finish within its time limit of "
                                                           f"{duration(r.timeout_s)} (train_timeout); its Ray task was cancelled"}
        ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=timeout)
        if not ready:
            return None
        r = self.running.pop(ready[0])
        try:
            result = self.ray.get(ready[0])
        except self.ray.exceptions.RayTaskError as exc:
            return {"ok": False, "id": r.id, "reason": _last_line(exc.cause or exc)}
        except self.ray.exceptions.RayError as exc:  # its node or worker died, retries spent
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            return {"ok": False, "id": r.id, "reason": f"the Ray task was lost after {self.retries} retries "
                                                       f"({type(exc).__name__}: {first})"}
        if result["ok"]:
            try:
                write_files(r.staging, result.pop("files"))
            except OSError as exc:
                shutil.rmtree(r.staging, ignore_errors=True)
                return {"ok": False, "id": r.id, "reason": f"its files could not be written to {r.staging} ({exc})"}
        return result

    def wait(self) -> dict | None:
        """Block until one training ends (simulated clocks: training takes no simulated time)."""
        while self.running:
            result = self.poll(timeout=0.5)
            if result is not None:
                return result
        return None

    def stop(self) -> None:
        """Cancel the trainings in progress (their rows are discarded at the next start); shut
        down a Ray instance started for the service."""
        if self.ray is None:
            return
        for ref in self.running:
            self.ray.cancel(ref, force=True)
        self.running.clear()
        if self.owned:
            self.ray.shutdown()
        self.ray = None
