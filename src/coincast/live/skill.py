"""The live service's shrinkage towards persistence, fitted on its own live record.

As a backtest fits fold k's a on the earlier folds' scored forecasts, the service fits the a of
the candle it is forecasting on the stream's live record: the scored network forecasts of the
stream's champion of the day (`Registry.served_record`: role 'champion', including those made
while the guard served persistence) whose target candles open before the one forecast. Nothing
at or after that candle is read. `models.shrinkage.record_shrinkage` turns the record into a: 0
(persistence) until `MIN_RECORD` forecasts are scored, and whenever the record shows no clear
skill. The challenger in shadow is shrunk with the same a, so the shadow verdict compares like
with like. A model whose settings have `model.shrink` off serves its network's forecast (a = 1).
"""

from __future__ import annotations

import pandas as pd

from coincast.live.registry import Registry
from coincast.models.shrinkage import record_shrinkage, shrunk


def record_a(reg: Registry, stream: str, target: pd.Timestamp) -> tuple[float, int]:
    """(a for the candle opening at `target`, how many scored forecasts it was fitted on)."""
    rows = reg.served_record(stream, target)
    return record_shrinkage(rows["actual"], rows["network"], rows["persistence"]), len(rows)


def served(network: float, previous: float, a: float, figures: dict) -> dict:
    """The row's point, `shrunk` with a (a = 0 is persistence exactly, a = 1 the network's own),
    its 80% and 95% bands (half-widths: the model's conformal quantiles `q80`/`q95`
    of the error relative to the previous close; None without them), network and a."""
    point = shrunk(network, previous, a)
    row = {"point": point, "network": network, "shrink": a}
    for level in (80, 95):
        q = figures.get(f"q{level}")
        row[f"lo{level}"] = None if q is None else point - q * previous
        row[f"hi{level}"] = None if q is None else point + q * previous
    return row
