"""The run's summary: a compact terminal table and a self-contained HTML report."""

from __future__ import annotations

import base64
import html

from rich import box
from rich.table import Table

COLUMNS = [  # (key, header, format)
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


def _fmt(m: dict, key: str, fmt: str) -> str:
    v = m.get(key)
    return "–" if v is None else fmt.format(v)


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


def terminal_table(metrics: dict, title: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, padding=(0, 1))
    table.add_column("forecast", no_wrap=True)
    for _, header, _ in TERMINAL:
        table.add_column(header, justify="right", no_wrap=True, min_width=5)
    for name, m in metrics.items():
        style = "bold" if name == "model" else None
        table.add_row(name, *(_fmt(m, k, f) for k, _, f in TERMINAL), style=style)
    return table


def _table_html(metrics: dict) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in COLUMNS)
    rows = []
    for name, m in metrics.items():
        cells = "".join(f"<td>{_fmt(m, k, f)}</td>" for k, _, f in COLUMNS)
        cls = ' class="model"' if name == "model" else ""
        rows.append(f"<tr{cls}><th>{html.escape(name)}</th>{cells}</tr>")
    return f"<table><tr><th>forecast</th>{head}</tr>{''.join(rows)}</table>"


def _kv_html(items: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in items.items())
    return f"<table class='kv'>{rows}</table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
table.kv th, table.kv td { text-align: left; }
tr.model { background: #eef4ff; font-weight: bold; }
.verdict { font-size: 1.15em; padding: 0.7em; background: #f6f6f6; border-left: 4px solid #36c; margin: 0.4em 0; }
figure { display: inline-block; margin: 0.5em; } img { max-width: 100%; }
"""


def page(title: str, body: str) -> str:
    """A self-contained HTML page: the shared style, a heading, the body."""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def figures_html(images: dict[str, bytes]) -> str:
    """PNG images inlined as base64 figures."""
    return "".join(
        f"<figure><img alt='{html.escape(n)}' src='data:image/png;base64,{base64.b64encode(b).decode()}'>"
        f"<figcaption>{html.escape(n)}</figcaption></figure>"
        for n, b in images.items()
    )


def html_report(
    title: str, verdict: str, summary: dict, metrics: dict, rules: dict, images: dict[str, bytes],
    sections: list[tuple[str, str]] = (),
) -> str:
    """One HTML file with everything inlined (images as base64), readable offline.

    `sections`: extra (heading, HTML body) parts shown after the main table.
    """
    extra = "".join(f"<h2>{html.escape(h)}</h2>{body}" for h, body in sections)
    return page(title, f"""<p class="verdict">{html.escape(verdict)}</p>
<h2>Model vs baselines (test period)</h2>
<p>Persistence predicts "tomorrow = today"; drift adds the window's average step; always-up
says "up" every day. A model is only useful where it beats them. Direction: up when the
forecast is above the previous price. DM p: one-sided Diebold-Mariano (HLN) p-value that
the forecast's squared errors are smaller than persistence's.</p>
{_table_html(metrics)}
{extra}
<h2>Run</h2>{_kv_html(summary)}
<h2>Column normalisation</h2>
<p>ratio: x / x<sub>0</sub> - 1 by the window's first row (the tutorial's rule); shift:
(x - x<sub>0</sub>) / s with s the column's standard deviation on training rows, for columns
that reach zero or go negative; standard: (x - m) / s with the training rows' mean and standard
deviation (indicators, exogenous series); none: as it is (log returns).</p>
{_kv_html(rules)}
<h2>Plots</h2>{figures_html(images)}""")
