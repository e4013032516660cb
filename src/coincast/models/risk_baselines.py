"""Baselines of the risk forecast: quantiles of the next daily log return (in percent).

Every risk model is an estimator with the same three steps, which the walk-forward driver
(models/risk_walk.py) calls once per fold; settings go to `__init__` (no work there), learned
state ends in `_`:

- `fit(r, gk, rm=None)` -> self: estimate the parameters from the returns r [C], Garman-Klass
  variances gk [C] (percent^2) and, for the intraday models, the realized measures rm [C] (a
  structured array with prep/realized.MEASURES as fields) of the rows before the fold's cut, and
  nothing else; `info_` is the fit's record for the walk's fold table;
- `forecast(r, gk, first, tau, rm=None)` -> [n + 1 - first, K]: with the fitted parameters held,
  the quantiles of r[t] for t = first..n from r[:t], gk[:t], rm[:t] (the data through the day
  before), where n = len(r); the last row is the day after the data ends;
- `variance(r, gk, first, rm=None)` -> [n + 1 - first]: the same days' forecast variance of r[t]
  (percent^2), scored against the realized variance (evaluation/risk.py's QLIKE and MSE).

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
- `HarRV`: HAR-RV on the realized variance from hourly returns (Corsi 2009), fitted by `arch`'s
  HARX (least squares on the 1/7/30-day averages up to the day before): by default on ln RV
  (`log=True`: the forecast variance is exp of the fit, whose scale the standardised returns
  absorb), else on RV itself. With `quarticity=True` it is HARQ (Bollerslev, Patton & Quaedvlieg
  2016): the day-before coefficient moves with sqrt(RQ[t-1]) (the regressor sqrt(RQ[t-1]) RV[t-1],
  HARX's exogenous column; level form). A level forecast is clipped to the training range of RV
  (BPQ's insanity filter, as a clip). The returns divided by sqrt(h) on the training days give the
  quantiles: their empirical quantiles (`dist="empirical"`) or a fitted Student t (`dist="t"`);
  the variance forecast is h times their mean square.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from arch import arch_model
from arch.univariate import HARX
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

    @property
    def min_history(self) -> int:
        return self.window

    def fit(self, r: np.ndarray, gk: np.ndarray, rm=None) -> "Empirical":
        self.sample_ = np.asarray(r[-self.window :], float)  # [window]
        self.info_ = {}
        return self

    def forecast(self, r: np.ndarray, gk: np.ndarray, first: int, tau, rm=None) -> np.ndarray:
        q = np.quantile(self.sample_, tau)  # [K]
        return np.tile(q, (len(r) + 1 - first, 1))  # [n + 1 - first, K]

    def variance(self, r: np.ndarray, gk: np.ndarray, first: int, rm=None) -> np.ndarray:
        return np.full(len(r) + 1 - first, float(np.var(self.sample_)))


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
    min_history = 2 * burn_in

    def __init__(self, lam: float = 0.94):
        self.lam = lam

    def fit(self, r: np.ndarray, gk: np.ndarray, rm=None) -> "EwmaT":
        s2 = ewma_variance(r, self.lam, self.burn_in)[:-1]  # [C]: the variance of each training day
        z = r[self.burn_in :] / np.sqrt(s2[self.burn_in :])  # [C - burn_in]
        self.nu_ = fit_std_t_nu(z)
        self.info_ = {"nu": self.nu_}
        return self

    def variance(self, r: np.ndarray, gk: np.ndarray, first: int, rm=None) -> np.ndarray:
        return ewma_variance(r, self.lam, self.burn_in)[first:]  # [n + 1 - first]

    def forecast(self, r: np.ndarray, gk: np.ndarray, first: int, tau, rm=None) -> np.ndarray:
        sigma = np.sqrt(self.variance(r, gk, first))  # [n + 1 - first]
        return sigma[:, None] * std_t_ppf(tau, self.nu_)[None, :]  # [n + 1 - first, K]


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
    min_history = 250

    def __init__(self, maxiter: int | None = None):
        self.maxiter = maxiter  # the optimiser's iteration limit (None: arch's default)

    def _warm_start(self) -> np.ndarray | None:
        """The previous parameters moved just inside arch's constraints: a fit on the boundary
        (alpha + beta = 1 up to rounding) would otherwise have its starting values ignored."""
        if getattr(self, "params_", None) is None:
            return None
        sv = self.params_.copy()
        persistence = sv[2] + sv[3]
        if persistence > 1 - 1e-6:
            sv[2:4] *= (1 - 1e-6) / persistence
        sv[4] = min(max(sv[4], 2.06), 499.0)
        return sv

    def fit(self, r: np.ndarray, gk: np.ndarray, rm=None) -> "GarchT":
        r = np.asarray(r, float)
        model = arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)
        sv = self._warm_start()  # from the previous fit's params_: refits continue from it (a warm start)
        if sv is None:
            self.fits_ = self.nonconverged_ = self.warm_ignored_ = 0
            self.params_ = None
        options = {"maxiter": self.maxiter} if self.maxiter else None
        self.fits_ += 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                res = model.fit(disp="off", starting_values=sv, options=options)
                converged = res.convergence_flag == 0
            except (np.linalg.LinAlgError, ValueError):
                res, converged = None, False
        ignored = any(issubclass(w.category, StartingValueWarning) for w in caught)
        self.warm_ignored_ += int(ignored and sv is not None)
        if not converged:
            self.nonconverged_ += 1
        if converged or self.params_ is None:
            if res is None:
                raise RuntimeError("the first GARCH(1,1)-t fit failed and there are no earlier parameters to keep")
            self.params_ = res.params[list(self.names)].to_numpy(float)  # [5] in `names` order
        self.backcast_ = arch_backcast(r)  # from the training returns, as arch took it
        self.info_ = {"converged": converged, "warm_start": sv is not None and not ignored,
                      **dict(zip(self.names, self.params_.tolist()))}
        return self

    @property
    def counts_(self) -> dict:
        """The walk's record of the fits: how many, how many did not converge, warm starts ignored."""
        return {"fits": self.fits_, "nonconverged": self.nonconverged_, "warm_start_ignored": self.warm_ignored_}

    def variance(self, r: np.ndarray, gk: np.ndarray, first: int, rm=None) -> np.ndarray:
        mu, omega, alpha, beta, _ = self.params_
        return garch_variance(r, mu, omega, alpha, beta, self.backcast_)[first:]  # [n + 1 - first]

    def forecast(self, r: np.ndarray, gk: np.ndarray, first: int, tau, rm=None) -> np.ndarray:
        mu, nu = self.params_[0], self.params_[4]
        sigma = np.sqrt(self.variance(r, gk, first))  # [n + 1 - first]
        return mu + sigma[:, None] * std_t_ppf(tau, nu)[None, :]  # [n + 1 - first, K]


class HarT:
    """HAR regression of the Garman-Klass variance, with a fitted Student t on the standardised returns."""

    name = "har_t"
    floor_fraction = 0.1  # the variance forecast's floor, as a fraction of the training median GK

    def __init__(self, windows=HAR_WINDOWS):
        self.windows = windows

    @property
    def min_history(self) -> int:
        return 2 * max(self.windows)

    def _variance(self, gk: np.ndarray, first: int) -> np.ndarray:
        """[n + 1 - first] The HAR variance of day t = first..n from the averages through day t - 1."""
        X = har_averages(gk, self.windows)[first - 1 :]  # [n + 1 - first, W]: rows t-1
        h = self.coef_[0] + X @ self.coef_[1:]
        return np.maximum(h, self.floor_)

    def fit(self, r: np.ndarray, gk: np.ndarray, rm=None) -> "HarT":
        gk = np.asarray(gk, float)
        start = max(self.windows)  # the first day whose previous day has every average
        X = har_averages(gk, self.windows)[start - 1 : -1]  # [C - start, W]: regressors at t - 1
        A = np.column_stack([np.ones(len(X)), X])  # [C - start, 1 + W]
        self.coef_ = np.linalg.lstsq(A, gk[start:], rcond=None)[0]  # [1 + W]
        self.floor_ = self.floor_fraction * float(np.median(gk))
        z = r[start:] / np.sqrt(self._variance(gk[:-1], start))  # [C - start]
        nu, _, scale = stats.t.fit(z, floc=0)
        self.nu_, self.scale_ = float(min(max(nu, NU_BOUNDS[0]), NU_BOUNDS[1])), float(scale)
        self.info_ = {"nu": self.nu_, "scale": self.scale_, **{f"b{i}": float(b) for i, b in enumerate(self.coef_)}}
        return self

    def variance(self, r: np.ndarray, gk: np.ndarray, first: int, rm=None) -> np.ndarray:
        """The t's variance scale^2 nu / (nu - 2) times h."""
        return self._variance(gk, first) * self.scale_**2 * self.nu_ / (self.nu_ - 2)

    def forecast(self, r: np.ndarray, gk: np.ndarray, first: int, tau, rm=None) -> np.ndarray:
        sigma = np.sqrt(self._variance(gk, first))  # [n + 1 - first]
        return sigma[:, None] * (self.scale_ * stats.t.ppf(np.asarray(tau, float), self.nu_))[None, :]


class HarRV:
    """HAR-RV (log or level) or HARQ on the realized variance, with the standardised returns' quantiles."""

    name = "har_rv"
    intraday = True  # needs the realized measures (rm)

    def __init__(self, windows=HAR_WINDOWS, log: bool = True, quarticity: bool = False, dist: str = "empirical"):
        self.windows, self.log, self.quarticity, self.dist = windows, log, quarticity, dist

    @property
    def min_history(self) -> int:
        return 2 * max(self.windows)

    def _target(self, rm) -> np.ndarray:
        rv = np.asarray(rm["rv"], float)
        return np.log(rv) if self.log else rv

    def _exog(self, rm) -> np.ndarray:
        """[n, 1] HARQ's regressor of day t (at row t): sqrt(RQ[t-1]) RV[t-1] (row 0: NaN)."""
        x = np.sqrt(np.asarray(rm["rq"], float)) * np.asarray(rm["rv"], float)
        return np.r_[np.nan, x[:-1]][:, None]

    def _h(self, rm, first: int) -> np.ndarray:
        """[n + 1 - first] The HAR variance of day t = first..n from the realized measures through day t - 1."""
        y = self._target(rm)  # [n]
        X = har_averages(y, self.windows)[first - 1 :]  # [n + 1 - first, W]: rows t-1
        fit = self.coef_[0] + X @ self.coef_[1 : 1 + len(self.windows)]
        if self.quarticity:
            rv, rq = np.asarray(rm["rv"], float), np.asarray(rm["rq"], float)
            fit = fit + self.coef_[-1] * (np.sqrt(rq) * rv)[first - 1 :]
        return np.exp(fit) if self.log else np.clip(fit, *self.range_)

    def fit(self, r: np.ndarray, gk: np.ndarray, rm=None) -> "HarRV":
        if rm is None:
            raise ValueError(f"{self.name} needs the realized measures of hourly candles (rm)")
        if self.quarticity and self.log:
            raise ValueError("HARQ is the level form: quarticity=True needs log=False")
        y = self._target(rm)  # [C]
        start = max(self.windows)  # the first day whose previous day has every average
        x = self._exog(rm) if self.quarticity else None
        res = HARX(y, x=x, lags=list(self.windows), hold_back=start).fit(disp="off")
        self.coef_ = res.params.to_numpy(float)[:-1]  # [1 + W (+ 1)]: const, the averages (, HARQ's); sigma2 dropped
        rv = np.asarray(rm["rv"], float)
        self.range_ = (float(rv.min()), float(rv.max()))
        self.z_ = np.asarray(r[start:], float) / np.sqrt(self._h(rm[:-1], start))  # [C - start] standardised
        self.m2_ = float(np.mean(self.z_**2))
        if self.dist == "t":
            nu, _, scale = stats.t.fit(self.z_, floc=0)
            self.nu_, self.scale_ = float(min(max(nu, NU_BOUNDS[0]), NU_BOUNDS[1])), float(scale)
        elif self.dist != "empirical":
            raise ValueError(f"dist must be 'empirical' or 't'; got {self.dist!r}")
        self.info_ = {f"b{i}": float(b) for i, b in enumerate(self.coef_)}
        return self

    def variance(self, r: np.ndarray, gk: np.ndarray, first: int, rm=None) -> np.ndarray:
        return self._h(rm, first) * self.m2_

    def forecast(self, r: np.ndarray, gk: np.ndarray, first: int, tau, rm=None) -> np.ndarray:
        tau = np.asarray(tau, float)
        z = (np.quantile(self.z_, tau) if self.dist == "empirical"
             else self.scale_ * stats.t.ppf(tau, self.nu_))  # [K]
        return np.sqrt(self._h(rm, first))[:, None] * z[None, :]  # [n + 1 - first, K]


class Harq(HarRV):
    """HARQ: the level HAR-RV whose day-before coefficient moves with sqrt(RQ)."""

    name = "harq"

    def __init__(self, windows=HAR_WINDOWS, log: bool = False, quarticity: bool = True, dist: str = "empirical"):
        super().__init__(windows, log, quarticity, dist)


def all_baselines(intraday: bool = False) -> list:
    """A fresh instance of every baseline, in the order tables show them; with `intraday`, the
    models on realized measures too (they need hourly candles)."""
    daily = [Empirical(), EwmaT(), GarchT(), HarT()]
    return daily + ([HarRV(), Harq()] if intraday else [])
