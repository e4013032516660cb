"""`run_tune()`: search the model's settings with Optuna before a date, then test the best once after it.

Nested, so the test period stays unseen:
- The search sees the candles up to `tune_end` only: they are cut there before anything is
  built. Each trial is the walk-forward `make skill` runs (weekly warm refits) over the last
  `days` days up to `tune_end`, scored by its RMSE ratio to persistence ("tomorrow = today"),
  shrinkage from the earlier folds' record as in `coincast backtest`. After every fold the
  trial reports its ratio so far, and Optuna's median pruner stops a trial that trails the
  median of the finished ones at that fold.
- Trials are asked in batches of `jobs` (TPE, seeded), run side by side, and told in order,
  so one seed and one `jobs` give one study, whichever executor runs it and however long its
  folds take. A trial's folds are jobs on backtest/executors.py's pool (this process, local
  processes or Ray tasks): each fold's model goes back as safetensors bytes and comes in
  again as the next fold's warm start.
- Then the best settings and the default preset walk forward over the days after `tune_end`
  (the same protocol, the full data), and a Diebold-Mariano test says whether the tuned
  settings were more accurate than the default there.

The study lives in the run folder (Optuna's journal file, `study.log`), so `resume` continues
it after an interruption; trials left running are marked failed and asked again.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FixedTrial, TrialState

from coincast.backtest import executors
from coincast.backtest.engine import BacktestSettings, Plan, check, plan, run_fold, warm_refit
from coincast.config import Settings, apply_overrides
from coincast.data.datasets import load
from coincast.data.frame import day_on
from coincast.errors import ConfigError, DataError
from coincast.evaluation.metrics import diebold_mariano
from coincast.flows.evaluate import Job, preset_settings, scored_walk
from coincast.flows.tune_space import suggest
from coincast.machine import describe
from coincast.models.forecaster import Forecaster
from coincast.models.shrinkage import record_shrinkage, shrunk
from coincast.prep.inputs import build_inputs, validated
from coincast.report.tune_folder import write_tune

STUDY = "coincast-tune"
STUDY_FILE = "study.log"


@dataclass
class TuneSettings:
    tune_end: str  # last day the search may see (YYYY-MM-DD)
    trials: int = 40
    days: int = 365  # each trial walks forward over the last `days` days up to tune_end
    retrain_every: int = 7
    jobs: int = 1  # trials at once
    seed: int = 0  # the sampler's (each trial's network keeps train.seed)
    startup_trials: int = 5  # the median pruner waits for this many finished trials
    warmup_folds: int = 8  # and lets every trial run this many folds
    # Settings set on every trial after the search's own (e.g. {"train": {"epochs": 1}}).
    overrides: dict = field(default_factory=dict)


@dataclass
class TuneRun:
    folder: Path
    study: optuna.Study
    best: dict  # the best trial's {section: {field: value}}
    holdout: list[dict]  # the tuned and the default settings after tune_end (evaluate's rows)
    dm_p: float  # one-sided p that the tuned settings were more accurate than the default there


# -- the search -----------------------------------------------------------------------------
def trial_fold(raw: pd.DataFrame, job: tuple[Settings, Plan, bytes | None]) -> tuple[pd.DataFrame, bytes]:
    """One fold of a trial, wherever it runs: its forecasts and its model as safetensors bytes."""
    s, p, init = job
    d = s.data
    inputs = build_inputs(raw, d.target, d.features, d.exog, d.exog_max_age)
    r, f = run_fold(inputs, s, p, init=Forecaster.from_bytes(init) if init is not None else None)
    return r["pred"][["actual", "previous", "network"]], f.to_bytes()


def trial_settings(base: Settings, params: dict, overrides: dict) -> Settings:
    """A trial's settings: the search's values on the base, then the fixed overrides."""
    s = apply_overrides(copy.deepcopy(base), suggest(FixedTrial(params)))
    return validated(apply_overrides(s, copy.deepcopy(overrides)))


def walk_trial(trial: optuna.Trial, s: Settings, raw: pd.DataFrame, bt: BacktestSettings, submit) -> float:
    """The trial's walk-forward, fold by fold: the RMSE ratio to persistence so far after each."""
    d = s.data
    frame = build_inputs(raw, d.target, d.features, d.exog, d.exog_max_age).frame
    parts, blob, nodes = [], None, set()
    for p in plan(len(frame), check(frame, s, bt), bt):
        fs, fp = warm_refit(s, bt, p) if blob is not None else (s, p)
        (part, blob), node = submit((fs, fp, blob))()
        if node is not None:  # the Ray nodes the trial's folds ran on
            nodes.add(node)
            trial.set_user_attr("nodes", sorted(nodes))
        record = pd.concat(parts) if parts else part.iloc[:0]  # shrinkage from the earlier folds only
        a = record_shrinkage(record["actual"], record["network"], record["previous"]) if s.model.shrink else 1.0
        parts.append(part.assign(model=shrunk(part["network"], part["previous"], a)))
        t = pd.concat(parts)
        ratio = float(np.sqrt(np.mean((t["model"] - t["actual"]) ** 2) / np.mean((t["previous"] - t["actual"]) ** 2)))
        trial.report(ratio, p.k)
        if trial.should_prune():  # never within the pruner's warm-up folds
            raise optuna.TrialPruned()
    return ratio


def search(study: optuna.Study, ts: TuneSettings, base: Settings, raw: pd.DataFrame, ex: executors.Executor,
           on_trial=lambda t: None) -> None:
    """Run trials until `ts.trials` have finished (completed or pruned)."""
    bt = BacktestSettings(start=str(raw.index[-ts.days].date()), retrain_every=ts.retrain_every, refit="warm")

    def one(trial: optuna.Trial):
        s = trial_settings(base, trial.params, ts.overrides)
        try:
            return walk_trial(trial, s, raw, bt, submit), TrialState.COMPLETE
        except optuna.TrialPruned:
            return None, TrialState.PRUNED

    with executors.pool(trial_fold, (raw,), ex) as submit, ThreadPoolExecutor(ts.jobs) as threads:
        while (left := ts.trials - finished(study)) > 0:
            batch = [study.ask() for _ in range(min(ts.jobs, left))]
            for t in batch:
                suggest(t)  # the trial's parameters, drawn here in order: reproducible for one seed and one jobs
            results = list(threads.map(one, batch))
            for t, (value, state) in zip(batch, results):  # told in order, after the whole batch
                study.tell(t, value, state=state)
                on_trial(study.trials[t.number])


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def open_study(folder: Path, ts: TuneSettings, spec: str, resume: bool) -> optuna.Study:
    """The study in `folder` (a new one, or the one to resume: the same question or an error)."""
    path = folder / STUDY_FILE
    if path.exists() and not resume:
        raise ConfigError(f"{folder} already holds a study: add --resume to continue it, or remove the folder to start over")
    if resume and not path.exists():
        raise ConfigError(f"no study to resume in {folder}: run the same command without --resume to start one")
    folder.mkdir(parents=True, exist_ok=True)
    question = {"data": spec, "tune_end": ts.tune_end, "days": ts.days, "retrain_every": ts.retrain_every,
                "overrides": ts.overrides}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(path)))
    if resume:
        study = optuna.load_study(study_name=STUDY, storage=storage)
        asked = study.user_attrs.get("question")
        if asked != question:
            raise ConfigError(f"the study in {folder} searched {asked}, not {question}: resume with its own options, "
                              "or remove the folder to start over")
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # interrupted: asked again
            study.tell(t.number, state=TrialState.FAIL)
    seed = ts.seed + len(study.trials) if resume else ts.seed  # a resumed sampler draws new startup points
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=ts.startup_trials, n_warmup_steps=ts.warmup_folds - 1)
    if resume:
        return optuna.load_study(study_name=STUDY, storage=storage, sampler=sampler, pruner=pruner)
    study = optuna.create_study(study_name=STUDY, storage=storage, sampler=sampler, pruner=pruner, direction="minimize")
    study.set_user_attr("question", question)
    return study


# -- the flow -------------------------------------------------------------------------------
def check_tune(raw: pd.DataFrame, ts: TuneSettings) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Reject unusable options before anything is trained or written: (candles up to tune_end, tune_end)."""
    for name, v, flag in (("trials", ts.trials, "--trials 40"), ("days", ts.days, "--days 365"),
                          ("jobs", ts.jobs, "--jobs 2"), ("warm-up folds", ts.warmup_folds, "8")):
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be at least 1 (got {v}): e.g. {flag}")
    end = day_on(raw.index, ts.tune_end, "tune end", "--tune-end")
    seen = raw.loc[:end]
    after = len(raw) - len(seen)
    if after < ts.retrain_every:
        raise DataError(f"only {after} days of the data ({raw.index[0].date()} to {raw.index[-1].date()}) lie after "
                        f"--tune-end {end.date()}, too few to test the result on: choose an earlier --tune-end")
    if ts.days >= len(seen):
        raise DataError(f"--days {ts.days} needs more than the {len(seen)} days up to --tune-end {end.date()}: "
                        f"use --days {max(len(seen) // 4, 1)} or a later --tune-end")
    return seen, end


def run_tune(
    data: str,
    ts: TuneSettings,
    ex: executors.Executor | None = None,
    runs_dir: str | Path = "runs",
    resume: bool = False,
    on_trial=lambda t: None,
    on_row=lambda row: None,
) -> TuneRun:
    ex = ex or executors.Executor()
    executors.check(ex)
    raw = load(data)
    seen, end = check_tune(raw, ts)
    base = preset_settings("default", data)
    folder = Path(runs_dir) / f"{Path(data).stem if Path(data).is_file() else data}-tune-{end.date()}"
    study = open_study(folder, ts, data, resume)
    search(study, ts, base, seen, ex, on_trial)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise DataError(f"every trial was pruned or failed, none finished: run more --trials (the study in {folder} "
                        "continues with --resume)")
    best = suggest(FixedTrial(study.best_trial.params))
    tuned = trial_settings(base, study.best_trial.params, ts.overrides)
    default = validated(apply_overrides(copy.deepcopy(base), copy.deepcopy(ts.overrides)))
    holdout_bt = BacktestSettings(start=str(raw.index[len(seen)].date()), retrain_every=ts.retrain_every, refit="warm")
    jobs = [Job(data, "tuned", tuned, raw, holdout_bt), Job(data, "default", default, raw, holdout_bt)]
    rows, tables = [], []
    for (row, table), _ in executors.run_in_order(scored_walk, (), jobs, ex):
        rows.append(row)
        tables.append(table)
        on_row(row)
    days = tables[0].index.intersection(tables[1].index)  # a longer window may skip a gap day the other keeps
    actual = tables[0].loc[days, "actual"].to_numpy()
    _, dm_p = diebold_mariano((tables[0].loc[days, "model"].to_numpy() - actual) ** 2,
                              (tables[1].loc[days, "model"].to_numpy() - actual) ** 2)
    meta = {"data": data, **asdict(ts), "tune_end": str(end.date()), "first_tuning_day": str(seen.index[-ts.days].date()),
            "holdout_first": rows[0]["first"], "holdout_last": rows[0]["last"],
            "executor": ex.kind, "torch": torch.__version__, "machine": describe()}
    write_tune(folder, study, best, rows, float(dm_p), meta)
    return TuneRun(folder, study, best, rows, float(dm_p))
