"""Scores of quantile forecasts of the next-step log return, and of their variance forecasts.

A risk forecast is a table of quantiles: `Q` [N, K], the forecast quantiles at levels `tau` [K]
(increasing, strictly between 0 and 1) of the realised values `y` [N], here daily log returns in
percent. Everything here is pure numpy/scipy and returns numbers; rendering is report/'s.

- Pinball (quantile) loss per level, the proper score of one quantile.
- CRPS from the quantiles: CRPS(F, y) = 2 * integral_0^1 pinball_tau(F^-1(tau), y) d tau, approximated
  on an evenly spaced grid tau_k = k/(K+1), k = 1..K, by the quantile-score average
  (2/K) * sum_k pinball_k (Berrisch & Ziel 2023; what `scoringrules.crps_quantile` computes). Its
  error: the average divides by K where the midpoint sum over [0, 1] divides by K+1, so it reads
  (K+1)/K times the integral over the grid, and the tails beyond the outer levels are left out.
  For a normal forecast the first dominates: +0.95-0.99% at K = 99 for y within 3 sd (tested
  against the closed form), +4-5% at K = 19; the left-out tails account for under 0.1% at K = 99.
  For a point mass it is exact. The factor is the same for every forecast on the same grid, so
  ratios and DM tests between such forecasts are unaffected.
- Coverage, mean width and interval (Winkler) score of the central 80% and 95% intervals
  (levels 10/90% and 2.5/97.5%).
- VaR backtests of the lower quantiles (a breach: y below the tau-quantile, tau = 5% and 1%):
  Kupiec's unconditional-coverage LR, Christoffersen's independence LR (first-order Markov
  breaches against independent ones) and their sum, the conditional-coverage LR (chi2, 2 dof).
- A Diebold-Mariano test on the per-day CRPS differences of two forecasts of the same days,
  through `evaluation.metrics.diebold_mariano` (HLN-corrected, one-sided).
- Variance forecasts h [N] against a proxy of the day's variance (the realized variance from
  hourly returns, or another conditionally unbiased proxy): QLIKE, proxy/h - ln(proxy/h) - 1, and
  the squared error (proxy - h)^2, the two losses Patton (2011) shows rank forecasts the same with
  a noisy proxy as with the true variance; a DM test on either's daily differences.
- The Model Confidence Set (Hansen, Lunde & Nason 2011) of several forecasts' daily losses,
  through `arch.bootstrap.MCS`: the models not rejected at the given size.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from arch.bootstrap import MCS
from scipy.special import xlogy

from coincast.evaluation.metrics import diebold_mariano

# The levels a risk forecast must carry (issue 16): the central 50/80/90/95% intervals and the median.
REQUIRED_LEVELS = (0.025, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.975)
# The grid CRPS is computed on: 1%, 2%, ..., 99% (it holds the 1% VaR).
LEVELS_99 = np.arange(1, 100) / 100
# The baselines' levels: that grid plus 2.5% and 97.5% for the 95% interval (101 levels). CRPS uses
# the 99 grid columns of such a table (`crps_columns`).
LEVELS = np.sort(np.r_[LEVELS_99, 0.025, 0.975])
INTERVALS = {"80": (0.10, 0.90), "95": (0.025, 0.975)}  # central interval -> (lower, upper) level
VAR_LEVELS = (0.05, 0.01)
_TOL = 1e-9  # levels are matched to this tolerance (0.1 + 0.2 style float noise)


def check_levels(tau) -> np.ndarray:
    """[K] The levels as floats, or a ValueError saying what is wrong with them."""
    t = np.asarray(tau, float)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"quantile levels must be a flat, non-empty list; got shape {t.shape}")
    if not np.all((t > 0) & (t < 1)):
        raise ValueError(f"quantile levels must lie strictly between 0 and 1 (fractions, not percent); got {t.min():g}..{t.max():g}")
    if np.any(np.diff(t) <= 0):
        raise ValueError("quantile levels must be strictly increasing; sort them and drop repeats")
    return t


def _check(y, Q, tau) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y [N], Q [N, K], tau [K] as float arrays that agree in shape, or a ValueError."""
    t = check_levels(tau)
    y = np.asarray(y, float).reshape(-1)  # [N]
    Q = np.asarray(Q, float)  # [N, K]
    if Q.shape != (len(y), len(t)):
        raise ValueError(f"quantiles must have shape [N, K] = [{len(y)}, {len(t)}] (one row per value, "
                         f"one column per level); got {list(Q.shape)}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(Q))):
        raise ValueError("realised values and quantiles must be finite; drop the days without a forecast first")
    return y, Q, t


def level_index(tau, level: float) -> int:
    """The column of `level` in `tau`, or a ValueError naming the level to add."""
    t = check_levels(tau)
    hit = np.flatnonzero(np.abs(t - level) < _TOL)
    if not hit.size:
        raise ValueError(f"this score needs the {100 * level:g}% quantile; forecast it (the baselines' LEVELS hold 1..99%, 2.5% and 97.5%)")
    return int(hit[0])


def pinball(y, Q, tau) -> np.ndarray:
    """[N, K] Pinball loss of each quantile: tau (y - q) if y >= q, else (1 - tau) (q - y)."""
    y, Q, t = _check(y, Q, tau)
    u = y[:, None] - Q  # [N, K]
    return np.maximum(t * u, (t - 1) * u)


def is_even_grid(tau) -> bool:
    """Whether `tau` is the grid k/(K+1), k = 1..K, that the CRPS approximation needs."""
    t = check_levels(tau)
    return bool(np.allclose(t, np.arange(1, len(t) + 1) / (len(t) + 1), atol=_TOL, rtol=0))


def crps_columns(tau) -> np.ndarray | None:
    """[K'] The columns CRPS is computed on: all of `tau` if it is an even grid, else the 1..99%
    grid where `tau` holds all of it (LEVELS), else None (no CRPS from these levels)."""
    t = check_levels(tau)
    if is_even_grid(t):
        return np.arange(len(t))
    on_grid = np.abs(t[:, None] - LEVELS_99[None, :]) < _TOL  # [K, 99]
    if on_grid.any(axis=0).all():
        return np.flatnonzero(on_grid.any(axis=1))
    return None


def crps(y, Q, tau) -> np.ndarray:
    """[N] CRPS of each day approximated from its quantiles: (2/K) * sum_k pinball_k over the K
    levels of an evenly spaced grid k/(K+1) (all of `tau`, or the 1..99% columns of LEVELS).
    The module docstring gives the approximation's error.
    """
    y, Q, t = _check(y, Q, tau)
    cols = crps_columns(t)
    if cols is None:
        raise ValueError(f"CRPS from quantiles needs the evenly spaced levels k/(K+1), k = 1..K (e.g. 1%..99%); "
                         f"got {len(t)} levels from {t[0]:g} to {t[-1]:g}")
    return 2 * pinball(y, Q[:, cols], t[cols]).mean(axis=1)


def interval(y, Q, tau, coverage: str) -> dict:
    """Coverage, mean width and mean interval (Winkler) score of a central interval ("80" or "95").

    Interval score of [l, u] at miss rate a: (u - l) + (2/a)(l - y) if y < l, + (2/a)(y - u) if y > u.
    """
    y, Q, t = _check(y, Q, tau)
    if coverage not in INTERVALS:
        raise ValueError(f"central intervals are {', '.join(repr(c) for c in INTERVALS)} (percent, as strings); got {coverage!r}")
    lo_level, hi_level = INTERVALS[coverage]
    lo, hi = Q[:, level_index(t, lo_level)], Q[:, level_index(t, hi_level)]  # [N] each
    a = lo_level + (1 - hi_level)
    score = (hi - lo) + (2 / a) * np.clip(lo - y, 0, None) + (2 / a) * np.clip(y - hi, 0, None)  # [N]
    return {"coverage": float(np.mean((y >= lo) & (y <= hi))), "width": float(np.mean(hi - lo)),
            "interval_score": float(np.mean(score))}


def kupiec(breaches, p: float) -> dict:
    """Kupiec's unconditional-coverage test: are the breaches a fraction p of the days?

    LR_uc = -2 [log L(p) - log L(pi)], pi = x/n the breach rate; chi2 with 1 dof.
    """
    b = np.asarray(breaches, bool)
    n, x = len(b), int(b.sum())
    if n == 0:
        raise ValueError("the VaR tests need at least one day")
    pi = x / n
    ll_p = xlogy(n - x, 1 - p) + xlogy(x, p)
    ll_pi = xlogy(n - x, 1 - pi) + xlogy(x, pi)  # xlogy: 0 log 0 = 0 (no breach, or all)
    lr = max(float(-2 * (ll_p - ll_pi)), 0.0)
    return {"n": n, "breaches": x, "rate": pi, "lr": lr, "p_value": float(stats.chi2.sf(lr, 1))}


def christoffersen(breaches) -> dict:
    """Christoffersen's independence test: does a breach today change the chance of one tomorrow?

    Counts the transitions n_ij (state i yesterday, j today) over the n-1 pairs of days and
    compares the first-order Markov chain (pi_01 = n01/(n00+n01), pi_11 = n11/(n10+n11)) with
    independence (pi = (n01+n11)/(n-1)): LR_ind, chi2 with 1 dof. With no breach, or no day
    after a breach, both likelihoods agree and LR_ind = 0.
    """
    b = np.asarray(breaches, bool)
    if len(b) < 2:
        raise ValueError("the independence test needs at least two days")
    prev, cur = b[:-1], b[1:]  # [n-1] each
    n00, n01 = int(np.sum(~prev & ~cur)), int(np.sum(~prev & cur))
    n10, n11 = int(np.sum(prev & ~cur)), int(np.sum(prev & cur))
    pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    ll_ind = xlogy(n00 + n10, 1 - pi) + xlogy(n01 + n11, pi)
    ll_markov = xlogy(n00, 1 - pi01) + xlogy(n01, pi01) + xlogy(n10, 1 - pi11) + xlogy(n11, pi11)
    lr = max(float(-2 * (ll_ind - ll_markov)), 0.0)
    return {"n00": n00, "n01": n01, "n10": n10, "n11": n11, "lr": lr, "p_value": float(stats.chi2.sf(lr, 1))}


def var_tests(y, Q, tau, p: float) -> dict:
    """Kupiec, Christoffersen and the joint conditional-coverage test (LR_uc + LR_ind, chi2 with
    2 dof) of the p-VaR: a breach is a realised value below the forecast p-quantile."""
    y, Q, t = _check(y, Q, tau)
    breaches = y < Q[:, level_index(t, p)]  # [N]
    uc, ind = kupiec(breaches, p), christoffersen(breaches)
    lr_cc = uc["lr"] + ind["lr"]
    return {"level": p, "breaches": uc["breaches"], "rate": uc["rate"], "kupiec_p": uc["p_value"],
            "christoffersen_p": ind["p_value"], "cc_lr": lr_cc, "cc_p": float(stats.chi2.sf(lr_cc, 2))}


def crps_dm(y, Q_a, Q_b, tau) -> dict:
    """Forecast A against forecast B of the same days: the ratio of mean CRPS (A/B) and the
    Diebold-Mariano test on the per-day CRPS differences (one-sided p that A is better)."""
    a, b = crps(y, Q_a, tau), crps(y, Q_b, tau)  # [N] each
    stat, p = diebold_mariano(a, b)
    return {"ratio": float(a.mean() / b.mean()), "dm_stat": stat, "dm_p": p}


def risk_scores(y, Q, tau) -> dict:
    """Every score of one quantile forecast: CRPS (where `crps_columns` finds a grid, else None), pinball per level,
    the 80/95% intervals and the VaR tests at the levels of VAR_LEVELS that `tau` holds.

    `tau` must hold REQUIRED_LEVELS; a VaR level it lacks (1% on a 9-level head) is reported as None.
    """
    y, Q, t = _check(y, Q, tau)
    missing = [lv for lv in REQUIRED_LEVELS if not np.any(np.abs(t - lv) < _TOL)]
    if missing:
        raise ValueError(f"a risk forecast needs the levels {', '.join(f'{100 * m:g}%' for m in REQUIRED_LEVELS)}; "
                         f"missing {', '.join(f'{100 * m:g}%' for m in missing)}")
    pb = pinball(y, Q, t).mean(axis=0)  # [K]
    has = lambda lv: bool(np.any(np.abs(t - lv) < _TOL))  # noqa: E731
    return {
        "n": len(y),
        "crps": float(crps(y, Q, t).mean()) if crps_columns(t) is not None else None,
        "pinball": {f"{lv:g}": float(v) for lv, v in zip(t, pb)},
        "intervals": {c: interval(y, Q, t, c) for c in INTERVALS},
        "var": {f"{p:g}": var_tests(y, Q, t, p) if has(p) else None for p in VAR_LEVELS},
    }


def qlike(proxy, h) -> np.ndarray:
    """[N] QLIKE loss of variance forecasts h [N] against the proxy [N]: proxy/h - ln(proxy/h) - 1 (0 at h = proxy)."""
    x = np.asarray(proxy, float) / _positive(h)
    return x - np.log(x) - 1


def mse(proxy, h) -> np.ndarray:
    """[N] Squared error of variance forecasts h [N] against the proxy [N]."""
    return (np.asarray(proxy, float) - _positive(h)) ** 2


def _positive(h) -> np.ndarray:
    h = np.asarray(h, float)
    if not np.all(np.isfinite(h) & (h > 0)):
        raise ValueError("variance forecasts must be positive and finite")
    return h


def variance_dm(proxy, h_a, h_b) -> dict:
    """Variance forecast A against B of the same days: mean QLIKE and MSE of each, their ratios (A/B)
    and the one-sided DM p that A is better on each loss."""
    out = {}
    for name, loss in (("qlike", qlike), ("mse", mse)):
        a, b = loss(proxy, h_a), loss(proxy, h_b)  # [N] each
        stat, p = diebold_mariano(a, b)
        out.update({name: float(a.mean()), f"{name}_ratio": float(a.mean() / b.mean()), f"{name}_dm_p": p})
    return out


def model_confidence_set(losses, size: float = 0.10, reps: int = 1000, seed: int = 0) -> dict:
    """{model: its MCS p-value} and the models in the (1 - size) Model Confidence Set, from daily
    losses (a DataFrame [N, M], one column per model; arch's stationary bootstrap, `reps` draws)."""
    mcs = MCS(losses, size=size, reps=reps, seed=seed)
    mcs.compute()
    p = mcs.pvalues["Pvalue"]
    return {"pvalues": {str(k): float(v) for k, v in p.items()}, "included": [str(k) for k in mcs.included]}
