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
from coincast.data.frame import bar_length
from coincast.errors import DataError, ModelFileError
from coincast.models.bilstm import BiLSTM
from coincast.models.shrinkage import fit_shrinkage, shrunk
from coincast.models.training import pick_device, seed_everything, train
from coincast.prep.inputs import Inputs, build_inputs, uses_extras
from coincast.prep.windows import (
    Normaliser,
    Windows,
    fill_zeros,
    gap_free,
    make_windows,
    split_train_val,
)

FORMAT = "coincast-forecaster/1"
Data = Inputs | pd.DataFrame  # the input contract of fit and predict: prebuilt Inputs or raw candles
MIN_TRAIN_WINDOWS = 10


def split_calibration(val: np.ndarray, fraction: float, selects: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(selection, calibration) positions of the validation windows.

    When early stopping or shrinkage choose anything on validation (`selects`), the latest
    `fraction` of the validation windows (in time) is kept apart for calibration only, so
    conformal residuals are measured on windows nothing was fitted on; the earlier part
    selects. Otherwise every validation window is already honest and calibrates (the
    selection part is then only the reported validation loss).
    """
    order = np.sort(val)
    if not selects:
        return val, order
    n_cal = min(int(round(len(order) * fraction)), len(order) - 1)
    return order[: len(order) - n_cal], order[len(order) - n_cal :]


class Forecaster:
    """The bidirectional LSTM forecaster; see `Settings` for every knob."""

    def __init__(self, settings: Settings | None = None):
        self.settings = copy.deepcopy(settings) if settings is not None else Settings()

    # -- fitting -----------------------------------------------------------------------
    def fit(
        self, data: Data | dict[str, Data], progress: bool = False, init: "Forecaster | None" = None,
    ) -> "Forecaster":
        """Train on every window whose target row lies in `data`.

        The input contract (the same for `predict`): `data` is either prebuilt `Inputs`
        (prep.inputs.build_inputs, or rows of them: `Inputs.rows`), used as they are, with their
        declared column rules, or raw candles, which `build_inputs` turns into Inputs once, as
        `settings.data` asks. A dict {asset: data} trains one network on the windows of several
        assets. Each asset's last `val_fraction` of windows validates (see `_split`). `init`: a
        fitted Forecaster on the same columns whose weights are the starting point (a warm
        refit); column rules and scales are still fitted on `data` alone.
        """
        s = validate(self.settings)
        items = data if isinstance(data, dict) else {"": data}
        built = {asset: self.as_inputs(d) for asset, d in items.items()}
        first = next(iter(built.values()))
        self.target_, self.columns_ = first.target, list(first.frame.columns)
        for asset, b in built.items():
            if list(b.frame.columns) != self.columns_:
                raise DataError(
                    f"assets must share columns: {asset} has {list(b.frame.columns)}, not {self.columns_}; "
                    "choose common ones with --features"
                )
        self.normaliser_ = Normaliser.fit(pd.concat([b.frame for b in built.values()]), self.target_, first.declared)
        self.step_ = bar_length(first.frame.index)
        parts, tr, va, sel, cal, offset, self.gap_dropped_ = [], [], [], [], [], 0, 0
        rng = np.random.default_rng(s.train.seed)
        selects = s.train.early_stopping or s.model.shrink
        for b in built.values():
            w, keep = self._windows(b.frame)
            self.gap_dropped_ += int((~keep).sum())
            if len(w) >= 2:  # an asset too short for a validation window adds nothing
                t, v = split_train_val(len(w), s.data.val_fraction, s.data.val_split, rng)
                pick, calib = split_calibration(v, s.data.calib_fraction, selects)
                parts.append(w)
                tr.append(t + offset)
                va.append(v + offset)
                sel.append(pick + offset)
                cal.append(calib + offset)
                offset += len(w)
        n_windows = offset
        if n_windows < MIN_TRAIN_WINDOWS:
            raise DataError(
                f"only {n_windows} training windows of {s.data.window} rows: give at least "
                f"{s.data.window + MIN_TRAIN_WINDOWS - 1} rows or a shorter --window"
            )
        if init is not None and init.columns_ != self.columns_:
            raise DataError(f"warm start needs the same columns: {init.columns_} vs {self.columns_}")
        w, tr, va = Windows.concat(parts), np.concatenate(tr), np.concatenate(va)
        sel, cal = np.concatenate(sel), np.concatenate(cal)
        one = len(built) == 1  # with several assets labels repeat: no label index
        self.val_index_ = w.index[np.sort(va)] if one else None  # every validation window
        self.select_index_ = w.index[np.sort(sel)] if one else None  # early stopping and shrinkage
        self.calib_index_ = w.index[cal] if one else None  # calibration only (conformal intervals)
        self.device_ = pick_device(s.train.device)
        self.train_shape_ = w.X.shape
        self.modules_, self.histories_ = [], []
        for k in range(s.train.seeds):
            seed = s.train.seed + k
            seed_everything(seed)
            module = self._build()
            if init is not None:
                module.load_state_dict(init.modules_[k % len(init.modules_)].state_dict())
            hist = train(module, w.X[tr], w.y[tr], w.X[sel], w.y[sel],
                         dataclasses.replace(s.train, seed=seed), self.device_, progress)
            self.modules_.append(module)
            self.histories_.append(hist)
        self.shrink_ = 1.0
        if s.model.shrink:
            val = w.take(sel)
            self.shrink_ = fit_shrinkage(val.actual, val.to_price(self._predict_norm(val.X)), val.prev)
        return self

    def inputs(self, frame: pd.DataFrame) -> Inputs:
        """The model's input columns built from raw candles, as `settings.data` asks."""
        d = self.settings.data
        return build_inputs(frame, d.target, d.features, d.exog, d.exog_max_age)

    def as_inputs(self, data: Data) -> Inputs:
        """Prebuilt Inputs as they are; raw candles built into Inputs (once)."""
        return data if isinstance(data, Inputs) else self.inputs(data)

    @property
    def history_(self):
        """The first network's training history (the one plotted)."""
        return self.histories_[0]

    def _build(self) -> BiLSTM:
        s = self.settings
        return BiLSTM(len(self.columns_), s.hidden_sizes(), s.model.dropout, s.model.cell, s.model.bidirectional)

    def _windows(self, frame: pd.DataFrame) -> tuple[Windows, np.ndarray]:
        """The frame's windows that span no time gap, and the [N] mask of those kept."""
        s = self.settings
        w = make_windows(frame, self.target_, s.data.window, self.normaliser_, s.model.target, s.model.scaling)
        keep = gap_free(frame.index, s.data.window, self.step_, s.data.max_gap)  # [N]
        return (w if keep.all() else w.take(keep)), keep

    # -- predicting --------------------------------------------------------------------
    def _prepare(self, frame: Data) -> pd.DataFrame:
        """The input columns the network was trained on: prebuilt Inputs' frame, or rebuilt from raw candles."""
        if isinstance(frame, Inputs):
            if list(frame.frame.columns) != self.columns_:
                raise DataError(f"the inputs have columns {list(frame.frame.columns)}, the model {self.columns_}; "
                                "build them with the model's settings")
            return frame.frame
        d = self.settings.data
        if uses_extras(d.features, d.exog, frame.columns):
            built = self.inputs(frame).frame
            if list(built.columns) == self.columns_:
                return built
            missing = [c for c in self.columns_ if c not in built.columns] or self.columns_
        else:
            missing = [c for c in self.columns_ if c not in frame.columns]
            if not missing:  # no column selection (a copy) when the columns are already the model's
                return fill_zeros(frame if frame.columns.tolist() == self.columns_ else frame[self.columns_])
        raise ModelFileError(
            f"the model was trained on columns {self.columns_} but the data lacks {missing}; "
            "give it data with the same columns (the dataset it was trained on)"
        )

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

    def predict(self, frame: Data, start=None, network: bool = False) -> pd.DataFrame:
        """Predicted price for each window in `frame` whose target label is >= `start`.

        `frame`: Inputs or raw candles, as for `fit`. Returns one row per target: actual,
        predicted, previous (last observed price) and base (the window's first price, which
        normalised errors are measured against); `network=True` adds the network's own
        forecast before shrinkage (`network`: what the look-ahead audit compares).
        """
        data = self._prepare(frame)
        w, keep = self._windows(data)
        labels = data.index[self.settings.data.window - 1 :]  # [N] target label of every window
        wanted = np.ones(len(keep), bool) if start is None else np.asarray(labels >= start)  # [N]
        if start is not None:
            w = w.take(np.asarray(w.index >= start))
        raw = w.to_price(self._predict_norm(w.X))
        out = pd.DataFrame(
            {"actual": w.actual, "predicted": shrunk(raw, w.prev, self.shrink_), "previous": w.prev, "base": w.base},
            index=w.index,
        )
        if network:
            out["network"] = raw
        out.attrs["gap_dropped"] = int((wanted & ~keep).sum())  # windows skipped: they span a gap
        return out

    def forecast_next(self, frame: pd.DataFrame, network: bool = False) -> dict:
        """Forecast the step after the last row of `frame` from its last window-1 rows.

        `network=True` adds `network_price`: the network's own forecast before shrinkage (what
        the live service shrinks with the a of its live record)."""
        L = self.settings.data.window
        data = self._prepare(frame)
        if len(data) < L - 1:
            raise DataError(f"need the last {L - 1} rows to forecast; the data has {len(data)}")
        if data.index[-1] != frame.index[-1]:
            raise DataError(
                f"the inputs end at {data.index[-1]}, before the data's last row {frame.index[-1]} (an "
                "exogenous series that is not up to date?); update it to forecast the next step"
            )
        tail = data.iloc[-(L - 1) :]
        if not gap_free(tail.index, L - 1, self.step_, self.settings.data.max_gap).all():
            raise DataError(
                f"the last {L - 1} rows span a time gap longer than {self.settings.data.max_gap} steps; "
                "the model never saw such windows: fill the missing candles (coincast fetch) or wait"
            )
        # Append a placeholder target row so the usual windowing applies; its value is unused.
        values = tail.to_numpy()  # [L-1, F]
        padded = pd.DataFrame(np.vstack([values, values[-1:]]), columns=tail.columns)  # [L, F]
        w = make_windows(padded, self.target_, L, self.normaliser_, self.settings.model.target, self.settings.model.scaling)
        raw = w.to_price(self._predict_norm(w.X))  # [1] before shrinkage
        last = float(w.prev[0])
        price = float(shrunk(raw, w.prev, self.shrink_)[0])
        when = frame.index[-1] + self.step_ if isinstance(frame.index, pd.DatetimeIndex) else len(frame)
        out = {
            "date": when.isoformat() if hasattr(when, "isoformat") else int(when),
            "last_price": last,
            "predicted_price": price,
            "change_pct": 100.0 * (price - last) / last,
            "direction": "up" if price > last else "down" if price < last else "flat",
        }
        if network:
            out["network_price"] = float(raw[0])
        return out

    # -- persistence -------------------------------------------------------------------
    def _meta(self) -> dict:
        """model.json: everything besides the weights needed to rebuild the forecaster."""
        return {
            "format": FORMAT,
            "settings": self.settings.to_dict(),
            "target": self.target_,
            "columns": self.columns_,
            "normaliser": self.normaliser_.to_dict(),
            "shrink": self.shrink_,
            "networks": len(self.modules_),
            "step": str(self.step_) if self.step_ is not None else None,
        }

    def _weights(self) -> dict[str, torch.Tensor]:
        return {
            f"{k}.{name}": v.detach().cpu().contiguous()
            for k, module in enumerate(self.modules_)
            for name, v in module.state_dict().items()
        }

    def save(self, folder: str | Path) -> None:
        """Write model.safetensors and model.json (everything needed to rebuild), atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        io.write_bytes(folder / "model.safetensors", save_safetensors(self._weights()))
        io.write_json(folder / "model.json", self._meta())

    def to_bytes(self) -> bytes:
        """The whole model as one safetensors blob (model.json's contents in its metadata): how
        a fold's model travels back from a worker process or a Ray task."""
        return save_safetensors(self._weights(), metadata={"model.json": json.dumps(self._meta())})

    @classmethod
    def from_bytes(cls, blob: bytes) -> "Forecaster":
        """The model `to_bytes` wrote."""
        n = int.from_bytes(blob[:8], "little")  # safetensors: u64 header length, then a JSON header
        meta = json.loads(json.loads(blob[8 : 8 + n])["__metadata__"]["model.json"])
        return cls._from_meta(meta)._with_weights(load_safetensors(blob))

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
            self = cls._from_meta(json.loads(meta_path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{meta_path} is corrupt ({exc}); retrain with `coincast run`") from None
        try:
            return self._with_weights(load_safetensors(weights_path.read_bytes()))
        except (SafetensorError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:160]
            raise ModelFileError(f"{weights_path} is corrupt or truncated ({first}); retrain with `coincast run`") from None

    @classmethod
    def _from_meta(cls, meta: dict) -> "Forecaster":
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
        self = cls(Settings.from_dict(meta["settings"]))
        self.target_, self.columns_ = meta["target"], meta["columns"]
        n = meta["normaliser"]
        self.normaliser_ = Normaliser(n["columns"], n["rules"], n["scales"], n.get("centers"))
        self.shrink_, self.networks_ = float(meta["shrink"]), int(meta["networks"])
        self.step_ = pd.Timedelta(meta["step"]) if meta.get("step") else None
        self.device_ = pick_device(self.settings.train.device)
        return self

    def _with_weights(self, state: dict[str, torch.Tensor]) -> "Forecaster":
        self.modules_ = []
        for k in range(self.networks_):
            module = self._build()
            module.load_state_dict({name[len(f"{k}.") :]: v for name, v in state.items() if name.startswith(f"{k}.")})
            self.modules_.append(module.to(self.device_))
        return self

