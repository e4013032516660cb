"""Self-contained HTML pages rendered from the Jinja2 templates in report/templates/.

Every value is autoescaped; numbers are formatted by the filters `fmt` (a metric with its
column's format) and `cell` (any other table cell), and `breakable` lets a long column name
wrap after its underscores; figures are PNGs inlined as base64.
"""

from __future__ import annotations

import base64
from functools import lru_cache

import jinja2
from markupsafe import Markup, escape

from coincast.report import columns


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode()


def _breakable(name) -> Markup:
    """A column name that may wrap after its underscores (rmse_ratio_moving_average)."""
    return Markup(str(escape(name)).replace("_", "_<wbr>"))


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("coincast", "report/templates"),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(fmt=columns.fmt, cell=columns.cell, b64=_b64, breakable=_breakable)
    env.globals.update(
        COLUMNS=columns.COLUMNS, ASSETS=columns.ASSETS, COMPARISON=columns.COMPARISON, RISK=columns.RISK,
        TRADING_KEYS=columns.TRADING_KEYS, asset_rows=columns.asset_rows,
    )
    return env


def render(template: str, **context) -> str:
    """The named template (e.g. "run_report.html") filled in with `context`."""
    return environment().get_template(template).render(**context)
