"""`coincast --version` and shell completion, as a user meets them."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from typer.testing import CliRunner

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import coincast
from coincast.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_version_comes_from_the_package_metadata_one_source():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert coincast.__version__ == version("coincast") == declared


def test_version_flag_through_the_real_entry_point(tmp_path):
    done = subprocess.run([sys.executable, "-m", "coincast", "--version"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"coincast {version('coincast')}"
    assert done.stderr == ""


def test_shell_completion_is_on_and_completes_commands():
    help_text = CliRunner().invoke(app, ["--help"], prog_name="coincast", env={"COLUMNS": "200"}).output
    assert "--install-completion" in help_text and "--version" in help_text
    # what the installed bash script asks the program for when the user types `coincast ba<TAB>`
    env = {**os.environ, "_COINCAST_COMPLETE": "complete_bash", "COMP_WORDS": "coincast ba", "COMP_CWORD": "1"}
    done = CliRunner().invoke(app, [], prog_name="coincast", env=env)
    assert done.output.split() == ["backtest"]
