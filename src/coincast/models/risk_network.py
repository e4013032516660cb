"""The network's risk forecast: quantiles of the next daily log return from models/risk_net.py.

It has the risk baselines' two steps (models/risk_baselines.py), so models/risk_walk.py walks it
with the same folds, and it is scored beside them:

- `fit(r, gk)` with the returns r [C] and Garman-Klass variances gk [C] (percent, percent^2) before
  the fold's cut. It refits its own GARCH(1,1)-t (warm-started, as the baseline), whose volatility
  s[t] and mean mu put every input and target in units of the day's forecast volatility, and its
  own HAR-t (the baseline's regression on the 1/7/30-day Garman-Klass averages). The network's
  base distribution for day t is the two fits' quantiles blended level by level, HAR-t with weight
  `har_weight` (0.5; 0 is GARCH-t alone). The first fit trains the network from that start on every
  window before a calibration tail (the last `calibration` days), early-stopping on a selection
  tail just before it (the `selection` days before the calibration tail), and forecasts the
  calibration tail out of sample: the calibration record starts there. With a `pool` (other coins'
  returns on the same days: models/risk_walk.pooled_returns) it trains and early-stops on their
  windows of the same dates too, each coin standardised by its own GARCH-t and HAR-t fitted on its
  returns before the cut; on the two tuning periods this pooled head scored below the one trained on
  its own coin on 9 of 10 coin-periods (BENCHMARKS.md). The calibration uses the coin's own
  forecasts only. Later fits keep the network
  as it is (frozen) and refit GARCH, HAR and the calibration only: on the six coins' 730 days
  before `make skill`'s test period, warm refits (2 epochs a fold on the last 365 windows, without
  a selection tail) scored worse than GARCH-t and the frozen network did not (BENCHMARKS.md).
- Calibration (conformalised quantile regression, one shift per level as in Romano et al. 2019's
  asymmetric form): on the record of the last `record` out-of-sample forecasts whose days are
  before the cut (the calibration tail, then each fold's own forecasts once their days are
  known), the level-tau quantile is moved by `shrink` (0.5) times the tau-quantile of its
  residuals y - z in standardised units, then the row is sorted (monotone again). No shift until
  `min_record` forecasts are scored. The full shift (shrink 1) calibrates the record's coverage
  but follows its noise: on 2021 (four coins) it lost to GARCH-t on three where half the shift
  lost on none (BENCHMARKS.md, "what was chosen on which period"). The split-conformal ranks
  ceil((n+1) tau) / floor((n+1) tau) over-covered on the tuning period (80% intervals up to 84.2%)
  and scored a worse CRPS than the plain quantile on every coin.
- `forecast(r, gk, first, tau)` -> [n + 1 - first, K]: mu + s[t] z[t] for t = first..n, each from
  the window of the `window` days before t.

Inputs of day j in the window of target day t: (r[j] - mu) / s[t], sqrt(gk[j]) / s[t] and
ln(s[j] / s[t]): returns, ranges and GARCH's volatility path relative to the day's forecast.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from coincast.errors import DataError
from coincast.evaluation.risk import LEVELS
from coincast.models.risk_baselines import GarchT, HarT, garch_variance, std_t_ppf
from coincast.models.risk_net import RiskNet


def one_thread(method):
    """Run `method` in one torch thread, the caller's count restored after: batches of 64 windows of
    30 days are too small for more threads to help, and on a busy 2-core machine a second thread made
    the first fit ~80x slower (a backtest's walk on BTC: 476 s against 5.8 s in one thread)."""
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

    def __init__(self, window: int = 30, hidden: int = 16, calibration: int = 250, selection: int = 250,
                 max_epochs: int = 40, patience: int = 5, record: int = 365, min_record: int = 100,
                 lr: float = 1e-3, batch: int = 64, seed: int = 0, har_weight: float = 0.5, shrink: float = 0.5,
                 pool: dict[str, tuple[np.ndarray, np.ndarray]] | None = None):
        self.window, self.hidden, self.calibration, self.selection = window, hidden, calibration, selection
        self.max_epochs, self.patience = max_epochs, patience
        self.record, self.min_record, self.lr, self.batch, self.seed = record, min_record, lr, batch, seed
        self.garch, self.har, self.har_weight, self.shrink = GarchT(), HarT(), har_weight, shrink
        # returns before the cut: GARCH's history, then windows for training, selection and calibration
        self.min_history = self.garch.min_history + window + 2 * selection + calibration
        self.net: RiskNet | None = None
        self.tau = LEVELS  # [K] the levels it is trained on and forecasts
        self.pending: dict[int, tuple[float, float, np.ndarray]] = {}  # day -> (mu, s, z [K]) not yet scored
        self.residuals: list[np.ndarray] = []  # [K] y - z of each scored out-of-sample forecast, in day order
        self.shift: np.ndarray | None = None  # [K] the calibration's shifts (standardised units)
        self.spans: dict[str, tuple[int, int]] = {}  # the first fit's days trained on, selected on, calibrated on
        self.epochs: int | None = None  # the best epoch of the first fit (0: the base distribution kept)
        self.generator = torch.Generator().manual_seed(seed)
        self.pool = pool or {}  # other coins' (r, gk) [T] by name, on this coin's days (NaN where they have none)
        self.pooled: dict[str, int] = {}  # the first fit's training windows: "own", then each pooled coin's used

    # -- the base distribution and the windows ------------------------------------------------

    def _base(self, gk: np.ndarray, s: np.ndarray, mu: float, days: np.ndarray) -> torch.Tensor:
        """[D, K] The base quantiles of each day in `days` in units of GARCH's volatility: GARCH-t's
        and HAR-t's (the fold's fits) blended level by level, HAR-t with weight `har_weight`."""
        garch = std_t_ppf(self.tau, self.garch.params[4])[None, :]  # [1, K]
        first = max(self.har.windows)  # the first day HAR forecasts
        h = np.full((len(s), len(self.tau)), np.nan)  # [n + 1, K] HAR-t quantiles of each day (returns)
        h[first:] = self.har.forecast(None, gk, first, self.tau)
        har = (h[days] - mu) / s[days][:, None]  # [D, K] standardised
        return torch.tensor((1 - self.har_weight) * garch + self.har_weight * har, dtype=torch.float32)

    def _sigma(self, r: np.ndarray) -> tuple[float, np.ndarray]:
        """(mu, s [n + 1]): GARCH's mean and the volatility of each day t = 0..n given r[:t]."""
        mu, omega, alpha, beta, _ = self.garch.params
        return float(mu), np.sqrt(garch_variance(r, mu, omega, alpha, beta, self.garch.backcast))

    def _windows(self, r: np.ndarray, gk: np.ndarray, s: np.ndarray, mu: float, days: np.ndarray) -> torch.Tensor:
        """[D, L, 3] the inputs of each target day in `days` (each at least `window`)."""
        idx = days[:, None] - self.window + np.arange(self.window)[None, :]  # [D, L] the days before each target
        st = s[days][:, None]  # [D, 1]
        x = np.stack([(r[idx] - mu) / st, np.sqrt(np.maximum(gk[idx], 0.0)) / st, np.log(s[idx] / st)], axis=-1)
        return torch.tensor(x, dtype=torch.float32)

    # -- fit ----------------------------------------------------------------------------------

    def fit(self, r: np.ndarray, gk: np.ndarray) -> dict:
        r, gk = np.asarray(r, float), np.asarray(gk, float)
        n = len(r)
        self._score_pending(r)
        info = self.garch.fit(r, gk)
        self.har.fit(r, gk)
        mu, s = self._sigma(r)
        if self.net is None:
            with torch.random.fork_rng():  # the LSTM's initial weights from the seed, the caller's RNG untouched
                torch.manual_seed(self.seed)
                self.net = RiskNet(3, len(self.tau), int(np.argmin(np.abs(self.tau - 0.5))), self.hidden)
            tail = n - self.calibration  # first day of the calibration tail
            pick = tail - self.selection  # first day of the selection tail
            first = self.window + self.garch.min_history  # the first day trained on
            self.spans = {"train": (first, pick), "selection": (pick, tail), "calibration": (tail, n)}  # days [from, to)
            if pick - first < self.selection:
                raise DataError(f"the network's risk head needs {self.min_history} returns before its first fold; "
                                f"the data have {n}: start the walk later")
            train = [self._data(r, gk, s, mu, np.arange(first, pick))]
            select = [self._data(r, gk, s, mu, np.arange(pick, tail))]
            self.pooled = {"own": pick - first}
            for name, (ro, go) in self.pool.items():
                part = self._pool_data(ro, go, n, pick, tail)
                if part is not None:
                    train.append(part[0])
                    select.append(part[1])
                    self.pooled[name] = len(part[0][2])
            self.epochs = self._train(*(tuple(torch.cat(parts) for parts in zip(*data)) for data in (train, select)))
            days = np.arange(tail, n)
            z = self._z(*self._inputs(r, gk, s, mu, days))  # [C, K] out of sample: trained before the tail
            self.residuals.extend(list((r[days] - mu)[:, None] / s[days][:, None] - z))
        self.shift = self._calibration()
        return {"epochs": self.epochs, "record": min(len(self.residuals), self.record),
                "calibrated": self.shift is not None, "nu": info["nu"]}

    def _inputs(self, r, gk, s, mu, days) -> tuple[torch.Tensor, torch.Tensor]:
        """([D, L, 3] windows, [D, K] base quantiles) of the target days `days`."""
        return self._windows(r, gk, s, mu, days), self._base(gk, s, mu, days)

    def _data(self, r, gk, s, mu, days) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(windows, base, [D] standardised targets) of the target days `days`."""
        return *self._inputs(r, gk, s, mu, days), torch.tensor((r[days] - mu) / s[days], dtype=torch.float32)

    def _pool_data(self, r: np.ndarray, gk: np.ndarray, n: int, pick: int, tail: int):
        """(training data, selection data) of one pooled coin, whose returns r and variances gk are on
        this coin's days (NaN where it has none): from its rows before the cut n, the target days of
        the same dates as this coin's training and selection days, standardised by the coin's own
        GARCH-t and HAR-t fitted on those rows. None where it has gaps or too little history."""
        r, gk = np.asarray(r, float)[:n], np.asarray(gk, float)[:n]  # [n] before the cut
        have = ~(np.isnan(r) | np.isnan(gk))  # [n]
        start = int(np.argmax(have))  # its first day
        if not have.any() or not have[start:].all():
            return None
        other = NetworkRisk(window=self.window, har_weight=self.har_weight)  # its own base distribution
        r, gk = r[start:], gk[start:]
        first = other.window + other.garch.min_history  # its first day trained on
        if pick - start < first:  # it starts too late for a day before the selection tail
            return None
        other.garch.fit(r, gk)
        other.har.fit(r, gk)
        mu, s = other._sigma(r)
        return (other._data(r, gk, s, mu, np.arange(first, pick - start)),
                other._data(r, gk, s, mu, np.arange(pick - start, tail - start)))

    @one_thread
    def _train(self, train, select) -> int:
        """Adam on the mean pinball loss over the levels and the batch, early-stopping on `select`
        (the best weights kept). Returns the best epoch (0: the start, the base quantiles)."""
        tau = torch.tensor(self.tau, dtype=torch.float32)[None, :]  # [1, K]

        def loss(x: torch.Tensor, base: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            e = y[:, None] - self.net(x, base)  # [B, K]
            return torch.maximum(tau * e, (tau - 1) * e).mean()

        def selection_loss() -> float:
            self.net.eval()
            with torch.no_grad():
                return float(loss(*select))

        def weights() -> dict:
            return {k: v.clone() for k, v in self.net.state_dict().items()}

        x, base, y = train
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        best, best_epoch, state = selection_loss(), 0, weights()
        for epoch in range(1, self.max_epochs + 1):
            self.net.train()
            order = torch.randperm(len(y), generator=self.generator)
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
        self.net.load_state_dict(state)
        return best_epoch

    # -- calibration --------------------------------------------------------------------------

    def _score_pending(self, r: np.ndarray) -> None:
        """Move the forecasts whose days are now known (before len(r)) into the record."""
        for t in sorted(d for d in self.pending if d < len(r)):
            mu, s, z = self.pending.pop(t)
            self.residuals.append((r[t] - mu) / s - z)

    def _calibration(self) -> np.ndarray | None:
        """[K] The conformal shift of each level from the last `record` residuals, or None."""
        if len(self.residuals) < self.min_record:
            return None
        return self.shrink * conformal_shifts(np.array(self.residuals[-self.record :]), self.tau)

    # -- forecast -----------------------------------------------------------------------------

    @one_thread
    def _z(self, x: torch.Tensor, base: torch.Tensor) -> np.ndarray:
        self.net.eval()
        with torch.no_grad():
            return self.net(x, base).numpy().astype(float)  # [D, K]

    def forecast(self, r: np.ndarray, gk: np.ndarray, first: int, tau) -> np.ndarray:
        if not np.array_equal(np.asarray(tau, float), self.tau):
            raise ValueError("the risk network forecasts the levels it was trained on (evaluation.risk.LEVELS)")
        r, gk = np.asarray(r, float), np.asarray(gk, float)
        mu, s = self._sigma(r)  # s [n + 1]
        days = np.arange(first, len(r) + 1)  # [D] the last is the day after the data
        z = self._z(*self._inputs(r, gk, s, mu, days))  # [D, K]: windows end the day before each
        for t, zt in zip(days, z):
            self.pending[int(t)] = (mu, float(s[t]), zt)
        if self.shift is not None:
            z = np.sort(z + self.shift[None, :], axis=1)
        return mu + s[days][:, None] * z  # [D, K]


def conformal_shifts(residuals: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """[K] For residuals y - z [n, K] of n out-of-sample forecasts, the shift of each level tau: the
    tau-quantile of that level's residuals (numpy's linear interpolation), so that a tau share of
    them falls below z + shift."""
    r = np.asarray(residuals, float)  # [n, K]
    return np.array([np.quantile(r[:, k], t) for k, t in enumerate(np.asarray(tau, float))])  # [K]
