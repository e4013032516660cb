"""Shared fixtures: real bundled data, tiny settings so the suite stays fast, the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from coincast import load
from coincast.config import Settings, preset

# The one source of the tiny model every test trains: library settings (`tiny`) and command-line
# flags (`tiny_flags`, `TINY_FLAGS`) are both built from these.
TINY_HIDDEN = [4, 4]  # units per layer
TINY_EPOCHS = 1
TINY_BATCH = 256


def tiny(name: str = "default", *, model: dict | None = None, train: dict | None = None, **data) -> Settings:
    """A small, fast model on the real data: 1 epoch, 4 units per layer.

    Keyword arguments set `settings.data` fields (window=20, target="close", ...); `model` and
    `train` set fields of those sections. An unknown field is an error, not a silent no-op.
    """
    s = preset(name)
    s.model.hidden = list(TINY_HIDDEN)
    s.train.epochs = TINY_EPOCHS
    s.train.batch_size = TINY_BATCH
    s.model.risk_head = False  # the network's risk head trains for seconds: on only where a test asks (model={"risk_head": True})
    for section, values in (("data", data), ("model", model or {}), ("train", train or {})):
        part = getattr(s, section)
        for k, v in values.items():
            if not hasattr(part, k):
                raise AttributeError(f"settings.{section} has no field {k!r}")
            setattr(part, k, v)
    return s


def tiny_flags(command: str = "run", window: int = 20) -> list[str]:
    """The command-line spelling of `tiny(window=window)` for `coincast run|backtest|evaluate|tune|audit`.

    `backtest`, `evaluate` and `audit` take the window as --window-size and have no --batch-size flag;
    `audit` has no --quiet (it shows no progress bar).
    """
    model = ["--hidden", ",".join(str(h) for h in TINY_HIDDEN), "--epochs", str(TINY_EPOCHS)]
    if command == "run":
        return ["--window", str(window), *model, "--batch-size", str(TINY_BATCH), "--no-risk-head", "--quiet"]
    if command == "backtest":
        return ["--window-size", str(window), *model, "--no-risk-head", "--quiet"]
    if command in ("evaluate", "tune"):  # no --batch-size, no progress bar
        return ["--window-size", str(window), *model]
    if command == "audit":
        return ["--window-size", str(window), *model]
    raise ValueError(f"no tiny flags for command {command!r}")


TINY_FLAGS = tiny_flags("run")  # `coincast run` with the tiny model on windows of 20


def dm_p_by_hand(loss_a, loss_b) -> float:
    """One-sided p that forecast A is more accurate than B: Diebold-Mariano at horizon 1 with
    the Harvey-Leybourne-Newbold correction and a Student t with n-1 degrees of freedom,
    written out from the formulas (independent of coincast.evaluation.metrics)."""
    import numpy as np
    from scipy import stats

    d = np.asarray(loss_a, float) - np.asarray(loss_b, float)
    n = len(d)
    dm = d.mean() / np.sqrt(d.var() / n)  # biased variance: the lag-0 autocovariance
    return float(stats.t.cdf(dm * np.sqrt((n - 1) / n), df=n - 1))


def one_torch_thread():
    """One torch thread for a module: on a shared 2-core machine more threads only fight."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def btc():
    return load("btc-usd")


@pytest.fixture(scope="session")
def tutorial_frame():
    return load("tutorial")


@pytest.fixture
def cli(monkeypatch, capsys):
    """`coincast ...` in this process, through the real entry point (`coincast.cli.main`, the
    console script's target, on the real `coincast.cli.app`): returns (returncode, stdout,
    stderr) like a subprocess."""
    from coincast.cli import main

    def call(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["coincast", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code or 0
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return call


def assert_user_error(p: subprocess.CompletedProcess, message: str) -> None:
    """A user mistake: exit 2, one line `error: ...` on stderr holding `message`, no traceback."""
    assert p.returncode == 2, p.stderr
    lines = [l for l in p.stderr.strip().splitlines() if not l.startswith("warning:")]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in p.stderr
