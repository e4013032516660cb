"""The network's risk forecast: quantiles of the next daily log return from models/risk_net.py.

It is an estimator with the risk baselines' steps (models/risk_baselines.py: settings in
`__init__`, `fit` returns self, learned state ends in `_`), so models/risk_walk.py walks it with
the same folds and it is scored beside them. A fit continues from the previous one (the walk's
folds: the network trained once, the calibration record growing); a fresh instance starts over.

- `fit(r, gk)` with the returns r [C] and Garman-Klass variances gk [C] (percent, percent^2) before
  the fold's cut. It refits its own GARCH(1,1)-t (warm-started, as the baseline), whose volatility
  s[t] and mean mu put every input and target in units of the day's forecast volatility, and its
  own HAR-t (the baseline's regression on the 1/7/30-day Garman-Klass averages). The network's
  base distribution for day t is the two fits' quantiles blended level by level, HAR-t with weight
  `har_weight` (0 is GARCH-t alone). The first fit trains the network from that start on every
  window before a calibration tail (the last `calibration` days), early-stopping on a selection
  tail just before it (the `selection` days before the calibration tail), and forecasts the
  calibration tail out of sample: the calibration record starts there. With a `pool` (other coins'
  returns on the same days: models/risk_walk.pooled_returns) it trains and early-stops on their
  windows of the same dates too, each coin standardised by its own GARCH-t and HAR-t fitted on its
  returns before the cut; the calibration uses the coin's own forecasts only. Later fits keep the
  network as it is (frozen) and refit GARCH, HAR and the calibration only. What was chosen on
  which period, and what lost, is in BENCHMARKS.md ("The network's risk forecast: what was chosen
  on which period").
- Calibration (conformalised quantile regression, one shift per level as in Romano et al. 2019's
  asymmetric form): on the record of the last `record` out-of-sample forecasts whose days are
  before the cut (the calibration tail, then each fold's own forecasts once their days are
  known), the level-tau quantile is moved by `shrink` times the tau-quantile of its residuals
  y - z in standardised units, then the row is sorted (monotone again). No shift until
  `min_record` forecasts are scored. A shrink below 1 keeps the shift from following its record's
  noise.
- `forecast(r, gk, first, tau)` -> [n + 1 - first, K]: mu + s[t] z[t] for t = first..n, each from
  the window of the `window` days before t.
- `save(folder)` / `NetworkRisk.load(folder)`: risk_network.safetensors (the network's weights and
  every learned array, float64 kept) and risk_network.json (settings and learned scalars); no
  pickle. The pool is data and is not saved: a loaded head continues as later fits do (network
  frozen), which needs no pool, and forecasts exactly what the saved one did.
- `variance(r, gk, first)` -> [n + 1 - first]: GARCH's variance s[t]^2 times the ratio of the
  variances of z[t] and of GARCH-t's unit-variance t, both read on the 1..99% quantiles (so the
  tails beyond them are GARCH-t's shape).

Inputs of day j in the window of target day t: (r[j] - mu) / s[t], sqrt(gk[j]) / s[t] and
ln(s[j] / s[t]): returns, ranges and GARCH's volatility path relative to the day's forecast. With
`realized=True` (hourly candles: the walk's realized measures rm, the pool's too) also
sqrt(RV[j]) / s[t], sqrt(RS-[j]) / s[t] and sqrt(BV[j]) / s[t], and the base blends HAR-RV's
quantiles in place of HAR-t's (benchmarks/results/intraday_risk/SUMMARY.md has what it scored on
the tuning periods).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from coincast import io
from coincast.errors import DataError, ModelFileError
from coincast.evaluation.risk import LEVELS, crps_columns
from coincast.models.risk_baselines import GarchT, HarRV, HarT, std_t_ppf
from coincast.models.risk_net import RiskNet

REALIZED_INPUTS = ("rv", "rs_neg", "bv")  # with realized=True: sqrt of each, in units of the day's volatility
FORMAT = 1  # the saved head's layout (save/load)
FITS = {c.__name__: c for c in (GarchT, HarT, HarRV)}  # the classes of its own GARCH and HAR fits


def one_thread(method):
    """Run `method` in one torch thread, the caller's count restored after (also on an error):
    batches of 64 windows of 30 days are too small for more threads to help, and a second thread
    on a busy machine slows them down many times (benchmarks/results/intraday_risk/SUMMARY.md)."""
    @functools.wraps(method)
    def wrapped(*args, **kwargs):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return method(*args, **kwargs)
        finally:
            torch.set_num_threads(before)
    return wrapped


class NetworkRisk:
    name = "network"
    tau = LEVELS  # [K] the levels it is trained on and forecasts

    def __init__(self, window: int = 30, hidden: int = 16, calibration: int = 250, selection: int = 250,
                 max_epochs: int = 40, patience: int = 5, record: int = 365, min_record: int = 100,
                 lr: float = 1e-3, batch: int = 64, seed: int = 0, har_weight: float = 0.5, shrink: float = 0.5,
                 pool: dict[str, tuple] | None = None, realized: bool = False):
        self.window, self.hidden, self.calibration, self.selection = window, hidden, calibration, selection
        self.max_epochs, self.patience = max_epochs, patience
        self.record, self.min_record, self.lr, self.batch, self.seed = record, min_record, lr, batch, seed
        self.har_weight, self.shrink = har_weight, shrink
        self.pool = pool  # other coins' (r, gk[, rm]) [T] by name, on this coin's days (NaN where they have none)
        self.realized = realized  # realized measures in the inputs and HAR-RV in the base (needs rm)

    @property
    def min_history(self) -> int:
        """Returns before the cut: GARCH's history, then windows for training, selection and calibration."""
        return GarchT.min_history + self.window + 2 * self.selection + self.calibration

    # -- the base distribution and the windows ------------------------------------------------

    def _base(self, gk: np.ndarray, s: np.ndarray, mu: float, days: np.ndarray, rm=None) -> torch.Tensor:
        """[D, K] The base quantiles of each day in `days` in units of GARCH's volatility: GARCH-t's
        and HAR-t's (the fold's fits) blended level by level, HAR-t with weight `har_weight`."""
        garch = std_t_ppf(self.tau, self.garch_.params_[4])[None, :]  # [1, K]
        first = max(self.har_.windows)  # the first day HAR forecasts
        h = np.full((len(s), len(self.tau)), np.nan)  # [n + 1, K] HAR-t quantiles of each day (returns)
        h[first:] = self.har_.forecast(None, gk, first, self.tau, rm=rm)
        har = (h[days] - mu) / s[days][:, None]  # [D, K] standardised
        return torch.tensor((1 - self.har_weight) * garch + self.har_weight * har, dtype=torch.float32)

    def _sigma(self, r: np.ndarray) -> tuple[float, np.ndarray]:
        """(mu, s [n + 1]): GARCH's mean and the volatility of each day t = 0..n given r[:t]."""
        return float(self.garch_.params_[0]), np.sqrt(self.garch_.variance(r, None, 0))

    def _windows(self, r: np.ndarray, gk: np.ndarray, s: np.ndarray, mu: float, days: np.ndarray, rm=None) -> torch.Tensor:
        """[D, L, F] the inputs of each target day in `days` (each at least `window`)."""
        idx = days[:, None] - self.window + np.arange(self.window)[None, :]  # [D, L] the days before each target
        st = s[days][:, None]  # [D, 1]
        x = [(r[idx] - mu) / st, np.sqrt(np.maximum(gk[idx], 0.0)) / st, np.log(s[idx] / st)]
        if self.realized:  # realized volatility, its downside part and the jump-robust one, in the day's units
            x += [np.sqrt(rm[m][idx]) / st for m in REALIZED_INPUTS]
        return torch.tensor(np.stack(x, axis=-1), dtype=torch.float32)

    # -- fit ----------------------------------------------------------------------------------

    def fit(self, r: np.ndarray, gk: np.ndarray, rm=None) -> "NetworkRisk":
        r, gk = np.asarray(r, float), np.asarray(gk, float)
        if self.realized and rm is None:
            raise ValueError("the network with realized=True needs the realized measures of hourly candles (rm)")
        n = len(r)
        first_fit = getattr(self, "net_", None) is None
        if first_fit:
            self.garch_, self.har_ = GarchT(), (HarRV() if self.realized else HarT())
            self.pending_: dict[int, tuple[float, float, np.ndarray]] = {}  # day -> (mu, s, z [K]) not yet scored
            self.residuals_: list[np.ndarray] = []  # [K] y - z of each scored out-of-sample forecast, in day order
        self._score_pending(r)
        self.garch_.fit(r, gk)
        self.har_.fit(r, gk, rm)
        mu, s = self._sigma(r)
        if first_fit:
            self._first_fit(r, gk, s, mu, rm)
        self.shift_ = self._calibration()  # [K] the calibration's shifts (standardised units), or None
        self.info_ = {"epochs": self.epochs_, "record": min(len(self.residuals_), self.record),
                      "calibrated": self.shift_ is not None, "nu": self.garch_.info_["nu"]}
        return self

    def _first_fit(self, r: np.ndarray, gk: np.ndarray, s: np.ndarray, mu: float, rm=None) -> None:
        """Train the network (own windows and the pool's) and score it on the calibration tail."""
        n = len(r)
        tail = n - self.calibration  # first day of the calibration tail
        pick = tail - self.selection  # first day of the selection tail
        first = self.window + GarchT.min_history  # the first day trained on
        if pick - first < self.selection:
            raise DataError(f"the network's risk head needs {self.min_history} returns before its first fold; "
                            f"the data have {n}: start the walk later")
        with torch.random.fork_rng():  # the LSTM's initial weights from the seed, the caller's RNG untouched
            torch.manual_seed(self.seed)
            features = 3 + (len(REALIZED_INPUTS) if self.realized else 0)
            net = RiskNet(features, len(self.tau), int(np.argmin(np.abs(self.tau - 0.5))), self.hidden)
        self.spans_ = {"train": (first, pick), "selection": (pick, tail), "calibration": (tail, n)}  # days [from, to)
        train = [self._data(r, gk, s, mu, np.arange(first, pick), rm)]
        select = [self._data(r, gk, s, mu, np.arange(pick, tail), rm)]
        self.pooled_ = {"own": pick - first}  # the training windows: own, then each pooled coin's used
        for name, other in (self.pool or {}).items():
            if self.realized and len(other) < 3:
                continue  # no realized measures for this coin
            part = self._pool_data(*other[:2], n, pick, tail, other[2] if self.realized else None)
            if part is not None:
                train.append(part[0])
                select.append(part[1])
                self.pooled_[name] = len(part[0][2])
        self.net_ = net
        self.epochs_ = self._train(*(tuple(torch.cat(parts) for parts in zip(*data)) for data in (train, select)))
        days = np.arange(tail, n)
        z = self._z(*self._inputs(r, gk, s, mu, days, rm))  # [C, K] out of sample: trained before the tail
        self.residuals_.extend(list((r[days] - mu)[:, None] / s[days][:, None] - z))

    def _inputs(self, r, gk, s, mu, days, rm=None) -> tuple[torch.Tensor, torch.Tensor]:
        """([D, L, F] windows, [D, K] base quantiles) of the target days `days`."""
        return self._windows(r, gk, s, mu, days, rm), self._base(gk, s, mu, days, rm)

    def _data(self, r, gk, s, mu, days, rm=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(windows, base, [D] standardised targets) of the target days `days`."""
        return *self._inputs(r, gk, s, mu, days, rm), torch.tensor((r[days] - mu) / s[days], dtype=torch.float32)

    def _pool_data(self, r: np.ndarray, gk: np.ndarray, n: int, pick: int, tail: int, rm=None):
        """(training data, selection data) of one pooled coin, whose returns r and variances gk are on
        this coin's days (NaN where it has none): from its rows before the cut n, the target days of
        the same dates as this coin's training and selection days, standardised by the coin's own
        GARCH-t and HAR-t fitted on those rows. None where it has gaps or too little history."""
        r, gk = np.asarray(r, float)[:n], np.asarray(gk, float)[:n]  # [n] before the cut
        if len(r) < tail:  # it ends before the calibration tail (a shorter array than the data's)
            return None
        have = ~(np.isnan(r) | np.isnan(gk))  # [n]
        if rm is not None:
            rm = rm[:n]
            have &= ~np.isnan(rm["rv"])
        start = int(np.argmax(have))  # its first day
        if not have.any() or not have[start:].all():
            return None
        r, gk = r[start:], gk[start:]
        rm = None if rm is None else rm[start:]
        first = self.window + GarchT.min_history  # its first day trained on
        if pick - start < first:  # it starts too late for a day before the selection tail
            return None
        other = NetworkRisk(window=self.window, har_weight=self.har_weight, realized=self.realized)  # its own base
        other.garch_ = GarchT().fit(r, gk)
        other.har_ = (HarRV() if self.realized else HarT()).fit(r, gk, rm)
        mu, s = other._sigma(r)
        return (other._data(r, gk, s, mu, np.arange(first, pick - start), rm),
                other._data(r, gk, s, mu, np.arange(pick - start, tail - start), rm))

    @one_thread
    def _train(self, train, select) -> int:
        """Adam on the mean pinball loss over the levels and the batch, early-stopping on `select`
        (the best weights kept). Returns the best epoch (0: the start, the base quantiles)."""
        tau = torch.tensor(self.tau, dtype=torch.float32)[None, :]  # [1, K]
        generator = torch.Generator().manual_seed(self.seed)  # the batches' order

        def loss(x: torch.Tensor, base: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            e = y[:, None] - self.net_(x, base)  # [B, K]
            return torch.maximum(tau * e, (tau - 1) * e).mean()

        def selection_loss() -> float:
            self.net_.eval()
            with torch.no_grad():
                return float(loss(*select))

        def weights() -> dict:
            return {k: v.clone() for k, v in self.net_.state_dict().items()}

        x, base, y = train
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
        best, best_epoch, state = selection_loss(), 0, weights()
        for epoch in range(1, self.max_epochs + 1):
            self.net_.train()
            order = torch.randperm(len(y), generator=generator)
            for i in range(0, len(y), self.batch):
                b = order[i : i + self.batch]
                opt.zero_grad()
                loss(x[b], base[b], y[b]).backward()
                opt.step()
            current = selection_loss()
            if current < best:
                best, best_epoch, state = current, epoch, weights()
            elif epoch - best_epoch >= self.patience:
                break
        self.net_.load_state_dict(state)
        return best_epoch

    # -- calibration --------------------------------------------------------------------------

    def _score_pending(self, r: np.ndarray) -> None:
        """Move the forecasts whose days are now known (before len(r)) into the record."""
        for t in sorted(d for d in self.pending_ if d < len(r)):
            mu, s, z = self.pending_.pop(t)
            self.residuals_.append((r[t] - mu) / s - z)

    def _calibration(self) -> np.ndarray | None:
        """[K] The conformal shift of each level from the last `record` residuals, or None."""
        if len(self.residuals_) < self.min_record:
            return None
        return self.shrink * conformal_shifts(np.array(self.residuals_[-self.record :]), self.tau)

    # -- forecast -----------------------------------------------------------------------------

    @one_thread
    def _z(self, x: torch.Tensor, base: torch.Tensor) -> np.ndarray:
        self.net_.eval()
        with torch.no_grad():
            return self.net_(x, base).numpy().astype(float)  # [D, K]

    def _standardised(self, r: np.ndarray, gk: np.ndarray, first: int, rm=None):
        """(mu, s [n + 1], days [D], z [D, K] before calibration) of the days first..n."""
        r, gk = np.asarray(r, float), np.asarray(gk, float)
        mu, s = self._sigma(r)
        days = np.arange(first, len(r) + 1)  # [D] the last is the day after the data
        return mu, s, days, self._z(*self._inputs(r, gk, s, mu, days, rm))  # z: windows end the day before each

    def _calibrated(self, z: np.ndarray) -> np.ndarray:
        return z if self.shift_ is None else np.sort(z + self.shift_[None, :], axis=1)

    def forecast(self, r: np.ndarray, gk: np.ndarray, first: int, tau, rm=None) -> np.ndarray:
        if not np.array_equal(np.asarray(tau, float), self.tau):
            raise ValueError("the risk network forecasts the levels it was trained on (evaluation.risk.LEVELS)")
        mu, s, days, z = self._standardised(r, gk, first, rm)
        for t, zt in zip(days, z):
            self.pending_[int(t)] = (mu, float(s[t]), zt)
        return mu + s[days][:, None] * self._calibrated(z)  # [D, K]

    def variance(self, r: np.ndarray, gk: np.ndarray, first: int, rm=None) -> np.ndarray:
        _, s, days, z = self._standardised(r, gk, first, rm)
        grid = crps_columns(self.tau)  # the 1..99% columns
        ratio = self._calibrated(z)[:, grid].var(axis=1) / std_t_ppf(self.tau[grid], self.garch_.params_[4]).var()
        return s[days] ** 2 * ratio  # [D]

    # -- save and load ------------------------------------------------------------------------

    SETTINGS = ("window", "hidden", "calibration", "selection", "max_epochs", "patience", "record", "min_record",
                "lr", "batch", "seed", "har_weight", "shrink", "realized")  # __init__'s, but the pool (data)

    def save(self, folder: str | Path, name: str = "risk_network") -> None:
        """Write <name>.safetensors (the network's weights and every learned array) and <name>.json
        (settings and learned scalars) into `folder`, each atomically."""
        if getattr(self, "net_", None) is None:
            raise ValueError("fit the network's risk head before saving it")
        k = len(self.tau)
        days = sorted(self.pending_)
        arrays = {"residuals": np.array(self.residuals_, float).reshape(-1, k),
                  "pending_days": np.array(days, np.int64),
                  "pending_mu": np.array([self.pending_[d][0] for d in days], float),
                  "pending_s": np.array([self.pending_[d][1] for d in days], float),
                  "pending_z": np.array([self.pending_[d][2] for d in days], float).reshape(-1, k)}
        if self.shift_ is not None:
            arrays["shift"] = self.shift_
        fits = {}
        for part in ("garch_", "har_"):
            est = getattr(self, part)
            own = {a: v for a, v in vars(est).items() if isinstance(v, np.ndarray)}
            fits[part] = {"class": type(est).__name__, "state": {a: v for a, v in vars(est).items() if a not in own}}
            arrays.update({f"{part}.{a}": v for a, v in own.items()})
        tensors = {f"net.{a}": v.detach().contiguous() for a, v in self.net_.state_dict().items()}
        tensors.update({a: torch.from_numpy(np.array(v)) for a, v in arrays.items()})  # copies: writable, contiguous
        meta = {"format": FORMAT, "settings": {a: getattr(self, a) for a in self.SETTINGS},
                "features": self.net_.lstm.input_size, "epochs": self.epochs_, "spans": self.spans_,
                "pooled": self.pooled_, "info": self.info_, "fits": fits}
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        io.write_bytes(folder / f"{name}.safetensors", save_safetensors(tensors))
        io.write_json(folder / f"{name}.json", meta)

    @classmethod
    def load(cls, folder: str | Path, name: str = "risk_network") -> "NetworkRisk":
        """The head `save` wrote into `folder` (ModelFileError: missing or corrupt files)."""
        meta_path, weights_path = Path(folder) / f"{name}.json", Path(folder) / f"{name}.safetensors"
        if not meta_path.exists() or not weights_path.exists():
            raise ModelFileError(f"no risk head in {folder}: expected {meta_path.name} and {weights_path.name}")
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, not {FORMAT}")
            state = load_safetensors(weights_path.read_bytes())
            self = cls(**meta["settings"])
            with torch.random.fork_rng():  # its initial weights are replaced: the caller's RNG untouched
                net = RiskNet(meta["features"], len(self.tau), int(np.argmin(np.abs(self.tau - 0.5))), self.hidden)
            net.load_state_dict({a[4:]: v for a, v in state.items() if a.startswith("net.")})
            self.net_ = net
            array = {a: v.numpy() for a, v in state.items() if not a.startswith("net.")}
            for part, fit in meta["fits"].items():
                est = FITS[fit["class"]].__new__(FITS[fit["class"]])
                est.__dict__.update({a: tuple(v) if isinstance(v, list) else v for a, v in fit["state"].items()})
                est.__dict__.update({a[len(part) + 1 :]: v for a, v in array.items() if a.startswith(part + ".")})
                setattr(self, part, est)
            self.residuals_ = list(array["residuals"])
            self.pending_ = {int(d): (float(mu), float(s), z) for d, mu, s, z in
                             zip(array["pending_days"], array["pending_mu"], array["pending_s"], array["pending_z"])}
            self.shift_ = array.get("shift")
            self.epochs_, self.pooled_, self.info_ = meta["epochs"], meta["pooled"], meta["info"]
            self.spans_ = {a: tuple(v) for a, v in meta["spans"].items()}
        except (SafetensorError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"the risk head in {folder} is corrupt or truncated ({first}); retrain the model") from None
        return self


def conformal_shifts(residuals: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """[K] For residuals y - z [n, K] of n out-of-sample forecasts, the shift of each level tau: the
    tau-quantile of that level's residuals (numpy's linear interpolation), so that a tau share of
    them falls below z + shift."""
    r = np.asarray(residuals, float)  # [n, K]
    return np.array([np.quantile(r[:, k], t) for k, t in enumerate(np.asarray(tau, float))])  # [K]
