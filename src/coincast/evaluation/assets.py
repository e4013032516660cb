"""Several assets in one run: the pooled forecast table and scores per asset and pooled.

Each asset is scored in its own price units. Pooled scores divide every price by the row's
previous price first (`compare.relative`), so an asset at $60,000 and one at $0.50 weigh
alike: pooled RMSE and MAE are in percent of the last price.
"""

from __future__ import annotations

import html

import pandas as pd
from rich import box
from rich.table import Table

from coincast.evaluation.compare import relative
from coincast.evaluation.metrics import score

SHOWN = [  # (key, header, format): the per-asset summary, model rows only
    ("rmse_ratio", "RMSE / pers.", "{:.3f}"),
    ("dm_p_vs_persistence", "DM p", "{:.3g}"),
    ("mape", "MAPE %", "{:.2f}"),
    ("accuracy", "dir. acc.", "{:.3f}"),
    ("f1", "F1", "{:.3f}"),
]


def pool(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One forecast table for all assets, with an `asset` column first (dates repeat)."""
    parts = [t.assign(asset=a)[["asset", *t.columns]] for a, t in tables.items()]
    return pd.concat(parts)


def scores(tables: dict[str, pd.DataFrame], models: list[str]) -> tuple[dict, dict]:
    """(pooled metrics on relative prices, {asset: metrics in its own units})."""
    per_asset = {a: score(t, models) for a, t in tables.items()}
    return score(relative(pool(tables)), models), per_asset


def _rows(per_asset: dict, pooled: dict, models: list[str]):
    for asset, metrics in [*per_asset.items(), ("pooled", pooled)]:
        for m in models:
            yield asset, m, metrics[m]


def _fmt(m: dict, key: str, fmt: str) -> str:
    v = m.get(key)
    return "–" if v is None else fmt.format(v)


def terminal_table(per_asset: dict, pooled: dict, models: list[str]) -> Table:
    table = Table(title="per asset (pooled: errors in % of the last price)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, padding=(0, 1))
    table.add_column("asset", no_wrap=True)
    table.add_column("forecast", no_wrap=True)
    for _, header, _ in SHOWN:
        table.add_column(header, justify="right", no_wrap=True)
    for asset, name, m in _rows(per_asset, pooled, models):
        table.add_row(asset, name, *(_fmt(m, k, f) for k, _, f in SHOWN))
    return table


def html_table(per_asset: dict, pooled: dict, models: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in SHOWN)
    rows = "".join(
        f"<tr><th>{html.escape(a)}</th><th>{html.escape(n)}</th>{''.join(f'<td>{_fmt(m, k, f)}</td>' for k, _, f in SHOWN)}</tr>"
        for a, n, m in _rows(per_asset, pooled, models)
    )
    return (
        "<p>One network trained on the windows of every asset; each asset tested on its own last "
        "part. Pooled: prices as a percentage of each row's previous price, so assets weigh alike "
        "(pooled RMSE and MAE are in % of the last price).</p>"
        f"<table><tr><th>asset</th><th>forecast</th>{head}</tr>{rows}</table>"
    )
