"""Did the extra inputs help? The model with indicators/exogenous series vs the same model
on price-only inputs, trained and tested on the same windows, with a Diebold-Mariano test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coincast.evaluation.metrics import diebold_mariano, outcome

PRICE_ONLY = "price_only"


def relative(table: pd.DataFrame) -> pd.DataFrame:
    """Every price column as a percentage of the row's previous price: assets of any price
    level pool. Errors become percent of the last price; directions, MAPE, the normalised
    MSE and Diebold-Mariano tests are unchanged by the rescaling.
    """
    prices = [c for c in table.columns if c != "asset"]
    return 100.0 * table[prices].div(table["previous"], axis=0)


def compare(table: pd.DataFrame, extras: list[str], price_only: list[str], alpha: float = 0.05) -> dict:
    """Squared-error comparison of `model` and `price_only` columns of a forecast table.

    `extras`: names of the extra inputs (for the sentence); `price_only`: the columns the
    price-only model saw. Returns RMSEs, their ratio, the DM statistic, the one-sided p that
    the extra inputs are more accurate, the two-sided p, and one plain sentence.
    """
    actual = table["actual"].to_numpy()  # [N]
    err_x = (table["model"].to_numpy() - actual) ** 2  # [N]
    err_p = (table[PRICE_ONLY].to_numpy() - actual) ** 2  # [N]
    stat, p_better = diebold_mariano(err_x, err_p)
    p_two = float(min(1.0, 2 * min(p_better, 1 - p_better)))
    rmse_x, rmse_p = float(np.sqrt(err_x.mean())), float(np.sqrt(err_p.mean()))
    ratio = rmse_x / rmse_p if rmse_p else None
    return {
        "extra_inputs": extras,
        "price_only_inputs": price_only,
        "rmse_with_extras": rmse_x,
        "rmse_price_only": rmse_p,
        "rmse_ratio": ratio,
        "dm_stat": stat,
        "dm_p_extras_better": p_better,
        "dm_p_two_sided": p_two,
        "sentence": sentence(extras, ratio, p_better, alpha),
    }


def sentence(extras: list[str], ratio: float | None, p_better: float, alpha: float = 0.05) -> str:
    """One plain sentence: did the extra inputs help? `p_better`: the one-sided Diebold-Mariano p
    that they are more accurate; "significantly" only where that test (or the one the other way,
    1 - p_better) rejects at level `alpha`."""
    names = ", ".join(extras)
    if ratio is None:
        return f"Adding {names} could not be compared: the price-only model made no errors at all."
    kind, p = outcome(ratio, p_better, alpha)
    lost = f"Adding {names} did NOT improve accuracy: RMSE {ratio:.3f}x the price-only model's, "
    return {
        "better": f"Adding {names} improved accuracy significantly: RMSE {ratio:.3f}x the price-only model's "
                  f"(Diebold-Mariano one-sided p = {p:.3g}).",
        "lower": f"Adding {names} lowered the RMSE to {ratio:.3f}x the price-only model's, but not significantly "
                 f"(Diebold-Mariano one-sided p = {p:.3g}): no evidence the extra inputs help.",
        "worse": lost + f"significantly worse (Diebold-Mariano one-sided p = {p:.3g} for the price-only model being better).",
        "higher": lost + f"a difference that is not significant (Diebold-Mariano one-sided p = {p:.3g} for the price-only "
                  "model being better).",
    }[kind]

