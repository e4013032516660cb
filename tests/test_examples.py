"""Every file in examples/ works: each TOML loads with the loader its command uses, the Python script runs.

Files are matched by name, so a new example needs a line here, and an unknown file fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coincast.cli.options import settings as cli_settings
from coincast.live.config import load_config
from coincast.prep.inputs import validated

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def check_run_config(path: Path, tmp_path: Path) -> None:
    """`coincast run|backtest --config FILE`: the preset, then the file, checked as a run checks it."""
    s = validated(cli_settings("default", path))
    assert s.to_dict() != validated(cli_settings("default", None)).to_dict()  # the file changed something


def check_live_config(path: Path, tmp_path: Path) -> None:
    """`coincast live|serve --config FILE`: streams, exchanges, timeframes and store, checked before a start."""
    config = load_config(path)
    assert config.streams and all(s.data.startswith("store:") for s in config.streams)


def check_api_script(path: Path, tmp_path: Path) -> None:
    """The script as a user runs it, from another folder, writing its run folders under --out."""
    paths = [str(EXAMPLES.parent / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run([sys.executable, str(path), "--out", str(tmp_path / "runs")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "persistence" in done.stdout and "next close (2026-01-06" in done.stdout and "80% range" in done.stdout
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(folders) == 2 and any("backtest" in f for f in folders)
    assert all((tmp_path / "runs" / f / "report.html").is_file() for f in folders)


CHECKS = {"run.toml": check_run_config, "backtest.toml": check_run_config, "live.toml": check_live_config,
          "fleet.toml": check_live_config, "api.py": check_api_script}


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.iterdir() if p.is_file()))
def test_example(name, tmp_path):
    if name not in CHECKS:
        pytest.fail(f"examples/{name} has no check: add one to CHECKS in tests/test_examples.py")
    CHECKS[name](EXAMPLES / name, tmp_path)


def test_the_examples_are_there():
    """An example deleted by mistake fails here, not silently (live.toml comes with the live service's docs)."""
    present = {p.name for p in EXAMPLES.iterdir()}
    assert {"run.toml", "backtest.toml", "api.py"} <= present
