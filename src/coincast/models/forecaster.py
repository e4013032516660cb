"""`Forecaster`: fit / predict / save / load around the network.

Estimator shape: the constructor only stores settings, `fit` returns self, learned state
ends in `_`. Everything fitted (column rules, scales, weights, early stopping, shrinkage)
sees only the frame given to `fit`, so a walk-forward evaluator can refit it per fold
without leaks.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from coincast import io
from coincast.config import Settings, validate
from coincast.data.frame import select_columns
from coincast.errors import DataError, ModelFileError
from coincast.models.bilstm import BiLSTM
from coincast.models.training import pick_device, seed_everything, train
from coincast.windows import Normaliser, Windows, fill_zeros, make_windows, split_train_val

FORMAT = "coincast-forecaster/1"
MIN_TRAIN_WINDOWS = 10


def fit_shrinkage(actual: np.ndarray, model: np.ndarray, prev: np.ndarray) -> float:
    """Least-squares a in [0, 1] for prev + a * (model - prev), from validation windows only.

    a = 0 (persistence) when the model's moves do not line up with the real ones at all.
    """
    real, pred = actual / prev - 1.0, model / prev - 1.0  # relative moves
    denom = float(np.dot(pred, pred))
    return float(np.clip(np.dot(real, pred) / denom, 0.0, 1.0)) if denom > 0 else 0.0


class Forecaster:
    """The bidirectional LSTM forecaster; see `Settings` for every knob."""

    def __init__(self, settings: Settings | None = None):
        self.settings = copy.deepcopy(settings) if settings is not None else Settings()

    # -- fitting -----------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame, progress: bool = False, init: "Forecaster | None" = None) -> "Forecaster":
        """Train on every window whose target row lies in `frame`.

        `init`: a fitted Forecaster on the same columns whose weights are the starting point
        (a warm refit); column rules and scales are still fitted on `frame` alone.
        """
        s = validate(self.settings)
        frame, target = select_columns(frame, s.data.target, s.data.features)
        frame = fill_zeros(frame)
        self.target_, self.columns_ = target, list(frame.columns)
        self.normaliser_ = Normaliser.fit(frame, target)
        w = self._windows(frame)
        if len(w) < MIN_TRAIN_WINDOWS:
            raise DataError(
                f"only {len(w)} training windows of {s.data.window} rows: give at least "
                f"{s.data.window + MIN_TRAIN_WINDOWS - 1} rows or a shorter --window"
            )
        if init is not None and init.columns_ != self.columns_:
            raise DataError(f"warm start needs the same columns: {init.columns_} vs {self.columns_}")
        tr, va = split_train_val(len(w), s.data.val_fraction, s.data.val_split, np.random.default_rng(s.train.seed))
        self.device_ = pick_device(s.train.device)
        self.train_shape_ = w.X.shape
        self.modules_, self.histories_ = [], []
        for k in range(s.train.seeds):
            seed = s.train.seed + k
            seed_everything(seed)
            module = self._build()
            if init is not None:
                module.load_state_dict(init.modules_[k % len(init.modules_)].state_dict())
            hist = train(module, w.X[tr], w.y[tr], w.X[va], w.y[va],
                         dataclasses.replace(s.train, seed=seed), self.device_, progress)
            self.modules_.append(module)
            self.histories_.append(hist)
        self.shrink_ = 1.0
        if s.model.shrink:
            val = w.take(va)
            self.shrink_ = fit_shrinkage(val.actual, val.to_price(self._predict_norm(val.X)), val.prev)
        self.step_ = _step(frame.index)
        return self

    @property
    def history_(self):
        """The first network's training history (the one plotted)."""
        return self.histories_[0]

    def _build(self) -> BiLSTM:
        s = self.settings
        return BiLSTM(len(self.columns_), s.hidden_sizes(), s.model.dropout, s.model.cell, s.model.bidirectional)

    def _windows(self, frame: pd.DataFrame) -> Windows:
        s = self.settings
        return make_windows(frame, self.target_, s.data.window, self.normaliser_, s.model.target, s.model.scaling)

    # -- predicting --------------------------------------------------------------------
    def _prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.columns_ if c not in frame.columns]
        if missing:
            raise ModelFileError(
                f"the model was trained on columns {self.columns_} but the data lacks {missing}; "
                "give it data with the same columns (the dataset it was trained on)"
            )
        return fill_zeros(frame[self.columns_])

    @torch.no_grad()
    def _predict_norm(self, X: np.ndarray) -> np.ndarray:
        """The networks' mean output for each window."""
        Xt = torch.as_tensor(X, device=self.device_)  # [N, L-1, F]
        total = np.zeros(len(X), dtype=np.float64)
        for module in self.modules_:
            module.eval()
            for i in range(0, len(Xt), 4096):
                total[i : i + 4096] += module(Xt[i : i + 4096]).double().cpu().numpy()  # [b]
        return total / len(self.modules_)

    def _to_price(self, w: Windows) -> np.ndarray:
        price = w.to_price(self._predict_norm(w.X))
        return w.prev + self.shrink_ * (price - w.prev)

    def predict(self, frame: pd.DataFrame, start=None) -> pd.DataFrame:
        """Predicted price for each window in `frame` whose target label is >= `start`.

        Returns one row per target: actual, predicted, previous (last observed price) and
        base (the window's first price, which normalised errors are measured against).
        """
        w = self._windows(self._prepare(frame))
        if start is not None:
            w = w.take(np.asarray(w.index >= start))
        return pd.DataFrame(
            {"actual": w.actual, "predicted": self._to_price(w), "previous": w.prev, "base": w.base}, index=w.index
        )

    def forecast_next(self, frame: pd.DataFrame) -> dict:
        """Forecast the step after the last row of `frame` from its last window-1 rows."""
        L = self.settings.data.window
        data = self._prepare(frame)
        if len(data) < L - 1:
            raise DataError(f"need the last {L - 1} rows to forecast; the data has {len(data)}")
        # Append a placeholder target row so the usual windowing applies; its value is unused.
        tail = data.iloc[-(L - 1) :]
        padded = pd.concat([tail, tail.iloc[-1:]])
        padded.index = pd.RangeIndex(len(padded))
        w = self._windows(padded)
        price, last = float(self._to_price(w)[0]), float(w.prev[0])
        when = frame.index[-1] + self.step_ if isinstance(frame.index, pd.DatetimeIndex) else len(frame)
        return {
            "date": when.isoformat() if hasattr(when, "isoformat") else int(when),
            "last_price": last,
            "predicted_price": price,
            "change_pct": 100.0 * (price - last) / last,
            "direction": "up" if price > last else "down",
        }

    # -- persistence -------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """Write model.safetensors and model.json (everything needed to rebuild), atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        weights = {
            f"{k}.{name}": v.detach().cpu().contiguous()
            for k, module in enumerate(self.modules_)
            for name, v in module.state_dict().items()
        }
        io.write_bytes(folder / "model.safetensors", save_safetensors(weights))
        io.write_json(folder / "model.json", {
            "format": FORMAT,
            "settings": self.settings.to_dict(),
            "target": self.target_,
            "columns": self.columns_,
            "normaliser": self.normaliser_.to_dict(),
            "shrink": self.shrink_,
            "networks": len(self.modules_),
            "step": str(self.step_) if self.step_ is not None else None,
        })

    @classmethod
    def load(cls, folder: str | Path) -> "Forecaster":
        folder = Path(folder)
        meta_path, weights_path = folder / "model.json", folder / "model.safetensors"
        if not meta_path.exists() or not weights_path.exists():
            raise ModelFileError(
                f"no model in {folder}: expected model.json and model.safetensors, as written by "
                "`coincast run` into its run folder"
            )
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}")
            self = cls(Settings.from_dict(meta["settings"]))
            self.target_, self.columns_ = meta["target"], meta["columns"]
            n = meta["normaliser"]
            self.normaliser_ = Normaliser(n["columns"], n["rules"], n["scales"])
            self.shrink_, n_networks = float(meta["shrink"]), int(meta["networks"])
            self.step_ = pd.Timedelta(meta["step"]) if meta.get("step") else None
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{meta_path} is corrupt ({exc}); retrain with `coincast run`") from None
        self.device_ = pick_device(self.settings.train.device)
        try:
            state = load_safetensors(weights_path.read_bytes())
            self.modules_ = []
            for k in range(n_networks):
                module = self._build()
                module.load_state_dict({name[len(f"{k}.") :]: v for name, v in state.items() if name.startswith(f"{k}.")})
                self.modules_.append(module.to(self.device_))
        except (SafetensorError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:160]
            raise ModelFileError(f"{weights_path} is corrupt or truncated ({first}); retrain with `coincast run`") from None
        return self


def _step(index: pd.Index):
    """The typical spacing of rows (a Timedelta), used to date the next-step forecast."""
    if isinstance(index, pd.DatetimeIndex) and len(index) > 1:
        return pd.Series(index).diff().median()
    return None
