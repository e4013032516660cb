"""Write a `coincast evaluate` run (flows/evaluate.py) into its folder: evaluation.json (the rows
and how they were made), evaluation.csv (the rows), skill.png (per coin and timeframe: each
preset's RMSE ratio to persistence, with its Diebold-Mariano p) and a self-contained report.html
with the table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from coincast import io
from coincast.report.html import render
from coincast.report.plots import _png, plt

# (key, header) of the report's table, in the order benchmarks/skill.py's BENCHMARKS.md table has them
TABLE = [("coin", "coin"), ("timeframe", "timeframe"), ("preset", "preset"), ("days", "days"), ("steps", "steps"),
         ("rmse_ratio", "RMSE / pers."), ("mae_ratio", "MAE / pers."), ("dm_p", "DM p"), ("accuracy", "dir. acc."),
         ("always_up_rate", "always-up rate"), ("p_vs_50", "p vs 50%"), ("p_vs_always_up", "p vs always-up"),
         ("mean_shrink", "mean a"), ("seconds", "s")]


def skill_plot(rows: list[dict]) -> bytes:
    """One panel per coin and timeframe: a bar per preset at its RMSE ratio to persistence (below 1:
    better than persistence), labelled with the one-sided DM p that the model is the more accurate."""
    frame = pd.DataFrame(rows)
    panels = list(dict.fromkeys(zip(frame["coin"], frame["timeframe"])))
    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.0, 3.2 * len(panels)), 3.6), squeeze=False, sharey=True)
    for ax, (coin, timeframe) in zip(axes[0], panels):
        part = frame[(frame["coin"] == coin) & (frame["timeframe"] == timeframe)]
        ratio = part["rmse_ratio"].to_numpy(dtype=float)
        bars = ax.bar(part["preset"], ratio - 1, bottom=1, color=["tab:green" if r < 1 else "tab:red" for r in ratio],
                      alpha=0.7)  # from persistence's 1: up is worse, down is better
        for bar, r, p in zip(bars, ratio, part["dm_p"]):
            ax.annotate(f"{r:.3f}\np={p:.2g}", (bar.get_x() + bar.get_width() / 2, r), ha="center",
                        va="bottom" if r >= 1 else "top", fontsize=8)
        ax.axhline(1.0, color="tab:orange", lw=1, label="persistence")
        ax.set_title(f"{coin} {timeframe}")
        ax.tick_params(axis="x", labelrotation=30)
    axes[0][0].set_ylabel("RMSE / persistence")
    lo, hi = float(frame["rmse_ratio"].min()), float(frame["rmse_ratio"].max())
    pad = 0.15 * max(hi - lo, 0.02)  # room for the labels
    axes[0][0].set_ylim(min(lo, 1.0) - pad, max(hi, 1.0) + pad)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _png(fig)


def write_evaluation(folder: Path, rows: list[dict], meta: dict) -> None:
    io.write_json(folder / "evaluation.json", {"meta": meta, "rows": rows})
    flat = [{k: " ".join(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows]  # nodes: space-separated
    io.write_text(folder / "evaluation.csv", pd.DataFrame(flat).to_csv(index=False))
    png = skill_plot(rows)
    io.write_bytes(folder / "skill.png", png)
    table = pd.DataFrame([{header: r.get(key) for key, header in TABLE} for r in rows])
    io.write_text(folder / "report.html", render("evaluate_report.html", title="coincast evaluate: walk-forward skill",
                                                 meta=meta, table=table, images={"RMSE ratio to persistence and DM p, per coin and timeframe": png}))
