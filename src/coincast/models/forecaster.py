"""`Forecaster`: fit / predict / save / load around the network.

Estimator shape: the constructor only stores settings, `fit` returns self, learned state
ends in `_`. Everything fitted (column rules, scales, weights, early stopping) sees only
the frame given to `fit`, so a walk-forward evaluator can refit it per fold without leaks.
"""

from __future__ import annotations

import copy
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
        seed_everything(s.train.seed)
        self.target_, self.columns_ = target, list(frame.columns)
        self.normaliser_ = Normaliser.fit(frame, target)
        w = self._windows(frame)
        if len(w) < MIN_TRAIN_WINDOWS:
            raise DataError(
                f"only {len(w)} training windows of {s.data.window} rows: give at least "
                f"{s.data.window + MIN_TRAIN_WINDOWS - 1} rows or a shorter --window"
            )
        rng = np.random.default_rng(s.train.seed)
        tr, va = split_train_val(len(w), s.data.val_fraction, s.data.val_split, rng)
        self.device_ = pick_device(s.train.device)
        self.module_ = self._build()
        if init is not None:
            if init.columns_ != self.columns_:
                raise DataError(f"warm start needs the same columns: {init.columns_} vs {self.columns_}")
            self.module_.load_state_dict(init.module_.state_dict())
        self.train_shape_ = w.X.shape
        self.history_ = train(self.module_, w.X[tr], w.y[tr], w.X[va], w.y[va], s.train, self.device_, progress)
        self.step_ = _step(frame.index)
        return self

    def _build(self) -> BiLSTM:
        s = self.settings
        return BiLSTM(len(self.columns_), s.hidden_sizes(), s.model.dropout, s.model.cell, s.model.bidirectional)

    def _windows(self, frame: pd.DataFrame) -> Windows:
        s = self.settings
        return make_windows(frame, self.target_, s.data.window, self.normaliser_, s.model.target)

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
        self.module_.eval()
        Xt = torch.as_tensor(X, device=self.device_)  # [N, L-1, F]
        out = [self.module_(Xt[i : i + 4096]) for i in range(0, len(Xt), 4096)]
        return torch.cat(out).cpu().numpy() if out else np.zeros(0, dtype=np.float32)

    def predict(self, frame: pd.DataFrame, start=None) -> pd.DataFrame:
        """Predicted price for each window in `frame` whose target label is >= `start`.

        Returns one row per target: actual, predicted, previous (last observed price) and
        base (the window's first price, which normalised errors are measured against).
        """
        w = self._windows(self._prepare(frame))
        if start is not None:
            keep = np.asarray(w.index >= start)
            w = Windows(w.X[keep], w.y[keep], w.base[keep], w.prev[keep], w.actual[keep], w.index[keep], w.target_mode)
        pred = w.to_price(self._predict_norm(w.X))
        return pd.DataFrame(
            {"actual": w.actual, "predicted": pred, "previous": w.prev, "base": w.base}, index=w.index
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
        price = float(w.to_price(self._predict_norm(w.X))[0])
        last = float(w.prev[0])
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
        weights = {k: v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}
        io.write_bytes(folder / "model.safetensors", save_safetensors(weights))
        io.write_json(folder / "model.json", {
            "format": FORMAT,
            "settings": self.settings.to_dict(),
            "target": self.target_,
            "columns": self.columns_,
            "normaliser": self.normaliser_.to_dict(),
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
            self.step_ = pd.Timedelta(meta["step"]) if meta.get("step") else None
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{meta_path} is corrupt ({exc}); retrain with `coincast run`") from None
        self.device_ = pick_device(self.settings.train.device)
        self.module_ = self._build()
        try:
            state = load_safetensors(weights_path.read_bytes())
            self.module_.load_state_dict(state)
        except (SafetensorError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:160]
            raise ModelFileError(f"{weights_path} is corrupt or truncated ({first}); retrain with `coincast run`") from None
        self.module_.to(self.device_)
        return self


def _step(index: pd.Index):
    """The typical spacing of rows (a Timedelta), used to date the next-step forecast."""
    if isinstance(index, pd.DatetimeIndex) and len(index) > 1:
        return pd.Series(index).diff().median()
    return None
