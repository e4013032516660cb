"""The network's risk head of a live model: trained with the point model, saved beside it.

The backtest's served risk model is the first of models/risk_walk.SERVED_MODELS the data support,
network_har or network where the data have the pooled distribution head's history
(models/risk_network.NetworkRisk; `NetworkRisk().min_history` returns). Its first fit takes
about a second on one core for three years of one market and more with a longer history and a
larger pool, too long for the loop the forecasts run in, so it is part of the training job (`live/worker.py` `train_job`, in the worker
process, on the retraining schedule): fitted on the candles the point model trains on and written
into the model's folder (risk_network.safetensors and .json, and head.json: the candles it saw).
The service loads it from there (`load`; also after a restart) and never fits it (`live/risk.py`).

A warm training (the stream's `refit = "warm"`, a champion with a head) continues from the
champion's head as the backtest's walk does from fold to fold: the champion's head forecasts each
day since its last fit, each from the data through the day before (what the service served from
it), then `fit` scores those forecasts into its calibration record and refits GARCH, HAR and the
calibration, the network's weights frozen. So the network is trained by a stream's first
training, a `fresh` one, one whose champion has no head or a head fitted on other candles
(head.json's first and last candle must be the data's), and one whose pool offers a market the
champion's did not (a stream added to the config; on a new store, the streams ahead in the
config train their first model before the others have fetched: their second training pools them).

The pool is the other daily markets the config streams (their stored candles, sent with the job):
they keep current as time goes on, while the bundled coins the backtest pools end 2026-01-05, and
a pooled coin without rows on the stream's recent days would be left out (NetworkRisk pools only
coins without gaps). Streams step in turn, so another market may not have stored the newest
candle yet when this one trains: each is pooled through its own newest candle (the head trains on
pooled days before its calibration tail only). A daily-only config of one market trains the head
on its own windows alone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from coincast import io
from coincast.evaluation.risk import LEVELS
from coincast.models.risk_network import NetworkRisk
from coincast.models.risk_walk import percent_returns, pooled_returns

if TYPE_CHECKING:
    from coincast.live.service import Service, StreamState

FILE = "risk_network"  # NetworkRisk.save's files in the model folder
META = "head.json"  # the candles the head saw (first and last return day, how many), the pool's markets


def job(service: Service, st: StreamState) -> tuple[dict | None, dict]:
    """(the head's settings for the training job, or None: no head; the pool's candles by market).
    The settings are never empty: {"epochs": None} is NetworkRisk's own epoch limit."""
    s = st.stream
    if s.bar != pd.Timedelta(days=1) or not s.risk.head:
        return None, {}
    exchange, symbol, _ = s.market
    others = {}
    for o in service.states:
        market = o.stream.market
        if o.stream.bar == s.bar and market[:2] != (exchange, symbol) and service.store.last_open_time(*market) is not None:
            others.setdefault(f"{market[0]}/{market[1]}", service.store.candles(*market))
    return {"epochs": s.risk.head_epochs}, others


def pool(candles: pd.DataFrame, others: dict[str, pd.DataFrame]) -> dict[str, tuple]:
    """The head's pool: each other market's returns and Garman-Klass variances on the days of
    `candles`' returns (models/risk_walk.pooled_returns), through its own newest candle."""
    out = {}
    for name, (r, gk) in pooled_returns(candles, others).items():
        have = ~np.isnan(r)
        end = len(r) - int(np.argmax(have[::-1])) if have.any() else 0  # after its newest return
        out[name] = (r[:end], gk[:end])
    return out


def train(job: dict, candles: pd.DataFrame) -> dict | None:
    """Fit (or continue) the head on `candles` and write it into `job['staging']`; its figures
    (None: the job has no head; `trained` false: too little history). Runs in the worker."""
    settings = job.get("head")
    if not settings:
        return None
    start = time.perf_counter()
    r, gk, index = percent_returns(candles)
    others = job.get("pool") or {}
    head = _continued(job.get("init"), r, gk, index, sorted(others))
    warm = head is not None
    if head is None:
        head = NetworkRisk(**({"max_epochs": settings["epochs"]} if settings["epochs"] else {}))
        if len(r) < head.min_history:
            return {"trained": False, "reason": f"the network's risk head needs {head.min_history} daily returns; "
                                                f"the stream has {len(r)}"}
        head.pool = pool(candles, others)
    head.fit(r, gk)
    staging = Path(job["staging"])
    head.save(staging, FILE)
    io.write_json(staging / META, {"first": index[0].isoformat(), "through": index[-1].isoformat(), "returns": len(r),
                                   "pool": sorted(others) if not warm else _meta(job["init"])["pool"]})
    return {"trained": True, "warm": warm, "best_epoch": head.epochs_, "pooled": head.pooled_, "record": head.info_["record"],
            "calibrated": head.info_["calibrated"], "seconds": time.perf_counter() - start}


def _meta(folder: str | Path) -> dict:
    return json.loads((Path(folder) / META).read_text())


def _continued(init: str | None, r: np.ndarray, gk: np.ndarray, index: pd.Index, offered: list[str]) -> NetworkRisk | None:
    """The champion's head in `init` with its forecasts of the days since its fit pending (None: no
    head there, one fitted on other candles, or one whose pool lacked a market `offered` now)."""
    if not init or not (Path(init) / META).exists():
        return None
    meta = _meta(init)
    done = meta["returns"]
    if not 0 < done <= len(r) or index[0] != pd.Timestamp(meta["first"]) or index[done - 1] != pd.Timestamp(meta["through"]):
        return None
    if set(offered) - set(meta["pool"]):
        return None
    head = NetworkRisk.load(init, FILE)
    if len(r) > done:  # the days done..n-1, each from the returns before it
        head.forecast(r[:-1], gk[:-1], done, LEVELS)
    return head


def load(folder: Path) -> NetworkRisk | None:
    """The model's head (None: its folder holds none); ModelFileError where its files are corrupt."""
    return NetworkRisk.load(folder, FILE) if (Path(folder) / META).exists() else None
