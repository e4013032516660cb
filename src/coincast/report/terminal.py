"""Compact terminal tables (rich) of a run's scores, for the command line."""

from __future__ import annotations

from rich import box
from rich.table import Table

from coincast.report.columns import ASSETS, TERMINAL, asset_rows, fmt


def terminal_table(metrics: dict, title: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, padding=(0, 1))
    table.add_column("forecast", no_wrap=True)
    for _, header, _ in TERMINAL:
        table.add_column(header, justify="right", no_wrap=True, min_width=5)
    for name, m in metrics.items():
        style = "bold" if name == "model" else None
        table.add_row(name, *(fmt(m.get(k), f) for k, _, f in TERMINAL), style=style)
    return table


def asset_table(per_asset: dict, pooled: dict, models: list[str]) -> Table:
    table = Table(title="per asset (pooled: errors in % of the last price)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, padding=(0, 1))
    table.add_column("asset", no_wrap=True)
    table.add_column("forecast", no_wrap=True)
    for _, header, _ in ASSETS:
        table.add_column(header, justify="right", no_wrap=True)
    for asset, name, m in asset_rows(per_asset, pooled, models):
        table.add_row(asset, name, *(fmt(m.get(k), f) for k, _, f in ASSETS))
    return table
