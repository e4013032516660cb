"""Look-ahead audit: change the data after a cut-off and prove nothing made before it moves.

A forecast for day t is made at the close of day t-1, so with every row from the cut-off
day c onwards perturbed (the candles, and every exogenous series' values dated c or later),
the forecasts, intervals and trading positions for days up to and including c must come out
identical. The audited backtest is the one users run: inputs built by `build_inputs` (every
indicator, the `exog` series) once on the full history, shrinkage as set; besides the
shrunk forecast it compares the network's own output, which a = 0 would otherwise hide. Anything that peeks at a later row (a feature that
looks ahead, a scaler fitted on the whole series, early stopping on future data) shows up
as a changed value, reported with the first date it changed. The same check runs on the
feature columns alone (a feature value at a day before c must not change), and on the risk
models' quantiles (`audit_risk`: the four baselines and the network's distribution head walked
over the same days with the same refits; a day's quantiles up to c must not change). The risk
models' hourly candles (data/intraday.py) are perturbed from the same time on: every hour that
opens at or after 00:00 of c.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from coincast.backtest import trading
from coincast.backtest.engine import BacktestSettings, check, walk_forward
from coincast.config import Settings
from coincast.data.datasets import daily_coins
from coincast.data.exogenous import read_series
from coincast.data.frame import day_on
from coincast.errors import CoincastError, DataError
from coincast.models.risk_baselines import all_baselines
from coincast.models.risk_network import NetworkRisk
from coincast.models.risk_walk import pooled_returns, walk_forward_risk
from coincast.prep.inputs import Inputs, build_inputs
from coincast.prep.windows import fill_zeros

Transform = Callable[..., pd.DataFrame]  # raw candles -> model columns; may take read_series=


def inputs_transform(settings: Settings) -> Transform:
    """raw -> the input frame `build_inputs` makes for `settings.data` (exogenous series read by
    `read_series`, so the audit can perturb them)."""
    d = settings.data

    def transform(raw: pd.DataFrame, read_series=None) -> pd.DataFrame:
        return build_inputs(raw, d.target, d.features, d.exog, d.exog_max_age, read_series).frame

    transform.reads_series = True
    return transform


def perturbed_series(cutoff: pd.Timestamp, scale: float = 0.2, seed: int = 0):
    """A series reader that multiplies every value dated at or after `cutoff` by exp(N(0, scale)).

    A value dated c is published at 00:00 of c at the earliest, so no candle that closes by
    the cut-off may see it."""

    def read(spec) -> pd.DataFrame:
        series = read_series(spec)
        out = series.astype("float64")
        after = np.asarray(series.index >= cutoff)
        rng = np.random.default_rng(seed + 1)
        out.iloc[after] = out.iloc[after].to_numpy() * np.exp(rng.normal(0.0, scale, size=(int(after.sum()), out.shape[1])))
        return out

    return read


def _apply(transform: Transform, raw: pd.DataFrame, read=None) -> pd.DataFrame:
    return transform(raw, read_series=read) if getattr(transform, "reads_series", False) else transform(raw)


@dataclass
class AuditResult:
    cutoff: pd.Timestamp  # first perturbed day
    compared: dict[str, int] = field(default_factory=dict)  # what -> values compared
    leaks: dict[str, str] = field(default_factory=dict)  # what -> first date it changed
    perturbed_changed: bool = False  # sanity: the perturbation did change the data at the cut-off

    @property
    def passed(self) -> bool:
        return self.perturbed_changed and not self.leaks

    def summary(self) -> str:
        n = sum(self.compared.values())
        if not self.perturbed_changed:
            return "audit inconclusive: the perturbation changed nothing at the cut-off"
        if self.passed:
            return (f"look-ahead audit passed: data from {self.cutoff.date()} on was perturbed and none of "
                    f"{n} values made before it changed ({len(self.compared)} columns checked)")
        first = ", ".join(f"{k} (from {v})" for k, v in list(self.leaks.items())[:6])
        return f"LOOK-AHEAD LEAK: values made before {self.cutoff.date()} changed when later data changed: {first}"


def perturb(frame: pd.DataFrame, cut: int, scale: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """Rows cut.. multiplied cell by cell by exp(N(0, scale)): signs kept, every value moved.
    Candles stay candles: each moved high is the largest of its row's four prices, each low the
    smallest (range-based inputs refuse a high below the close)."""
    out = frame.copy()
    rng = np.random.default_rng(seed)
    noise = np.exp(rng.normal(0.0, scale, size=(len(frame) - cut, frame.shape[1])))
    out.iloc[cut:] = frame.iloc[cut:].to_numpy() * noise
    if {"open", "high", "low", "close"} <= set(out.columns):
        prices = out.iloc[cut:][["open", "high", "low", "close"]]
        out.iloc[cut:, out.columns.get_loc("high")] = prices.max(axis=1).to_numpy()
        out.iloc[cut:, out.columns.get_loc("low")] = prices.min(axis=1).to_numpy()
    return out


def _first_change(a: pd.Series, b: pd.Series) -> str | None:
    x, y = a.to_numpy(dtype=np.float64), b.to_numpy(dtype=np.float64)
    same = np.isclose(x, y, rtol=1e-9, atol=0.0) | (np.isnan(x) & np.isnan(y)) | (x == y)
    return None if same.all() else str(a.index[int(np.argmin(same))])


def _compare(result: AuditResult, name: str, a: pd.Series, b: pd.Series) -> None:
    if not a.index.equals(b.index):
        result.leaks[name] = "the set of dates differs"
        return
    result.compared[name] = len(a)
    first = _first_change(a, b)
    if first is not None:
        result.leaks[name] = first


def audit_features(raw: pd.DataFrame, transform: Transform, cutoff, seed: int = 0) -> AuditResult:
    """Each column made by `transform` (features) must not change before the cut-off."""
    cut = _cut_position(raw, cutoff)
    res = AuditResult(raw.index[cut])
    a = _apply(transform, raw)
    b = _apply(transform, perturb(raw, cut, seed=seed), perturbed_series(raw.index[cut], seed=seed))
    before = a.index < raw.index[cut]
    res.perturbed_changed = bool((perturb(raw, cut, seed=seed).iloc[cut] != raw.iloc[cut]).any())
    for col in a.columns:
        if col not in b.columns:
            res.leaks[col] = "column missing after perturbation"
            continue
        _compare(res, f"feature {col}", a.loc[before, col], b.loc[b.index < raw.index[cut], col])
    return res


def _cut_position(raw: pd.DataFrame, cutoff) -> int:
    if isinstance(cutoff, (int, np.integer)):
        return int(cutoff)
    when = day_on(raw.index, cutoff, "cut-off", "--cutoff")
    if not raw.index[0] < when <= raw.index[-1]:
        raise DataError(f"cut-off {when.date()} is outside the data ({raw.index[0].date()} to "
                        f"{raw.index[-1].date()}): choose a --cutoff between those dates")
    return int(raw.index.searchsorted(when))


def _perturbed(raw: pd.DataFrame, cut: int, retrain_every: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, AuditResult]:
    """(the candles through a few folds after the cut-off, the same perturbed from row `cut` on,
    an empty result that records whether the perturbation changed the cut-off's row)."""
    raw = raw.iloc[: cut + 2 * retrain_every]  # a few folds after the cut-off are enough
    res = AuditResult(raw.index[cut])
    pert = perturb(raw, cut, seed=seed)
    res.perturbed_changed = bool((pert.iloc[cut] != raw.iloc[cut]).any())
    return raw, pert, res


def audit_backtest(
    raw: pd.DataFrame,
    settings: Settings,
    bt: BacktestSettings,
    t: trading.TradingSettings,
    transform: Transform | None = None,
    target: str | None = None,
    cutoff=None,
    seed: int = 0,
) -> AuditResult:
    """Run the walk-forward twice, on the data and on it perturbed from `cutoff` on, and
    compare every forecast column, interval and trading position for days <= cutoff.

    Without `transform` the inputs are those users get: `build_inputs` for `settings.data`
    (indicators, exogenous series, which are perturbed too). `transform(raw) -> frame` instead
    gives the model's columns directly (taken as plain data columns). `cutoff` defaults to a
    day in the middle of the second fold, so it tests within-fold and across-fold leaks.
    Shrinkage stays as set; the network's output before shrinkage is compared as well.
    """
    trading.check(t)
    bt = copy.deepcopy(bt)
    settings = copy.deepcopy(settings)
    if target is not None:
        settings.data.target = target
    if transform is not None:  # the given columns are the inputs
        settings.data.features, settings.data.exog = None, None
        build = lambda r, read=None: fill_zeros(_apply(transform, r, read))  # noqa: E731
    else:
        d = settings.data
        build = lambda r, read=None: build_inputs(r, d.target, d.features, d.exog, d.exog_max_age, read)  # noqa: E731
    first = build(raw)
    frame = first.frame if isinstance(first, Inputs) else first
    start = check(frame, settings, bt)
    if cutoff is None:
        when = frame.index[min(start + bt.retrain_every + bt.retrain_every // 2, len(frame) - 1)]
    else:
        when = raw.index[_cut_position(raw, cutoff)]
    cut = int(raw.index.searchsorted(when))
    bt.start = frame.index[start]  # the same folds for both runs
    raw, pert, res = _perturbed(raw, cut, bt.retrain_every, seed)
    runs = [walk_forward(build(r, read), settings, bt, extra=r, network=True)
            for r, read in ((raw, None), (pert, perturbed_series(res.cutoff, seed=seed)))]
    a, b = (r.table.loc[r.table.index <= res.cutoff] for r in runs)
    cols = runs[0].models + ["network"] + [c for c in runs[0].table.columns if c[:2] in ("lo", "hi") and c[2:].isdigit()] + ["vol20"]
    for col in cols:
        _compare(res, col, a[col], b[col])
    ppy = trading.periods_per_year(a.index)
    for m in runs[0].models:
        pa = trading.signal(a, m, t) * trading.size(a, t, ppy)
        pb = trading.signal(b, m, t) * trading.size(b, t, ppy)
        _compare(res, f"position {m}", pd.Series(pa, a.index), pd.Series(pb, b.index))
    return res


def perturbed_hours(hourly: pd.DataFrame, cutoff: pd.Timestamp, end: pd.Timestamp,
                    seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the hourly candles that open before `end`, the same perturbed from the first hour that opens
    at or after `cutoff` on): the daily candles' perturbation, from the same time."""
    hourly = hourly.loc[hourly.index < end]
    return hourly, perturb(hourly, int(hourly.index.searchsorted(cutoff)), seed=seed + 2)


def audit_risk(raw: pd.DataFrame, cutoff, start=None, retrain_every: int = 7, seed: int = 0,
               data: str | None = None, intraday: pd.DataFrame | None = None) -> AuditResult | str:
    """Walk the risk models (every baseline, and the network's head where the history allows) from
    `start` (default: the cut-off falls in the middle of the second fold) over the candles and over
    them perturbed from `cutoff` on, refitted every `retrain_every` days, and compare each model's
    quantiles of every day up to the cut-off. The head's pool (the bundled daily coins but `data`,
    as flows/backtest_risk.risk_part gives it) is perturbed from the cut-off's date on as well, and so
    is `intraday`, the data's hourly candles (data/intraday.py), handed to the walk beside them.
    Returns the one-line reason instead where the risk models do not apply to these candles."""
    cut = _cut_position(raw, cutoff)
    first = cut - retrain_every - retrain_every // 2 if start is None else int(
        raw.index.searchsorted(day_on(raw.index, start, "start", "--start")))
    raw, pert, res = _perturbed(raw, cut, retrain_every, seed)
    with_network = first - 1 >= NetworkRisk().min_history  # returns before the first forecast day
    pools, hours = ({}, {}), (None, None)
    if intraday is not None:
        hours = perturbed_hours(intraday, res.cutoff, raw.index[-1] + pd.Timedelta(days=1), seed)
    if with_network:
        others = daily_coins(but=data)
        moved = {k: perturb(o, int(o.index.searchsorted(res.cutoff.normalize())), seed=seed) for k, o in others.items()}
        pools = (others, moved)
    realized = intraday is not None  # with hourly candles, the models on realized measures too
    try:
        a, b = (walk_forward_risk(candles, start=first, retrain_every=retrain_every, intraday=hourly,
                                  baselines=all_baselines(intraday=realized) + (
                                      [NetworkRisk(seed=seed, pool=pooled_returns(candles, pool))] if with_network else []))
                for candles, pool, hourly in zip((raw, pert), pools, hours))
    except CoincastError as e:  # no open/high/low/close, too little history
        return f"the risk models do not apply to these candles: {str(e).rstrip('.')}"
    upto = a.actual.index <= res.cutoff  # [N]
    for name in a.names:
        qa, qb = a.q(name)[upto], b.q(name)[upto]  # [n, K] each
        same = np.isclose(qa, qb, rtol=1e-9, atol=0.0).all(axis=1)  # [n]
        res.compared[f"risk {name}"] = qa.size
        if not same.all():
            res.leaks[f"risk {name}"] = str(a.actual.index[upto][int(np.argmin(same))])
    return res
