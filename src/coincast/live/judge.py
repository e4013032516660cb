"""The live service's judgements, as pure functions of realised forecast rows.

* Shadow: a challenger is promoted only if its RMSE over its first `shadow` realised forecasts
  is strictly lower than the champion's on exactly the same candles (never on in-sample
  figures). Equal RMSEs (within float rounding, relative TIE_RTOL) are a tie, and a tie keeps
  the champion: with shrinkage on, both serve persistence's price until the stream's record
  shows skill, and a promotion on identical errors would mean nothing. The rule is the lower
  RMSE, not a significant DM test: a shadow period of a week has almost no power, so a test
  would keep a champion trained on ever older data; the guard (below) is where significance
  is asked for, and it sets aside any champion that turns out significantly worse.
* Guard: the champion is set aside for persistence when its live record over the last `guard`
  forecasts is worse than persistence with a one-sided Diebold-Mariano p below ALPHA.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from coincast.evaluation.metrics import diebold_mariano

ALPHA = 0.05
TIE_RTOL = 1e-9  # RMSEs this close (relative) are equal: the same forecasts, up to float rounding


def shadow_verdict(challenger: pd.DataFrame, champion: pd.DataFrame, shadow: int) -> dict | None:
    """Figures of the shadow comparison once the challenger has `shadow` realised forecasts on
    candles the champion also forecast; None while it has fewer. Rows: target_time, error,
    persistence_error (as Registry.scored returns them)."""
    both = challenger.merge(champion, on="target_time", suffixes=("_challenger", "_champion"))
    if len(both) < shadow:
        return None
    both = both.sort_values("target_time").iloc[:shadow]
    e_chal, e_champ = both["error_challenger"].to_numpy(), both["error_champion"].to_numpy()
    e_pers = both["persistence_error_challenger"].to_numpy()
    rmse = {name: float(np.sqrt(np.mean(e**2))) for name, e in
            (("challenger", e_chal), ("champion", e_champ), ("persistence", e_pers))}
    tie = math.isclose(rmse["challenger"], rmse["champion"], rel_tol=TIE_RTOL)
    _, p = diebold_mariano(e_chal**2, e_champ**2)  # one-sided p that the challenger is the more accurate
    return {
        "n": int(len(both)),
        "first": both["target_time"].iloc[0].isoformat(), "last": both["target_time"].iloc[-1].isoformat(),
        "challenger_rmse": rmse["challenger"], "champion_rmse": rmse["champion"],
        "persistence_rmse": rmse["persistence"], "dm_p": p,
        "promote": bool(rmse["challenger"] < rmse["champion"] and not tie), "tie": tie,
    }


def guard_trips(record: dict, guard: int) -> bool:
    """The champion's last `guard` forecasts are worse than persistence, significantly."""
    return (record.get("n", 0) >= guard and record["rmse_ratio"] is not None and record["rmse_ratio"] > 1
            and record["dm_p_worse"] is not None and record["dm_p_worse"] < ALPHA)


def guard_clears(record: dict, guard: int) -> bool:
    """A model's record over `guard` forecasts beats persistence again (ends a fallback)."""
    return record.get("n", 0) >= guard and record["rmse_ratio"] is not None and record["rmse_ratio"] < 1
