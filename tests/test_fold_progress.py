"""Walk-forward progress: folds done of the known total, seconds per fold, ETA; one process per core."""

from __future__ import annotations

import json
import os
import sys

from coincast import cli
from coincast.cli import fold_progress
from coincast.cli.fold_progress import FoldColumn, advance, start_line, status


def test_status_counts_folds_and_estimates_from_the_first_finished_one():
    assert status(0, None, 0.0, 5.0) == "folds: preparing"
    assert status(0, 44, 0.0, 71.0) == "0/44 folds, first fold training"
    # 2 folds in 60 s: 30 s each, 42 left = 1260 s, 10 s of which have passed since the last one
    assert status(2, 44, 60.0, 70.0) == "2/44 folds, 30 s per fold, ETA 0:20:50"
    assert status(44, 44, 1320.0, 1321.0) == "44/44 folds, 30 s per fold, done"
    assert status(1, 3, 10.0, 60.0).endswith("ETA 0:00:00")  # late: never negative


def test_start_line_says_how_many_processes_and_why():
    cores = fold_progress.usable_cores()
    assert cores == len(os.sched_getaffinity(0))
    assert fold_progress.default_jobs("fresh") == cores and fold_progress.default_jobs("warm") == 1
    assert start_line(44, 2, "fresh", jobs_given=True) == "44 folds, fresh refits in 2 processes (--jobs 2)"
    assert start_line(44, 1, "fresh", jobs_given=True) == "44 folds, fresh refits in 1 process (--jobs 1)"
    assert start_line(44, cores, "fresh", jobs_given=False) == (
        f"44 folds, fresh refits in {cores} process{'es' if cores > 1 else ''} (one per core; --jobs to change)")
    assert start_line(44, 1, "warm", jobs_given=False).startswith("44 folds, warm refits one after the other")
    assert start_line(44, 2, "fresh", True, "ray") == "44 folds, fresh refits as Ray tasks on a Ray instance on 127.0.0.1 (2 at a time)"
    assert start_line(44, 2, "fresh", False, "ray", "10.0.0.5:6379") == (
        "44 folds, fresh refits as Ray tasks on the Ray cluster at 10.0.0.5:6379")


def test_bar_shows_done_of_total_after_each_fold():
    progress, task = fold_progress.bar(quiet=True)
    progress.update(task, total=4)
    progress.start_task(task)
    advance(progress, task)
    text = FoldColumn().render(progress.tasks[0]).plain
    assert text.startswith("1/4 folds, ") and "s per fold, ETA " in text
    assert progress.tasks[0].total == 4 and progress.tasks[0].completed == 1


def test_backtest_command_uses_every_core_by_default_and_says_so(monkeypatch, capsys, tmp_path):
    args = ["backtest", "--data", "btc-usd", "--start", "2025-12-16", "--window-size", "12", "--hidden", "4",
            "--epochs", "1", "--bootstrap", "50", "--no-risk-head", "--quiet", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", ["coincast", *args])
    cli.main()
    stdout = capsys.readouterr().out
    cores = fold_progress.usable_cores()
    processes = min(cores, 3)  # 21 test days to 2026-01-05: folds of 7, 7, 7
    assert start_line(3, processes, "fresh", jobs_given=False) in stdout.replace("\n", " ")
    (folder,) = tmp_path.iterdir()
    timing = json.loads((folder / "timing.json").read_text())
    assert timing["jobs"] == cores and timing["folds"] == 3
    assert json.loads((folder / "metrics.json").read_text())["risk"]["verdict"] in stdout  # on one line
