"""The training worker: one long-lived spawned process, at lower priority, that trains models.

The service hands it one job at a time (settings, candles, an optional warm-start model and
the staging folder to write; for a daily stream the network's risk head's settings and pool,
`live/head.py`) and polls for the result, so forecasting never waits for a
training. A training that raises comes back as a failure with its reason; a worker that dies
(killed, out of memory) is noticed by `poll`, reported as a failure, and started afresh for the
next job. A training that outlives its time limit (a hung one) is ended with its process and
reported as a failure too; the next job gets a fresh process. A service killed outright
(SIGKILL) takes its worker with it (Linux), so no orphaned training runs on.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Callable

NICE = 10  # how much lower the worker's priority is than the service's
# A training's default time limit: ten minutes to start, plus 20 ms per candle and epoch (the
# settings' epochs: early stopping only ends it sooner), about four times what the default
# network needs on one core of a busy 2-core Xeon. A stream sets its own with train_timeout.
TIMEOUT_BASE_S = 600.0
TIMEOUT_PER_CANDLE_EPOCH_S = 0.02


def default_timeout(candles: int, epochs: int) -> float:
    """Seconds a training on `candles` candles for at most `epochs` epochs may take."""
    return TIMEOUT_BASE_S + TIMEOUT_PER_CANDLE_EPOCH_S * candles * epochs


def duration(seconds: float) -> str:
    """60 s, 10 min, 2.5 h: a time limit as a person reads it."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def train_job(job: dict) -> dict:
    """Train one model and write it to `job['staging']`; returns its figures (runs in the worker).

    With `job['head']` (daily streams, [stream.risk] head on) the network's risk head is trained
    (or continued from the one in `job['init']`) on the same candles, pooled with `job['pool']`'s,
    and written beside the point model (`live/head.py`); its figures are `risk_head`."""
    import numpy as np

    from coincast.config import Settings
    from coincast.evaluation import conformal
    from coincast.models.forecaster import Forecaster

    start = time.perf_counter()
    frame, settings = job["candles"], Settings.from_dict(job["settings"])
    init = Forecaster.load(job["init"]) if job.get("init") else None
    f = Forecaster(settings).fit(frame, init=init)
    labels = f.calib_index_
    q = {}
    if labels is not None and len(labels):
        val = f.predict(frame, start=labels.min()).loc[labels]
        scores = conformal.scores(val["actual"], val["predicted"], val["previous"])
        q = {f"q{round(100 * level)}": conformal.quantile(scores, level) for level in conformal.LEVELS}
    f.save(Path(job["staging"]))
    risk_head = None
    if job.get("head"):  # imported only then: the risk models' libraries (arch, scipy) take seconds to load
        from coincast.live import head

        risk_head = head.train(job, frame)
    h = f.history_
    return {
        "candles": len(frame), "windows": int(f.train_shape_[0]), "warm": init is not None,
        "epochs_run": len(h.loss), "best_epoch": h.best_epoch,
        "train_loss": float(h.loss[-1]), "val_loss": float(np.min(h.val_loss)) if len(h.val_loss) else None,
        # the a of its own validation windows (what `coincast run` would use); the service serves
        # the a of the stream's live record instead (live/skill.py)
        "validation_shrink": f.shrink_, "calib_windows": 0 if labels is None else len(labels), **q,
        "risk_head": risk_head, "seconds": time.perf_counter() - start,
    }


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when the service dies, even by SIGKILL (Linux's
    PR_SET_PDEATHSIG); elsewhere the broken pipe ends it after the training in progress."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the service died before the request took effect
        os._exit(1)


def _serve(conn, threads: int | None, parent: int | None = None) -> None:
    """The worker's loop: receive a job, train, send back {'ok': ..., ...}; None ends it."""
    if parent is not None:
        _die_with(parent)
    # Ctrl-C reaches the whole process group: the service decides when the worker ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(NICE)
    import torch

    if threads:
        torch.set_num_threads(threads)
    while True:
        job = conn.recv()
        if job is None:
            return
        try:
            result = {"ok": True, "id": job["id"], "figures": train_job(job)}
        except Exception as exc:  # any failure of a training is reported, never fatal to the service
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            result = {"ok": False, "id": job["id"], "reason": last[:300]}
        conn.send(result)


class Worker:
    """The service's handle on the training process (started on first use)."""

    capacity = 1  # trainings at once (live/training.py); Ray's executor runs more

    def __init__(self, threads: int | None = None, clock: Callable[[], float] = time.monotonic):
        self.threads = threads
        self.clock = clock  # seconds, for time limits (real time: a training takes real time)
        self.proc = None
        self.conn = None
        self.job_id: str | None = None  # the job in progress
        self.started = 0.0
        self.timeout_s: float | None = None  # the job's time limit

    @property
    def busy(self) -> bool:
        return self.job_id is not None

    def start(self) -> None:
        """Start the process if it is not running (spawn: a fresh interpreter, nothing inherited)."""
        if self.proc is None or not self.proc.is_alive():
            ctx = multiprocessing.get_context("spawn")
            self.conn, child = ctx.Pipe()
            self.proc = ctx.Process(target=_serve, args=(child, self.threads, os.getpid()), daemon=True, name="coincast-train")
            self.proc.start()
            child.close()

    def submit(self, job: dict, timeout_s: float | None = None) -> None:
        """Hand `job` to the process; past `timeout_s` seconds (None: no limit) it is ended."""
        self.start()
        self.conn.send(job)
        self.job_id, self.started, self.timeout_s = job["id"], self.clock(), timeout_s

    def poll(self, timeout: float = 0.0) -> dict | None:
        """The finished job's result, a failure if the process died or the job ran past its
        time limit (the process is then ended), or None while it trains."""
        if self.job_id is None:
            return None
        if self.timeout_s is not None and self.clock() - self.started > self.timeout_s:
            failed = self.job_id
            self._end()
            return {"ok": False, "id": failed, "reason": f"the training did not finish within its time limit of "
                                                         f"{duration(self.timeout_s)} (train_timeout); its process was ended"}
        try:
            if self.conn.poll(timeout):
                result = self.conn.recv()
                self.job_id = None
                return result
        except (EOFError, OSError):
            pass  # the pipe broke: the process died
        if self.proc.is_alive():
            return None
        self.proc.join()
        code, failed = self.proc.exitcode, self.job_id
        self.proc, self.job_id = None, None
        return {"ok": False, "id": failed,
                "reason": f"the training process died (exit code {code}: killed or out of memory)"}

    def wait(self) -> dict | None:
        """Block until the job in progress ends (simulated clocks: training takes no simulated time)."""
        while self.busy:
            result = self.poll(timeout=0.5)
            if result is not None:
                return result
        return None

    def stop(self) -> None:
        """End the process; a training in progress is abandoned (its row is discarded at the next start)."""
        if self.proc is not None and self.proc.is_alive() and not self.busy:
            self.conn.send(None)
            self.proc.join(timeout=5)
        self._end()

    def _end(self) -> None:
        """Terminate the process (killed if it does not end within 5 s); no job in progress after."""
        if self.proc is not None and self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        if self.conn is not None:
            self.conn.close()
        self.proc, self.conn, self.job_id = None, None, None
