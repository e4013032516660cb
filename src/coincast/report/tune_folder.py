"""Write a finished `coincast tune` (flows/tune.py) into its folder, beside the study's journal:

- best.toml: the best settings, a file `coincast run --config` and `coincast backtest --config` accept;
- trials.csv: every trial (parameters, state, value, time);
- tune.json: the question, the best trial, the test after tune_end and its verdict;
- history.png (each trial's RMSE ratio and the best so far), importance.png (PED-ANOVA
  importances of the parameters), report.html (all of it on one page).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import tomli_w
from optuna.trial import TrialState

from coincast import io
from coincast.report.html import render
from coincast.report.plots import _png, plt

HOLDOUT = [("preset", "settings"), ("days", "days"), ("rmse_ratio", "RMSE / pers."), ("mae_ratio", "MAE / pers."),
           ("dm_p", "DM p vs pers."), ("accuracy", "dir. acc."), ("always_up_rate", "always-up rate"),
           ("mean_shrink", "mean a"), ("seconds", "s")]


def verdict(rows: list[dict], dm_p: float, tune_end: str) -> str:
    """One sentence: did the tuned settings beat the default preset on the days after tune_end?"""
    tuned, default = rows
    t, d = tuned["rmse_ratio"], default["rmse_ratio"]
    nums = f"RMSE {t:.4f}x persistence vs the default's {d:.4f}x over {tuned['days']} days (DM p = {dm_p:.3g})"
    if t < d and dm_p < 0.05:
        return f"Tuning beat the default preset after {tune_end}: {nums}."
    if t < d:
        return f"Tuning did not significantly beat the default preset after {tune_end}: {nums}."
    return f"Tuning did not beat the default preset after {tune_end}: {nums}."


def best_toml(best: dict, overrides: dict) -> str:
    """The best settings on the default preset (the fixed overrides on top, as the search ran them)."""
    doc: dict = {"preset": "default"}
    for section in ("data", "model", "train"):
        values = {**best.get(section, {}), **overrides.get(section, {})}
        if values:
            doc[section] = values
    return "# the best settings of `coincast tune`: coincast run --config best.toml\n" + tomli_w.dumps(doc)


def history_plot(study: optuna.Study) -> bytes:
    """Each finished trial's RMSE ratio (pruned: its ratio when stopped), the best so far, persistence at 1."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED and t.intermediate_values]
    ax.scatter([t.number for t in done], [t.value for t in done], s=18, label="trial")
    ax.scatter([t.number for t in pruned], [t.intermediate_values[t.last_step] for t in pruned], marker="x", s=18,
               color="tab:gray", label="pruned (ratio when stopped)")
    if done:
        best = np.minimum.accumulate([t.value for t in done])
        ax.step([t.number for t in done], best, where="post", color="tab:green", label="best so far")
    ax.axhline(1.0, color="tab:orange", lw=1, label="persistence")
    ax.set_xlabel("trial")
    ax.set_ylabel("RMSE / persistence (tuning folds)")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _png(fig)


def importances(study: optuna.Study) -> dict[str, float]:
    """PED-ANOVA importance of each parameter over the finished trials (empty with fewer than 2)."""
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return {}
    return optuna.importance.get_param_importances(study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())


def importance_plot(values: dict[str, float]) -> bytes:
    names = list(values)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(names) + 1.2))
    ax.barh(names, [values[n] for n in names], color="tab:blue", alpha=0.7)
    ax.set_xlabel("importance (PED-ANOVA)")
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return _png(fig)


def write_tune(folder: Path, study: optuna.Study, best: dict, rows: list[dict], dm_p: float, meta: dict) -> None:
    trials = study.trials_dataframe()
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    sentence = verdict(rows, dm_p, meta["tune_end"])
    weights = importances(study)
    io.write_text(folder / "best.toml", best_toml(best, meta["overrides"]))
    io.write_text(folder / "trials.csv", trials.to_csv(index=False))
    io.write_json(folder / "tune.json", {
        "meta": meta, "trials": counts, "best_trial": study.best_trial.number,
        "best_value": study.best_value, "best_params": study.best_trial.params, "best_settings": best,
        "importances": weights, "holdout": rows, "dm_p_tuned_vs_default": dm_p, "verdict": sentence,
    })
    images = {"each trial's walk-forward RMSE ratio on the tuning folds": history_plot(study)}
    if weights:
        images["which settings mattered (PED-ANOVA)"] = importance_plot(weights)
    for name, png in zip(("history.png", "importance.png"), images.values()):
        io.write_bytes(folder / name, png)
    holdout = pd.DataFrame([{header: r.get(key) for key, header in HOLDOUT} for r in rows])
    io.write_text(folder / "report.html", render(
        "tune_report.html", title=f"coincast tune: {meta['data']}", meta=meta, verdict=sentence, holdout=holdout,
        counts=counts, best_value=study.best_value, best_number=study.best_trial.number,
        best=pd.DataFrame([{"setting": f"{section}.{k}", "value": str(v)}
                           for section, values in best.items() for k, v in values.items()]),
        images=images, toml=best_toml(best, meta["overrides"]),
    ))
