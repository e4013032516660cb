"""PNG plots of a forecast table and a training history (matplotlib, no screen needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

COLORS = {"actual": "black", "model": "tab:blue", "persistence": "tab:orange", "drift": "tab:green"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def price_plot(forecast: pd.DataFrame, models: list[str], title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(forecast.index, forecast["actual"], color="black", lw=1.6, label="actual")
    for m in models:
        ax.plot(forecast.index, forecast[m], lw=1, color=COLORS.get(m), label=m, alpha=0.9)
    ax.set_title(f"{title}: predicted vs real price")
    ax.set_ylabel("price")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def change_plot(forecast: pd.DataFrame, model: str = "model") -> bytes:
    prev = forecast["previous"]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(forecast.index, 100 * (forecast["actual"] - prev) / prev, color="black", lw=1, label="real change")
    ax.plot(forecast.index, 100 * (forecast[model] - prev) / prev, color=COLORS["model"], lw=1, label="predicted change")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title("predicted vs real change from the previous step")
    ax.set_ylabel("%")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def confusion_plot(m: dict) -> bytes:
    grid = np.array([[m["tp"], m["fn"]], [m["fp"], m["tn"]]])
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(grid, cmap="Blues")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=13)
    ax.set_xticks([0, 1], ["pred up", "pred down"])
    ax.set_yticks([0, 1], ["real up", "real down"])
    ax.set_title("direction: confusion matrix")
    return _png(fig)


def training_plot(loss: list[float], val_loss: list[float], best_epoch: int) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    epochs = np.arange(1, len(loss) + 1)
    ax.plot(epochs, loss, label="training loss")
    ax.plot(epochs, val_loss, label="validation loss")
    ax.axvline(best_epoch, color="grey", ls="--", lw=0.8, label=f"kept: epoch {best_epoch}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title("training curves")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)
