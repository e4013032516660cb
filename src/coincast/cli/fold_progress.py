"""Progress of a walk-forward backtest on the terminal: folds done of the total, seconds per
fold and the time left, from the first finished fold on; and the default number of processes.

`coincast backtest` builds the bar (`bar()`), announces the plan when the engine knows it
(`start_line`, from walk_forward's `on_start(n_folds, processes)`) and advances per fold.
"""

from __future__ import annotations

import os

from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. under taskset or a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def default_jobs(refit: str) -> int:
    """Fresh refits are independent: one process per usable core. Warm ones run in sequence."""
    return usable_cores() if refit == "fresh" else 1


def start_line(n_folds: int, processes: int, refit: str, jobs_given: bool, executor: str = "local",
               ray_address: str | None = None) -> str:
    """The plan in one line, saying where the process count came from."""
    if refit == "warm":
        return f"{n_folds} folds, warm refits one after the other (each continues from the previous fold's weights)"
    if executor == "ray":
        where = f"the Ray cluster at {ray_address}" if ray_address else f"a Ray instance on 127.0.0.1 ({processes} at a time)"
        return f"{n_folds} folds, fresh refits as Ray tasks on {where}"
    unit = "process" if processes == 1 else "processes"
    why = f"--jobs {processes}" if jobs_given else "one per core; --jobs to change"
    if not jobs_given and processes < usable_cores():
        why = "one per fold; --jobs to change"
    return f"{n_folds} folds, fresh refits in {processes} {unit} ({why})"


def clock(seconds: float) -> str:
    s = int(round(max(seconds, 0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def status(done: int, total: int | None, at_last_done: float, now: float) -> str:
    """'3/44 folds, 41 s per fold, ETA 0:28:42': seconds per fold = wall time to the last finished
    fold / folds done (with parallel processes: the rate they finish at); ETA counts down from there."""
    if total is None:
        return "folds: preparing"
    if done == 0:
        return f"0/{total} folds, first fold training"
    per = at_last_done / done
    left = per * (total - done) - (now - at_last_done)
    return f"{done}/{total} folds, {per:.0f} s per fold, " + ("done" if done >= total else f"ETA {clock(left)}")


class FoldColumn(ProgressColumn):
    """Renders `status()` live (the ETA counts down between folds)."""

    def render(self, task) -> Text:
        elapsed = task.elapsed or 0.0
        return Text(status(int(task.completed), task.total, task.fields.get("at_last_done", 0.0), elapsed))


def bar(quiet: bool) -> tuple[Progress, int]:
    progress = Progress(BarColumn(), FoldColumn(), TextColumn("elapsed"), TimeElapsedColumn(), disable=quiet,
                        transient=True)
    return progress, progress.add_task("folds", total=None, at_last_done=0.0)


def advance(progress: Progress, task: int) -> None:
    """One more fold finished: remember when, for the seconds per fold."""
    elapsed = next(t for t in progress.tasks if t.id == task).elapsed or 0.0
    progress.update(task, advance=1, at_last_done=elapsed)
