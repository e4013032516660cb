"""Baselines of the risk forecast: quantiles of the next daily log return (in percent).

Every baseline has the same two steps, which the walk-forward driver (models/risk_walk.py)
calls once per fold:

- `fit(r, gk)`: estimate the parameters from the returns r [C] and Garman-Klass variances gk [C]
  (percent^2) of the rows before the fold's cut, and nothing else;
- `forecast(r, gk, first, tau)` -> [n + 1 - first, K]: with the fitted parameters held, the
  quantiles of r[t] for t = first..n from r[:t], gk[:t] (the data through the day before), where
  n = len(r); the last row is the day after the data ends.

So parameters change once a fold (weekly) and the volatility state each day, from the past only.

- `Empirical`: the quantiles of the last 365 returns before the cut (numpy's linear
  interpolation), the same all week: the random walk's own distribution.
- `EwmaT`: RiskMetrics variance, s2[t] = lambda s2[t-1] + (1 - lambda) r[t-1]^2 with lambda = 0.94,
  zero mean, started from the mean square of the first 30 returns; Student-t quantiles of unit
  variance whose degrees of freedom are fitted by maximum likelihood to the training returns
  standardised by their own EWMA volatility (the first 30 left out as burn-in).
- `GarchT`: GARCH(1,1) with standardised Student-t innovations and a constant mean, fitted by
  `arch` on every return before the cut (percent, no rescaling by arch), each refit started from
  the previous fold's parameters. A fit that does not converge (arch's convergence flag, or an
  error) keeps the previous fold's parameters and is counted (the first fold, having none,
  keeps its own last iterate). The daily variance runs the same recursion as arch, from arch's
  backcast (tests check it matches arch's conditional volatility).
- `HarT`: HAR regression (Corsi 2009) by least squares of the day's Garman-Klass variance on the
  1/7/30-day averages up to the day before; the forecast variance h is floored at a tenth of the
  training median GK variance. Returns divided by sqrt(h) get a Student t (location 0, scale and
  degrees of freedom fitted by maximum likelihood on the training days), since the candle's
  range variance and the squared return differ in scale.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from arch import arch_model
from arch.utility.exceptions import StartingValueWarning
from scipy import optimize, stats
from scipy.signal import lfilter

from coincast.prep.volatility import HAR_WINDOWS, har_averages

NU_BOUNDS = (2.1, 200.0)  # degrees of freedom of a Student t with finite variance


def std_t_ppf(tau, nu: float) -> np.ndarray:
    """[K] Quantiles of a Student t with nu degrees of freedom scaled to unit variance."""
    return math.sqrt((nu - 2) / nu) * stats.t.ppf(np.asarray(tau, float), nu)


def fit_std_t_nu(z) -> float:
    """Degrees of freedom of a unit-variance Student t fitted by maximum likelihood to z [N]."""
    z = np.asarray(z, float)

    def nll(nu: float) -> float:
        s = math.sqrt((nu - 2) / nu)
        return -float(np.sum(stats.t.logpdf(z / s, nu)) - len(z) * math.log(s))

    return float(optimize.minimize_scalar(nll, bounds=NU_BOUNDS, method="bounded").x)


class Empirical:
    """The quantiles of the last `window` returns before the cut."""

    name = "empirical"

    def __init__(self, window: int = 365):
        self.window = window
        self.min_history = window
        self.sample: np.ndarray | None = None

    def fit(self, r: np.ndarray, gk: np.ndarray) -> dict:
        self.sample = np.asarray(r[-self.window :], float)  # [window]
        return {}

    def forecast(self, r: np.ndarray, gk: np.ndarray, first: int, tau) -> np.ndarray:
        q = np.quantile(self.sample, tau)  # [K]
        return np.tile(q, (len(r) + 1 - first, 1))  # [n + 1 - first, K]


def ewma_variance(r: np.ndarray, lam: float, burn_in: int) -> np.ndarray:
    """[n + 1] s2[t] = lam s2[t-1] + (1 - lam) r[t-1]^2, s2[0] the mean square of r[:burn_in]."""
    r2 = np.asarray(r, float) ** 2  # [n]
    s0 = float(r2[:burn_in].mean())
    tail = lfilter([1 - lam], [1, -lam], r2, zi=[lam * s0])[0]  # [n]: s2[1..n]
    return np.r_[s0, tail]


class EwmaT:
    """RiskMetrics EWMA variance with unit-variance Student-t quantiles."""

    name = "ewma_t"
    burn_in = 30

    def __init__(self, lam: float = 0.94):
        self.lam = lam
        self.min_history = 2 * self.burn_in
        self.nu: float | None = None

    def fit(self, r: np.ndarray, gk: np.ndarray) -> dict:
        s2 = ewma_variance(r, self.lam, self.burn_in)[:-1]  # [C]: the variance of each training day
        z = r[self.burn_in :] / np.sqrt(s2[self.burn_in :])  # [C - burn_in]
        self.nu = fit_std_t_nu(z)
        return {"nu": self.nu}

    def forecast(self, r: np.ndarray, gk: np.ndarray, first: int, tau) -> np.ndarray:
        sigma = np.sqrt(ewma_variance(r, self.lam, self.burn_in)[first:])  # [n + 1 - first]
        return sigma[:, None] * std_t_ppf(tau, self.nu)[None, :]  # [n + 1 - first, K]


def arch_backcast(r: np.ndarray) -> float:
    """arch's starting variance for GARCH: an EWMA (weights 0.94^i) of the first 75 squared
    residuals around the sample mean of the returns fitted on (arch takes it before fitting mu)."""
    r = np.asarray(r, float)
    head = r[:75] - r.mean()
    w = 0.94 ** np.arange(len(head))
    return float(np.sum(w * head**2) / w.sum())


def garch_variance(r: np.ndarray, mu: float, omega: float, alpha: float, beta: float, backcast: float) -> np.ndarray:
    """[n + 1] GARCH(1,1) variance, arch's recursion: s2[t] = omega + alpha e[t-1]^2 + beta s2[t-1],
    e = r - mu, with e[-1]^2 and s2[-1] both the backcast."""
    s0 = omega + (alpha + beta) * backcast
    x = omega + alpha * (np.asarray(r, float) - mu) ** 2  # [n]
    tail = lfilter([1.0], [1, -beta], x, zi=[beta * s0])[0]  # [n]: s2[1..n]
    return np.r_[s0, tail]


class GarchT:
    """GARCH(1,1)-t from `arch`, warm-started from the previous fold, with a counted fallback."""

    name = "garch_t"
    names = ("mu", "omega", "alpha[1]", "beta[1]", "nu")

    def __init__(self, maxiter: int | None = None):
        self.maxiter = maxiter  # the optimiser's iteration limit (None: arch's default)
        self.min_history = 250
        self.params: np.ndarray | None = None  # [5] in `names` order
        self.fits = self.nonconverged = self.warm_ignored = 0
        self.backcast: float | None = None  # from the training returns, as arch took it

    def _warm_start(self) -> np.ndarray | None:
        """The previous parameters moved just inside arch's constraints: a fit on the boundary
        (alpha + beta = 1 up to rounding) would otherwise have its starting values ignored."""
        if self.params is None:
            return None
        sv = self.params.copy()
        persistence = sv[2] + sv[3]
        if persistence > 1 - 1e-6:
            sv[2:4] *= (1 - 1e-6) / persistence
        sv[4] = min(max(sv[4], 2.06), 499.0)
        return sv

    def fit(self, r: np.ndarray, gk: np.ndarray) -> dict:
        r = np.asarray(r, float)
        model = arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)
        sv = self._warm_start()
        options = {"maxiter": self.maxiter} if self.maxiter else None
        self.fits += 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                res = model.fit(disp="off", starting_values=sv, options=options)
                converged = res.convergence_flag == 0
            except (np.linalg.LinAlgError, ValueError):
                res, converged = None, False
        ignored = any(issubclass(w.category, StartingValueWarning) for w in caught)
        self.warm_ignored += int(ignored and sv is not None)
        if not converged:
            self.nonconverged += 1
        if converged or self.params is None:
            if res is None:
                raise RuntimeError("the first GARCH(1,1)-t fit failed and there are no earlier parameters to keep")
            self.params = res.params[list(self.names)].to_numpy(float)
        self.backcast = arch_backcast(r)
        return {"converged": converged, "warm_start": sv is not None and not ignored,
                **dict(zip(self.names, self.params.tolist()))}

    def forecast(self, r: np.ndarray, gk: np.ndarray, first: int, tau) -> np.ndarray:
        mu, omega, alpha, beta, nu = self.params
        sigma = np.sqrt(garch_variance(r, mu, omega, alpha, beta, self.backcast)[first:])  # [n + 1 - first]
        return mu + sigma[:, None] * std_t_ppf(tau, nu)[None, :]  # [n + 1 - first, K]


class HarT:
    """HAR regression of the Garman-Klass variance, with a fitted Student t on the standardised returns."""

    name = "har_t"
    floor_fraction = 0.1  # the variance forecast's floor, as a fraction of the training median GK

    def __init__(self, windows=HAR_WINDOWS):
        self.windows = tuple(windows)
        self.min_history = 2 * max(self.windows)
        self.coef: np.ndarray | None = None  # [1 + len(windows)]
        self.floor = self.nu = self.scale = None

    def _variance(self, gk: np.ndarray, first: int) -> np.ndarray:
        """[n + 1 - first] The HAR variance of day t = first..n from the averages through day t - 1."""
        X = har_averages(gk, self.windows)[first - 1 :]  # [n + 1 - first, W]: rows t-1
        h = self.coef[0] + X @ self.coef[1:]
        return np.maximum(h, self.floor)

    def fit(self, r: np.ndarray, gk: np.ndarray) -> dict:
        gk = np.asarray(gk, float)
        start = max(self.windows)  # the first day whose previous day has every average
        X = har_averages(gk, self.windows)[start - 1 : -1]  # [C - start, W]: regressors at t - 1
        A = np.column_stack([np.ones(len(X)), X])  # [C - start, 1 + W]
        self.coef = np.linalg.lstsq(A, gk[start:], rcond=None)[0]
        self.floor = self.floor_fraction * float(np.median(gk))
        z = r[start:] / np.sqrt(self._variance(gk[:-1], start))  # [C - start]
        nu, _, scale = stats.t.fit(z, floc=0)
        self.nu, self.scale = float(min(max(nu, NU_BOUNDS[0]), NU_BOUNDS[1])), float(scale)
        return {"nu": self.nu, "scale": self.scale, **{f"b{i}": float(b) for i, b in enumerate(self.coef)}}

    def forecast(self, r: np.ndarray, gk: np.ndarray, first: int, tau) -> np.ndarray:
        sigma = np.sqrt(self._variance(gk, first))  # [n + 1 - first]
        return sigma[:, None] * (self.scale * stats.t.ppf(np.asarray(tau, float), self.nu))[None, :]


def all_baselines() -> list:
    """A fresh instance of every baseline, in the order tables show them."""
    return [Empirical(), EwmaT(), GarchT(), HarT()]
