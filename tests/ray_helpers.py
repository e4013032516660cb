"""Fold functions for the Ray tests (tests/test_ray.py), sent to Ray workers by value.

`dies_once` kills its own worker process (a real SIGKILL) the first time fold 1 runs, leaving a
marker file so the retry goes through; `bad_data` fails fold 1 with a DataError, as a fold
whose rows cannot be used would.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from coincast.backtest.engine import fold_result
from coincast.errors import DataError

BAD_DATA = "fold 1: the close column is NaN on 2025-12-24: fix the file or drop that row"


def dies_once(marker: str, inputs, settings, p):
    if p.k == 1 and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return fold_result(inputs, settings, p)


def bad_data(inputs, settings, p):
    if p.k == 1:
        raise DataError(BAD_DATA)
    return fold_result(inputs, settings, p)
