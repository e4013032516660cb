"""A fee-aware trading simulation of a forecast table's signals, with risk management.

Timing: the position for day t is decided at the close of day t-1 from the forecast of
day t's close (known then) and held over day t, so its return is actual/previous - 1.
Every change of position, including a change of size and an exit by stop, pays
fees + slippage in basis points of the traded notional. Stop-loss and take-profit are
checked against day t's high and low (when the table has them); when both are touched
the same day the stop is assumed to have hit first (the pessimistic reading), and a
gap through a level fills at the open.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from coincast.data.frame import bar_length
from coincast.errors import ConfigError


@dataclass
class TradingSettings:
    mode: str = "long_flat"  # or "long_short"
    threshold_pct: float = 0.0  # trade only when the predicted move exceeds this (percent)
    fee_bps: float = 10.0  # per side, on traded notional (Binance spot taker: 10 bps)
    slippage_bps: float = 5.0
    sizing: str = "fixed"  # or "vol": target an annualised volatility
    fraction: float = 1.0  # fixed: share of equity in the position
    vol_target: float = 0.5  # vol sizing: annualised target volatility (0.5 = 50%)
    max_leverage: float = 1.0  # vol sizing: cap on the position size
    stop_loss_pct: float | None = None  # exit when the day moves this far against the position
    take_profit_pct: float | None = None

    @property
    def cost(self) -> float:
        return (self.fee_bps + self.slippage_bps) / 1e4

    def to_dict(self) -> dict:
        return asdict(self)


def parse_number(value, name: str, flag: str) -> float:
    """A number from user input, or a ConfigError saying which flag is wrong."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number (got {value!r}): e.g. {flag} 0.5") from None
    if not math.isfinite(x):
        raise ConfigError(f"{name} must be a finite number (got {value!r})")
    return x


def check(t: TradingSettings) -> TradingSettings:
    for name in ("threshold_pct", "fee_bps", "slippage_bps", "fraction", "vol_target", "max_leverage"):
        parse_number(getattr(t, name), name.replace("_", " "), "--" + name.replace("_", "-"))
    checks = [
        (t.mode in ("long_flat", "long_short"), f"mode must be long_flat or long_short (got {t.mode!r})"),
        (t.sizing in ("fixed", "vol"), f"sizing must be 'fixed' or 'vol' (got {t.sizing!r})"),
        (t.fee_bps >= 0, f"fees cannot be negative (got {t.fee_bps} bps): use --fee-bps 10 for 0.1% per trade"),
        (t.slippage_bps >= 0, f"slippage cannot be negative (got {t.slippage_bps} bps): use --slippage-bps 0 or more"),
        (t.threshold_pct >= 0, f"threshold cannot be negative (got {t.threshold_pct}%): use --threshold 0 or more"),
        (0 < t.fraction <= 10, f"position fraction must be in (0, 10] (got {t.fraction})"),
        (t.vol_target > 0, f"volatility target must be positive (got {t.vol_target})"),
        (t.max_leverage > 0, f"max leverage must be positive (got {t.max_leverage})"),
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


def size(table: pd.DataFrame, t: TradingSettings, ppy: float) -> np.ndarray:
    if t.sizing == "fixed":
        return np.full(len(table), t.fraction)
    vol = table["vol20"].to_numpy() * math.sqrt(ppy)  # realised, known at the close before
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.minimum(t.max_leverage, t.vol_target / vol)
    return np.where(np.isfinite(s), s, 0.0)  # no volatility history yet: stay out


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


def run_strategies(table: pd.DataFrame, models: list[str], t: TradingSettings) -> tuple[dict, dict]:
    """Simulate buy-and-hold and the signal of each forecast column; (metrics, simulations)."""
    check(t)
    ppy = periods_per_year(table.index)
    sims = {"buy_and_hold": simulate(table, np.ones(len(table)), t, stops=False)}
    sz = size(table, t, ppy)
    for m in models:
        sims[m] = simulate(table, signal(table, m, t) * sz, t)
    return {k: metrics(v, ppy) for k, v in sims.items()}, sims


def verdict(results: dict, sharpe_ci: dict | None, model: str = "model") -> str:
    """One plain sentence: did the strategy beat buy-and-hold after costs? Better means a higher
    total return and a higher Sharpe ratio; "significantly" only where the 95% block-bootstrap CI
    of the Sharpe difference (`stats.headline_cis`' sharpe_minus_buy_and_hold) excludes 0."""
    m, b = results[model], results["buy_and_hold"]
    facts = (f"total return {100 * m['total_return']:+.1f}% vs {100 * b['total_return']:+.1f}%, "
             f"Sharpe {m['sharpe']:.2f} vs {b['sharpe']:.2f}, "
             f"max drawdown {100 * m['max_drawdown']:.1f}% vs {100 * b['max_drawdown']:.1f}%")
    defined = sharpe_ci is not None and sharpe_ci.get("lo") is not None
    ci = (f"Sharpe difference 95% block-bootstrap CI [{sharpe_ci['lo']:.2f}, {sharpe_ci['hi']:.2f}]" if defined
          else "Sharpe difference CI undefined")
    better = m["total_return"] > b["total_return"] and m["sharpe"] > b["sharpe"]
    if better and defined and sharpe_ci["lo"] > 0:
        return f"After costs the model's strategy beat buy-and-hold significantly: {facts}; {ci} excludes 0."
    if better:
        return (f"After costs the model's strategy did better than buy-and-hold, but not significantly: {facts}; "
                f"{ci}{' includes 0' if defined else ''}.")
    return f"After costs the model's strategy did NOT beat buy-and-hold: {facts}; {ci}."
