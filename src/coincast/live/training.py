"""Phase 3 of a stream's step: hand trainings to the worker process and collect them.

A training starts when `retrain_every` candles have closed since the data of the stream's last
training (failed ones count: a failure is retried on schedule, not at once), when the stream has
no champion yet, or by hand (`force`). One challenger at a time per stream, one job at a time in
the worker (streams queue for it). It is warm (from the champion's weights) or fresh as the
stream's `refit` says, and so is a daily stream's network risk head (`live/head.py`: the job's
`head` and `pool`). It has a time limit: the stream's `train_timeout`, or a default from the
stream's size (`live.worker.default_timeout`). A finished training is registered as the
stream's champion if it has none, else as the challenger in shadow; a failed one (it raised,
its process died or ran past its limit, or its files cannot be moved into place) is recorded
with its reason.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pandas as pd

from coincast.live import head
from coincast.live.config import Stream
from coincast.live.registry import utc
from coincast.live.worker import default_timeout

if TYPE_CHECKING:
    from coincast.live.service import Service, StreamState


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
    """Start a training if one is due (or `force`d: by hand) and none is running; its model id."""
    s, now, reg = st.stream, service.clock.now(), service.reg
    if service.worker.busy or any(reg.with_status(s.name, k) is not None for k in ("training", "shadow")):
        return None
    champion = reg.with_status(s.name, "champion")
    due = next_retrain(service, st)
    if not force and champion is not None and due is not None and last < due:
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
        with service.clock.held():
            collect(service, block=True)
    return model_id


def collect(service: Service, block: bool = False) -> None:
    """Register the worker's finished training, if there is one (`block`: wait for it)."""
    result = service.worker.wait() if block else service.worker.poll()
    if result is None:
        return
    reg, model_id = service.reg, result["id"]
    st = service.jobs.pop(model_id)
    name, now = st.stream.name, service.clock.now()
    first = reg.with_status(name, "champion") is None
    fig = result.get("figures")
    if result["ok"]:
        try:
            with reg.transaction():  # registered and recorded together (the files move first)
                reg.finish_model(model_id, fig, "champion" if first else "shadow")
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
    service.log(st, f"model {model_id} trained in {fig['seconds']:.1f} s ({fig['epochs_run']} epochs, "
                    f"{fig['windows']} windows{with_head}): {role}")
