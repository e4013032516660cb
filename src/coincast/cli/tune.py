"""Command-line command `tune`: Optuna over the model's settings on walk-forward folds before
--tune-end, then one test of the best settings after it, beside the default preset (flows/tune.py).

Registered in cli/main.py. User mistakes raise CoincastError, which `cli.main()` prints on one
line with exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from coincast.cli import options as opt

out = Console()


def tune(
    tune_end: str = typer.Option(..., help="Last day the search may see (YYYY-MM-DD); the best settings are tested after it."),
    data: str = typer.Option("btc-usd", help="Bundled dataset name or a CSV/Parquet path."),
    trials: int = typer.Option(40, help="Trials to finish (completed or pruned)."),
    days: int = typer.Option(365, help="Each trial walks forward over the last N days up to --tune-end."),
    retrain_every: int = typer.Option(7, help="Retrain every N steps (warm refits), in the search and the test."),
    jobs: int = typer.Option(1, help="Trials at once: local processes, or the CPUs of the run's own Ray instance."),
    seed: int = typer.Option(0, help="Seed of the sampler (one seed and one --jobs give one study)."),
    warmup_folds: int = typer.Option(8, help="Folds every trial runs before the median pruner may stop it."),
    resume: bool = typer.Option(False, "--resume", help="Continue the study in the run folder of the same command."),
    window_size: Optional[int] = typer.Option(None, help="Fix the window instead of searching it."),
    epochs: Optional[int] = typer.Option(None, help="Fix the epochs of a full fit instead of searching them."),
    hidden: opt.Hidden = None,
    executor: opt.ExecutorKind = "local",
    ray_address: opt.RayAddress = None,
    threads_per_task: opt.ThreadsPerTask = 1,
    out_dir: opt.OutDir = Path("runs"),
):
    """Search the model's settings (Optuna) before --tune-end; test the best after it, beside the default."""
    from optuna.trial import TrialState

    from coincast.backtest.executors import Executor
    from coincast.flows.tune import TuneSettings, run_tune
    from coincast.report.tune_folder import verdict

    ts = TuneSettings(tune_end=tune_end, trials=trials, days=days, retrain_every=retrain_every, jobs=jobs, seed=seed,
                      warmup_folds=warmup_folds, overrides=opt.overrides(window_size, epochs, hidden))

    def say_trial(t) -> None:
        if t.state == TrialState.PRUNED:
            out.print(f"trial {t.number}: pruned after fold {t.last_step} ({t.intermediate_values[t.last_step]:.4f})")
        else:
            out.print(f"trial {t.number}: RMSE/pers {t.value:.4f}")

    def say_row(r: dict) -> None:
        out.print(f"after {tune_end}, {r['preset']}: RMSE/pers {r['rmse_ratio']:.4f}, DM p {r['dm_p']:.3g} "
                  f"({r['days']} days, {r['seconds']:.0f} s)", soft_wrap=True)

    run = run_tune(data, ts, Executor(executor, jobs, ray_address, threads_per_task), out_dir, resume,
                   on_trial=say_trial, on_row=say_row)
    out.print(f"best: trial {run.study.best_trial.number}, RMSE/pers {run.study.best_value:.4f} on the tuning folds")
    out.print(verdict(run.holdout, run.dm_p, ts.tune_end), soft_wrap=True)
    out.print(f"run folder: {run.folder} (best settings: {run.folder / 'best.toml'})")
