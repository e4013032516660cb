"""Phase 3 of a stream's step: hand trainings to the executor and collect them.

The executor (`executor`: the `[service]` table's) is the local worker process
(`live/worker.py`, one training at a time) or Ray tasks (`live/ray_training.py`, as many at once
as the cluster's CPUs allow); both take a job and give back its result, the model's files in
the job's staging folder, and neither ever writes the store.

A training starts when `retrain_every` candles have closed since the data of the stream's last
training (failed ones count: a failure is retried on schedule, not at once), when the stream has
no champion yet, or by hand (`force`). One training at a time per stream, up to the executor's
`capacity` at once (streams queue for a free place). It is warm (from the champion's weights)
or fresh as the stream's `refit` says, and so is a daily stream's network risk head
(`live/head.py`: the job's `head` and `pool`). It has a time limit: the stream's `train_timeout`, or
a default from the stream's size (`live.worker.default_timeout`). A finished training is
registered as the stream's champion if it has none, else as the challenger in shadow; a failed
one (it raised, its process or Ray task died or ran past its limit, or its files cannot be
moved into place) is recorded with its reason. The model row records the Ray node the training ran on (`node`).

`hold` (simulated clocks, `Service`): a held training takes no simulated time. It is collected
with the clock held once the executor is full (the local worker: at once, before the stream
forecasts) and at the end of the pass at the latest, so a replay is the same whichever node
trains faster.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pandas as pd

from coincast.live import head
from coincast.live.config import ServiceSettings, Stream
from coincast.live.worker import Worker, default_timeout

if TYPE_CHECKING:
    from coincast.live.service import Service, StreamState


def executor(svc: ServiceSettings, threads: int | None = None):
    """The service's trainings executor (`threads`: the local worker's torch threads instead of the config's)."""
    if svc.executor == "ray":
        from coincast.live.ray_training import RayTrainer  # Ray is imported only when asked for

        return RayTrainer(svc.ray_address, svc.threads_per_task)
    return Worker(threads or svc.threads_per_task)


def next_retrain(service: Service, st: StreamState) -> pd.Timestamp | None:
    """Open time of the last candle the stream's next scheduled training will see (None: no model yet)."""
    through = service.reg.trained_through(st.stream.name)
    return None if through is None else through + st.stream.retrain_every * st.stream.bar


def train_timeout(s: Stream, candles: int) -> float:
    """Seconds a training of the stream on `candles` candles may take."""
    if s.train_timeout is not None:
        return pd.Timedelta(s.train_timeout).total_seconds()
    return default_timeout(candles, s.settings.train.epochs)


def train(service: Service, st: StreamState, last: pd.Timestamp, force: bool = False) -> str | None:
    """Start a training if one is due (or `force`d: by hand), the stream has none running and the
    executor has room; its model id."""
    s, now, reg = st.stream, service.clock.now(), service.reg
    if any(reg.with_status(s.name, k) is not None for k in ("training", "shadow")):
        return None
    champion = reg.with_status(s.name, "champion")
    due = next_retrain(service, st)
    if not force and champion is not None and due is not None and last < due:
        return None
    if len(service.jobs) >= service.worker.capacity:  # no room: tried again at the stream's next step
        return None
    candles = service.store.candles(*s.market)
    warm = s.refit == "warm" and champion is not None
    model_id = reg.new_model(s.name, now, last, s.settings.to_dict())
    service.jobs[model_id] = st
    risk_head, pool = head.job(service, st)
    service.worker.submit({"id": model_id, "settings": s.settings.to_dict(), "candles": candles,
                           "init": str(reg.folder(champion["id"])) if warm else None,
                           "staging": str(reg.staging(model_id)), "head": risk_head, "pool": pool},
                          train_timeout(s, len(candles)))
    kind = "first model" if champion is None else f"challenger to {champion['id']}, {'warm' if warm else 'fresh'}"
    kind += ", by hand" if force else ""
    service.log(st, f"training {model_id} on {len(candles)} candles through {last:%Y-%m-%d %H:%M} ({kind})")
    if service.hold == "all" or (service.hold == "first" and champion is None):
        service.held.add(model_id)
        if len(service.jobs) >= service.worker.capacity:
            collect(service, block=True)
    return model_id


def collect(service: Service, block: bool = False) -> None:
    """Register every finished training (`block`: first wait, the clock held, for the held ones)."""
    if block and service.held:
        with service.clock.held():
            while service.held:
                result = service.worker.wait()
                if result is None:  # nothing running any more (cannot happen while a held job runs)
                    service.held.clear()
                    break
                _register(service, result)
    while (result := service.worker.poll()) is not None:
        _register(service, result)


def _register(service: Service, result: dict) -> None:
    """A finished training as the stream's champion or shadow, or recorded as failed."""
    reg, model_id = service.reg, result["id"]
    service.held.discard(model_id)
    st = service.jobs.pop(model_id)
    name, now = st.stream.name, service.clock.now()
    first = reg.with_status(name, "champion") is None
    fig = result.get("figures")
    if result["ok"]:
        try:
            with reg.transaction():  # registered and recorded together (the files move first)
                reg.finish_model(model_id, fig, "champion" if first else "shadow", result.get("node"))
                if first:
                    reg.decide(name, now, "first", model_id, figures=fig, reason="the stream's first model: nothing to compare with")
        except OSError as exc:  # its staging folder is gone or cannot be moved: a failed training
            result = {"ok": False, "reason": f"its files could not be moved into place ({exc})"}
    if not result["ok"]:
        with reg.transaction():
            reg.set_status(model_id, "failed")
            reg.decide(name, now, "failure", model_id, reason=result["reason"])
        service.log(st, f"training {model_id} FAILED: {result['reason']}", logging.ERROR)
        return
    role = "champion (first model)" if first else f"shadow for the next {st.stream.shadow} candles"
    h = fig.get("risk_head") or {}
    how = "continued" if h.get("warm") else f"trained, best epoch {h.get('best_epoch')}"
    with_head = f"; risk head {how}" if h.get("trained") else f"; no risk head: {h['reason']}" if h else ""
    where = f" on node {result['node'][:8]}" if result.get("node") else ""
    service.log(st, f"model {model_id} trained in {fig['seconds']:.1f} s{where} ({fig['epochs_run']} epochs, "
                    f"{fig['windows']} windows{with_head}): {role}")
