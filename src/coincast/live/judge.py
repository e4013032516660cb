"""The live service's judgements, as pure functions of realised forecast rows.

* Shadow: a challenger is judged on its first `shadow` realised forecasts against the
  champion's on exactly the same candles (never on in-sample figures). On a stream whose models
  forecast the distribution too (daily streams: live/risk.py), on two scores, the point RMSE and
  the mean CRPS of the served risk model: it is promoted when it is no worse on either and
  strictly lower on at least one. Otherwise on the RMSE alone: promoted only on a strictly lower
  one. Equal scores (within float rounding, relative TIE_RTOL) are a tie, and a tie on every
  score judged keeps the champion: with shrinkage on, both serve persistence's price until the
  stream's record shows skill (their RMSEs tie), so there the distribution decides, and a
  promotion on identical errors would mean nothing. The rule is the lower
  RMSE, not a significant DM test: a shadow period of a week has almost no power, so a test
  would keep a champion trained on ever older data; the guard (below) is where significance
  is asked for, and it sets aside any champion that turns out significantly worse.
* Risk guard: the champion's served risk model (live/risk.py) keeps being served only while it
  has skill over GARCH(1,1)-t: its mean CRPS over the last `guard` candles both forecast is below
  GARCH-t's on the same candles (ratio < 1, beyond TIE_RTOL). With no skill (ratio >= 1) GARCH-t's
  distribution is served until the ratio is below 1 again. The rule needs no significance: the
  two forecasts are near each other, GARCH-t is the benchmark, and a model that does not beat it
  on the live record has earned nothing by being served.
* Guard: the champion is set aside for persistence when its live record over the last `guard`
  forecasts is worse than persistence with a one-sided Diebold-Mariano p below ALPHA.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from coincast.evaluation.metrics import diebold_mariano
from coincast.models.risk_baselines import GarchT

ALPHA = 0.05
GARCH = GarchT.name  # the risk benchmark
TIE_RTOL = 1e-9  # RMSEs this close (relative) are equal: the same forecasts, up to float rounding


def shadow_verdict(challenger: pd.DataFrame, champion: pd.DataFrame, shadow: int,
                   challenger_risk: pd.DataFrame | None = None, champion_risk: pd.DataFrame | None = None) -> dict | None:
    """Figures of the shadow comparison once the challenger has `shadow` realised forecasts on
    candles the champion also forecast; None while it has fewer. Rows: target_time, error,
    persistence_error (as Registry.scored returns them); `*_risk`: target_time, crps of each
    one's served risk model (Registry.risk_scored), judged where both cover those candles."""
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
    verdict = {
        "n": int(len(both)),
        "first": both["target_time"].iloc[0].isoformat(), "last": both["target_time"].iloc[-1].isoformat(),
        "challenger_rmse": rmse["challenger"], "champion_rmse": rmse["champion"],
        "persistence_rmse": rmse["persistence"], "dm_p": p, "tie": tie,
        "promote": bool(rmse["challenger"] < rmse["champion"] and not tie),
    }
    crps = _crps_on(both["target_time"], challenger_risk, champion_risk)
    if crps is not None:  # both scores: no worse on either, strictly better on one; a tie on both keeps
        crps_tie = math.isclose(*crps, rel_tol=TIE_RTOL)
        no_worse = (tie or verdict["promote"]) and (crps_tie or crps[0] < crps[1])
        verdict.update({"challenger_crps": crps[0], "champion_crps": crps[1], "crps_tie": crps_tie,
                        "promote": bool(no_worse and not (tie and crps_tie)), "tie": tie and crps_tie})
    return verdict


def _crps_on(targets: pd.Series, challenger: pd.DataFrame | None, champion: pd.DataFrame | None) -> tuple | None:
    """(the challenger's mean CRPS, the champion's) on `targets`, or None unless both scored all of them."""
    if challenger is None or champion is None:
        return None
    means = []
    for rows in (challenger, champion):
        crps = rows.set_index("target_time")["crps"].reindex(targets.to_numpy())
        if crps.isna().any():
            return None
        means.append(float(crps.mean()))
    return tuple(means)


def guard_trips(record: dict, guard: int) -> bool:
    """The champion's last `guard` forecasts are worse than persistence, significantly."""
    return (record.get("n", 0) >= guard and record["rmse_ratio"] is not None and record["rmse_ratio"] > 1
            and record["dm_p_worse"] is not None and record["dm_p_worse"] < ALPHA)


def guard_clears(record: dict, guard: int) -> bool:
    """A model's record over `guard` forecasts beats persistence again (ends a fallback)."""
    return record.get("n", 0) >= guard and record["rmse_ratio"] is not None and record["rmse_ratio"] < 1


def risk_verdict(served: pd.DataFrame, garch: pd.DataFrame, guard: int) -> dict | None:
    """The served risk model's live CRPS against GARCH-t's on the last `guard` candles both scored
    (None while there are fewer): n, mean CRPS each, ratio, one-sided DM p that it is better, skill."""
    both = served.merge(garch, on="target_time", suffixes=("_served", "_garch")).sort_values("target_time")
    if len(both) < guard:
        return None
    both = both.iloc[-guard:]
    a, b = both["crps_served"].to_numpy(float), both["crps_garch"].to_numpy(float)
    ratio = float(a.mean() / b.mean())
    return {"n": int(len(both)), "crps": float(a.mean()), "garch_crps": float(b.mean()), "ratio": ratio,
            "dm_p": diebold_mariano(a, b)[1], "through": both["target_time"].iloc[-1].isoformat(),
            "skill": bool(ratio < 1 and not math.isclose(a.mean(), b.mean(), rel_tol=TIE_RTOL))}
