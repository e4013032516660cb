"""What each table shows and how its numbers read: (key, header, format) per column.

Shared by the HTML reports and the terminal tables; `fmt` formats a metric and `cell` any
other table cell ("–" for a missing or non-finite value in both).
"""

from __future__ import annotations

import math

COLUMNS = [  # the run's and the backtest's model-vs-baselines table
    ("mse_norm", "MSE (norm.)", "{:.5f}"),
    ("rmse", "RMSE", "{:,.2f}"),
    ("mae", "MAE", "{:,.2f}"),
    ("mape", "MAPE %", "{:.2f}"),
    ("rmse_ratio", "RMSE / pers.", "{:.3f}"),
    ("dm_p_vs_persistence", "DM p", "{:.3g}"),
    ("accuracy", "dir. acc.", "{:.3f}"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("f1", "F1", "{:.3f}"),
    ("mcc", "MCC", "{:.3f}"),
]

TERMINAL = [  # a compact subset that fits 80 columns
    ("mse_norm", "MSE norm", "{:.4f}"),
    ("rmse", "RMSE", "{:,.1f}"),
    ("rmse_ratio", "x pers", "{:.3f}"),
    ("dm_p_vs_persistence", "DM p", "{:.2g}"),
    ("accuracy", "acc", "{:.3f}"),
    ("precision", "prec", "{:.3f}"),
    ("recall", "rec", "{:.3f}"),
    ("f1", "F1", "{:.3f}"),
]

ASSETS = [  # the per-asset summary, model rows only
    ("rmse_ratio", "RMSE / pers.", "{:.3f}"),
    ("dm_p_vs_persistence", "DM p", "{:.3g}"),
    ("mape", "MAPE %", "{:.2f}"),
    ("accuracy", "dir. acc.", "{:.3f}"),
    ("f1", "F1", "{:.3f}"),
]

COMPARISON = [  # extra inputs vs the price-only model
    ("rmse", "RMSE", "{:,.4g}"),
    ("mae", "MAE", "{:,.4g}"),
    ("mape", "MAPE %", "{:.2f}"),
    ("rmse_ratio", "RMSE / pers.", "{:.3f}"),
    ("accuracy", "dir. acc.", "{:.3f}"),
    ("f1", "F1", "{:.3f}"),
]

RISK = [  # the risk baselines of a backtest: scores of their quantiles of each day's percent log return
    ("crps", "CRPS", "{:.4f}"),
    ("crps_ratio", "CRPS / empirical", "{:.3f}"),
    ("dm_p", "DM p", "{:.3g}"),
    ("crps_ratio_garch", "CRPS / GARCH-t", "{:.3f}"),
    ("dm_p_garch", "p vs GARCH-t", "{:.3g}"),
    ("qlike_ratio_garch", "QLIKE / GARCH-t", "{:.3f}"),
    ("coverage_80", "cov. 80%", "{:.1%}"),
    ("width_80", "width 80%", "{:.2f}"),
    ("coverage_95", "cov. 95%", "{:.1%}"),
    ("width_95", "width 95%", "{:.2f}"),
    ("var5_breaches", "5% VaR breaches", "{:d}"),
    ("var5_kupiec_p", "5% VaR Kupiec p", "{:.3g}"),
    ("var5_christoffersen_p", "5% VaR Christoffersen p", "{:.3g}"),
]

TRADING_KEYS = ["total_return", "cagr", "ann_vol", "sharpe", "sortino", "max_drawdown", "calmar",
                "hit_rate", "turnover", "exposure", "n_trades", "stops_hit"]


def missing(v) -> bool:
    """None, or a float that is NaN or infinite."""
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def fmt(v, spec: str) -> str:
    """A metric: `spec.format(v)`, "–" when missing."""
    return "–" if missing(v) else spec.format(v)


def cell(v, spec: str = "{:,.4g}") -> str:
    """Any table cell: floats by `spec`, anything else as text, "–" when missing."""
    if missing(v):
        return "–"
    return spec.format(v) if isinstance(v, float) else str(v)


def asset_rows(per_asset: dict, pooled: dict, models: list[str]):
    """(asset, forecast, metrics) for every asset, then the pooled scores."""
    for asset, metrics in [*per_asset.items(), ("pooled", pooled)]:
        for m in models:
            yield asset, m, metrics[m]
