"""A fee-aware trading simulation of a forecast table's signals, with risk management.

Timing: the position for day t is decided at the close of day t-1 from the forecast of
day t's close (known then) and held over day t, so its return is actual/previous - 1.
Every change of position, including a change of size and an exit by stop, pays
fees + slippage in basis points of the traded notional. Stop-loss and take-profit are
checked against day t's high and low (when the table has them); when both are touched
the same day the stop is assumed to have hit first (the pessimistic reading), and a
gap through a level fills at the open.

Risk forecasts (quantiles of the day's percent log return, made at the close before, as the
point forecast is) add two readings of each day (`RiskForecast`):
- its volatility: the standard deviation of the even grid of quantiles (1..99% for the risk walk's
  levels) taken as equally likely values, divided by that of a standard normal's quantiles on the
  same grid (0.960 at 1..99%), so it is exactly sigma for any normal forecast; the tails beyond the
  outer grid levels are not seen, so for Student-t forecasts it reads 0.91-0.97 of the true
  standard deviation at 4-8 degrees of freedom. Annualised: / 100 (percent) * sqrt(bars per year).
- P(up) = 1 - F(0), the probability of a return strictly above 0 (`evaluation.metrics.up`'s
  "up"), with F interpolated linearly between the quantiles (sorted per day first, the usual
  repair of crossed quantiles) and clipped to the outer levels: 0 below the lowest quantile
  gives 1 - tau_min (0.99 at 1%), above the highest 1 - tau_max (0.01), so P(up) never claims
  more certainty than the levels carry. A day without a forecast (NaN) trades flat.
Sizing "forecast_vol" targets `vol_target` with that volatility (capped at `max_leverage`), and
the "p_up" signal is long when P(up) > 0.5 + p_margin, short (long_short only) when below
0.5 - p_margin, flat otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtri

from coincast.data.frame import bar_length
from coincast.errors import ConfigError
from coincast.evaluation.risk import check_levels, crps_columns

SIZINGS = ("fixed", "vol", "forecast_vol")


@dataclass
class TradingSettings:
    mode: str = "long_flat"  # or "long_short"
    threshold_pct: float = 0.0  # trade only when the predicted move exceeds this (percent)
    fee_bps: float = 10.0  # per side, on traded notional (Binance spot taker: 10 bps)
    slippage_bps: float = 5.0
    sizing: str = "fixed"  # "vol": target an annualised volatility with the realised vol20; "forecast_vol": with a risk forecast's
    fraction: float = 1.0  # fixed: share of equity in the position
    vol_target: float = 0.5  # vol sizing: annualised target volatility (0.5 = 50%)
    max_leverage: float = 1.0  # vol sizing: cap on the position size
    p_margin: float = 0.0  # the P(up) strategy: long above 0.5 + p_margin, short (long_short) below 0.5 - p_margin
    stop_loss_pct: float | None = None  # exit when the day moves this far against the position
    take_profit_pct: float | None = None

    @property
    def cost(self) -> float:
        return (self.fee_bps + self.slippage_bps) / 1e4

    def to_dict(self) -> dict:
        return asdict(self)


def parse_number(value, name: str, flag: str, example: str = "0.5") -> float:
    """A number from user input, or a ConfigError saying which flag is wrong."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number (got {value!r}): e.g. {flag} {example}") from None
    if not math.isfinite(x):
        raise ConfigError(f"{name} must be a finite number (got {value!r})")
    return x


def check(t: TradingSettings) -> TradingSettings:
    for name in ("threshold_pct", "fee_bps", "slippage_bps", "fraction", "vol_target", "max_leverage", "p_margin"):
        parse_number(getattr(t, name), name.replace("_", " "), "--" + name.replace("_", "-"), "0.05" if name == "p_margin" else "0.5")
    checks = [
        (t.mode in ("long_flat", "long_short"), f"mode must be long_flat or long_short (got {t.mode!r})"),
        (t.sizing in SIZINGS, f"sizing must be 'fixed', 'vol' or 'forecast_vol' (got {t.sizing!r}): e.g. --sizing vol"),
        (t.fee_bps >= 0, f"fees cannot be negative (got {t.fee_bps} bps): use --fee-bps 10 for 0.1% per trade"),
        (t.slippage_bps >= 0, f"slippage cannot be negative (got {t.slippage_bps} bps): use --slippage-bps 0 or more"),
        (t.threshold_pct >= 0, f"threshold cannot be negative (got {t.threshold_pct}%): use --threshold 0 or more"),
        (0 < t.fraction <= 10, f"position fraction must be in (0, 10] (got {t.fraction})"),
        (t.vol_target > 0, f"volatility target must be positive (got {t.vol_target})"),
        (t.max_leverage > 0, f"max leverage must be positive (got {t.max_leverage})"),
        (0 <= t.p_margin < 0.5, f"P(up) margin must be in [0, 0.5) (got {t.p_margin}): e.g. --p-margin 0.05 "
                                "trades when P(up) is above 0.55 or below 0.45"),
        (t.stop_loss_pct is None or 0 < t.stop_loss_pct < 100, f"stop loss must be in (0, 100) percent (got {t.stop_loss_pct})"),
        (t.take_profit_pct is None or t.take_profit_pct > 0, f"take profit must be a positive percent (got {t.take_profit_pct})"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return t


def periods_per_year(index: pd.Index) -> float:
    """Bars per year (crypto trades every day: 365 for daily bars; 365 without dates)."""
    bar = bar_length(index)
    return pd.Timedelta(days=365) / bar if bar is not None else 365.0


def signal(table: pd.DataFrame, column: str, t: TradingSettings) -> np.ndarray:
    """+1 long, -1 short (long_short only), 0 flat, from the predicted move vs the threshold."""
    move = table[column].to_numpy() / table["previous"].to_numpy() - 1.0
    thr = t.threshold_pct / 100
    sig = np.where(move > thr, 1.0, 0.0)
    if t.mode == "long_short":
        sig = np.where(move < -thr, -1.0, sig)
    return np.nan_to_num(sig)


def size(table: pd.DataFrame, t: TradingSettings, ppy: float, forecast_vol: np.ndarray | None = None) -> np.ndarray:
    """[N] Position size per day: the fixed fraction, or the volatility target over the realised
    vol20 ("vol") or over `forecast_vol` [N], a risk forecast's annualised volatility ("forecast_vol")."""
    if t.sizing == "fixed":
        return np.full(len(table), t.fraction)
    if t.sizing == "vol":
        return vol_size(table["vol20"].to_numpy() * math.sqrt(ppy), t)  # realised, known at the close before
    if forecast_vol is None:
        raise ConfigError("sizing forecast_vol needs a risk forecast (daily open/high/low/close candles with "
                          "a year of history before the test): use --sizing vol for the realised volatility")
    return vol_size(forecast_vol, t)


def vol_size(vol: np.ndarray, t: TradingSettings) -> np.ndarray:
    """[N] min(max_leverage, vol_target / vol) for annualised volatilities vol [N]; 0 where vol is unknown."""
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.minimum(t.max_leverage, t.vol_target / np.asarray(vol, dtype=np.float64))
    return np.where(np.isfinite(s), s, 0.0)  # no volatility history or forecast: stay out


@dataclass
class RiskForecast:
    """A risk model's quantiles of each table day's percent log return, made at the close before."""

    name: str  # the risk model, e.g. garch_t
    label: str  # its name in sentences, e.g. GARCH(1,1)-t
    quantiles: np.ndarray  # [N, K] one row per table day; a NaN row: no forecast that day
    tau: np.ndarray  # [K] increasing levels in (0, 1), holding an even grid (1..99%)

    def vol(self, ppy: float) -> np.ndarray:
        """[N] Annualised volatility (a fraction: 0.5 = 50%) of each day's forecast; NaN without one."""
        return daily_vol(self.quantiles, self.tau) / 100 * math.sqrt(ppy)

    def p_up(self) -> np.ndarray:
        """[N] P(the day's return > 0); NaN without a forecast."""
        return p_up(self.quantiles, self.tau)


def daily_vol(q: np.ndarray, tau) -> np.ndarray:
    """[N] The standard deviation, in the quantiles' units, of the distribution the even grid of
    quantiles in q [N, K] describes (equally likely values), scaled to be exact for a normal."""
    tau = check_levels(tau)
    grid = crps_columns(tau)  # [G] the even grid's columns (the 99 of 1..99% among the 101 levels)
    if grid is None:
        raise ValueError("forecast volatility needs quantiles on an even grid of levels k/(K+1), e.g. 1..99%")
    normal = float(np.std(ndtri(tau[grid])))  # the same reading of a standard normal's quantiles
    return np.std(np.asarray(q, dtype=np.float64)[:, grid], axis=1) / normal  # [N]


def p_up(q: np.ndarray, tau) -> np.ndarray:
    """[N] 1 - F(0) for quantiles q [N, K] at levels tau [K]: F linear between the (sorted)
    quantiles, tau_min below the lowest and tau_max above the highest (the module's rule)."""
    tau = check_levels(tau)
    q = np.sort(np.asarray(q, dtype=np.float64), axis=1)  # [N, K]
    n, k = q.shape
    at_or_below = (q <= 0).sum(axis=1)  # [N] quantiles at or below 0: F(0) lies between levels j-1 and j
    hi = np.clip(at_or_below, 1, k - 1)  # [N]
    lo = hi - 1
    rows = np.arange(n)
    q_lo, q_hi = q[rows, lo], q[rows, hi]  # [N]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.clip((0.0 - q_lo) / (q_hi - q_lo), 0.0, 1.0)  # [N] 0 at q_lo, 1 at q_hi
    f0 = tau[lo] + w * (tau[hi] - tau[lo])  # [N] interpolated between the two levels around 0
    f0 = np.where(at_or_below == 0, tau[0], np.where(at_or_below == k, tau[-1], f0))
    return np.where(np.isfinite(q).all(axis=1), 1.0 - f0, np.nan)


def p_signal(p: np.ndarray, t: TradingSettings) -> np.ndarray:
    """[N] +1 long when P(up) > 0.5 + p_margin, -1 short (long_short only) below 0.5 - p_margin, else 0."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        sig = np.where(p > 0.5 + t.p_margin, 1.0, 0.0)
        if t.mode == "long_short":
            sig = np.where(p < 0.5 - t.p_margin, -1.0, sig)
    return sig  # NaN compares False: no forecast, flat


def simulate(table: pd.DataFrame, position: np.ndarray, t: TradingSettings, stops: bool = True) -> pd.DataFrame:
    """Daily gross and net returns, equity and drawdown for a target position per day."""
    pos = np.asarray(position, dtype=np.float64)  # [N] held from the previous close
    prev, close = table["previous"].to_numpy(), table["actual"].to_numpy()
    ret = close / prev - 1.0
    exited = np.zeros(len(pos), dtype=bool)
    has_hl = {"high", "low"} <= set(table.columns)
    if stops and has_hl and (t.stop_loss_pct or t.take_profit_pct):
        high, low = table["high"].to_numpy(), table["low"].to_numpy()
        opn = table["open"].to_numpy() if "open" in table.columns else prev
        ret = ret.copy()
        long, short = pos > 0, pos < 0
        done = np.zeros(len(pos), dtype=bool)
        if t.stop_loss_pct:
            sl = t.stop_loss_pct / 100
            hit_l = long & (low <= prev * (1 - sl))
            hit_s = short & (high >= prev * (1 + sl))
            ret = np.where(hit_l, np.minimum(opn / prev - 1, -sl), ret)  # gap below: fill at the open
            ret = np.where(hit_s, np.maximum(opn / prev - 1, sl), ret)
            done |= hit_l | hit_s
        if t.take_profit_pct:
            tp = t.take_profit_pct / 100
            hit_l = long & ~done & (high >= prev * (1 + tp))
            hit_s = short & ~done & (low <= prev * (1 - tp))
            ret = np.where(hit_l, np.maximum(opn / prev - 1, tp), ret)
            ret = np.where(hit_s, np.minimum(opn / prev - 1, -tp), ret)
            done |= hit_l | hit_s
        exited = done
    end_pos = np.where(exited, 0.0, pos)  # position held at the close
    before = np.concatenate([[0.0], end_pos[:-1]])  # start flat
    traded = np.abs(pos - before) + np.abs(np.where(exited, pos, 0.0))
    gross = pos * ret
    net = gross - t.cost * traded
    equity = np.cumprod(1 + net)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    return pd.DataFrame({
        "position": pos, "gross": gross, "net": net, "traded": traded,
        "entries": (np.abs(pos - before) > 1e-12) & (pos != 0), "exited": exited,
        "equity": equity, "drawdown": equity / peak - 1,
    }, index=table.index)


def metrics(sim: pd.DataFrame, ppy: float) -> dict:
    """The usual performance numbers of a simulated daily net-return series."""
    net = sim["net"].to_numpy()
    n = len(net)
    years = n / ppy
    final = float(sim["equity"].iloc[-1]) if n else 1.0
    sd = float(net.std(ddof=1)) if n > 1 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(net, 0.0) ** 2))) if n else 0.0
    cagr = final ** (1 / years) - 1 if years > 0 and final > 0 else -1.0
    mdd = float(sim["drawdown"].min()) if n else 0.0
    active = sim["position"].to_numpy() != 0
    changes = int((sim["traded"] > 1e-12).sum())
    return {
        "total_return": final - 1,
        "cagr": cagr,
        "ann_vol": sd * math.sqrt(ppy),
        "sharpe": float(net.mean() / sd * math.sqrt(ppy)) if sd > 0 else 0.0,
        "sortino": float(net.mean() / downside * math.sqrt(ppy)) if downside > 0 else 0.0,
        "max_drawdown": mdd,
        "calmar": cagr / abs(mdd) if mdd < 0 else None,
        "hit_rate": float((net[active] > 0).mean()) if active.any() else None,
        "turnover": float(sim["traded"].sum() / years) if years > 0 else 0.0,  # notional per year, x equity
        "exposure": float(active.mean()) if n else 0.0,
        "avg_abs_position": float(np.abs(sim["position"]).mean()) if n else 0.0,
        "n_trades": changes,
        "stops_hit": int(sim["exited"].sum()),
        "days": n,
    }


RISK_STRATEGIES = ("p_up", "model_vol_target")  # the strategies a risk forecast adds


def run_strategies(table: pd.DataFrame, models: list[str], t: TradingSettings,
                   risk: RiskForecast | None = None) -> tuple[dict, dict]:
    """Simulate buy-and-hold and the signal of each forecast column, each sized as `t` says;
    (metrics, simulations). Given a risk forecast of the table's days, also "p_up" (its P(up)
    signal, sized as `t` says) and "model_vol_target" (the model's signal sized to the forecast's
    volatility, whatever `t.sizing`; the same as "model" under sizing forecast_vol)."""
    check(t)
    ppy = periods_per_year(table.index)
    sims = {"buy_and_hold": simulate(table, np.ones(len(table)), t, stops=False)}
    vol = None if risk is None else risk.vol(ppy)  # [N]
    sz = size(table, t, ppy, vol)
    for m in models:
        sims[m] = simulate(table, signal(table, m, t) * sz, t)
    if risk is not None:
        sims["p_up"] = simulate(table, p_signal(risk.p_up(), t) * sz, t)
        sims["model_vol_target"] = simulate(table, signal(table, "model", t) * vol_size(vol, t), t)
    return {k: metrics(v, ppy) for k, v in sims.items()}, sims


def verdict(results: dict, sharpe_ci: dict | None, model: str = "model", label: str = "the model's strategy") -> str:
    """One plain sentence: did the strategy beat buy-and-hold after costs? Better means a higher
    total return and a higher Sharpe ratio; "significantly" only where the 95% block-bootstrap CI
    of the Sharpe difference (`stats.headline_cis`' sharpe_minus_buy_and_hold) excludes 0."""
    m, b = results[model], results["buy_and_hold"]
    facts = (f"total return {100 * m['total_return']:+.1f}% vs {100 * b['total_return']:+.1f}%, "
             f"Sharpe {m['sharpe']:.2f} vs {b['sharpe']:.2f}, "
             f"max drawdown {100 * m['max_drawdown']:.1f}% vs {100 * b['max_drawdown']:.1f}%")
    defined = sharpe_ci is not None and sharpe_ci.get("lo") is not None
    ci = (f"Sharpe difference 95% block-bootstrap CI [{sharpe_ci['lo']:.2f}, {sharpe_ci['hi']:.2f}]" if defined
          else "it never traded, so its Sharpe difference has no CI" if m.get("n_trades") == 0
          else "Sharpe difference CI undefined")
    better = m["total_return"] > b["total_return"] and m["sharpe"] > b["sharpe"]
    if better and defined and sharpe_ci["lo"] > 0:
        return f"After costs {label} beat buy-and-hold significantly: {facts}; {ci} excludes 0."
    if better:
        return (f"After costs {label} did better than buy-and-hold, but not significantly: {facts}; "
                f"{ci}{' includes 0' if defined else ''}.")
    return f"After costs {label} did NOT beat buy-and-hold: {facts}; {ci}."
