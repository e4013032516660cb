"""The allocator (coincast/allocator.py): preloaded once by the real `coincast` command, opt-out,
fallback, and the same results on every allocator. Each run is a real, tiny training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coincast import allocator

TINY = ["--window", "20", "--hidden", "4,4", "--epochs", "2", "--no-risk-head", "--quiet"]
SCRIPT = r"""
import ctypes, json, resource, sys
from coincast import allocator
tuned = allocator.tune()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def faults(n=64 << 20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    libc.free(p)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
print(json.dumps({"tuned": tuned, "second_faults": faults(), "describe": allocator.describe()}))
"""


def coincast_command() -> list[str]:
    """The installed console script (what `make run` and users call); `python -m coincast` if absent."""
    script = shutil.which("coincast", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "coincast"]


def env_with(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in (allocator.ENV, allocator.MARK, "LD_PRELOAD") and not k.startswith("MIMALLOC_")}
    return {**env, "COLUMNS": "100", **extra}


def run_folder(tmp: Path, name: str, **env: str) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp / name
    p = subprocess.run([*coincast_command(), "run", "--data", "btc-usd", *TINY, "--out", str(out)],
                       capture_output=True, text=True, env=env_with(**env), timeout=600)
    assert p.returncode == 0, p.stderr
    (folder,) = out.iterdir()
    return folder, p


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alloc")
    return {
        "default": run_folder(tmp, "default"),
        "system": run_folder(tmp, "system", COINCAST_ALLOCATOR="system"),
        "missing": run_folder(tmp, "missing", COINCAST_ALLOCATOR=str(tmp / "no" / "libmimalloc.so")),
    }


def timing(folder: Path) -> dict:
    return json.loads((folder / "timing.json").read_text())["allocator"]


@pytest.mark.skipif(allocator.mimalloc_path() is None, reason="cmeel-mimalloc is not installed here")
def test_coincast_command_trains_on_mimalloc_preloaded_once(runs):
    a = timing(runs["default"][0])
    assert a["name"] == "mimalloc" and a["how"] == "preloaded by the coincast command" and a["note"] is None
    assert Path(a["library"]).samefile(allocator.mimalloc_path())  # mapped in the process that trained
    assert a["settings"] == allocator.MIMALLOC_SETTINGS
    assert "warning" not in runs["default"][1].stderr


def test_results_identical_on_every_allocator(runs):
    metrics = {k: (f / "metrics.json").read_text() for k, (f, _) in runs.items()}
    forecasts = {k: (f / "forecast.csv").read_text() for k, (f, _) in runs.items()}
    assert metrics["default"] == metrics["system"] == metrics["missing"]
    assert forecasts["default"] == forecasts["system"] == forecasts["missing"]


def test_opt_out_leaves_glibc_untouched(runs):
    a = timing(runs["system"][0])
    assert a == {"name": "glibc", "library": None, "how": "defaults", "settings": {}, "note": "COINCAST_ALLOCATOR=system"}


def test_missing_library_falls_back_to_tuned_glibc_with_a_note(runs):
    folder, p = runs["missing"]
    a = timing(folder)
    assert a["name"] == "glibc" and a["how"] == "tuned with mallopt" and a["settings"] == allocator.GLIBC_SETTINGS
    assert "no file" in a["note"] and "libmimalloc.so" in a["note"]
    assert "training on glibc" in p.stderr and "Traceback" not in p.stderr


def test_bad_choice_is_one_line_exit_2():
    p = subprocess.run([*coincast_command(), "run", "--data", "btc-usd", *TINY], capture_output=True, text=True,
                       env=env_with(COINCAST_ALLOCATOR="jemalloc"), timeout=120)
    assert p.returncode == 2
    assert p.stderr.startswith("error: COINCAST_ALLOCATOR='jemalloc'") and len(p.stderr.strip().splitlines()) == 1
    assert "system" in p.stderr and "path" in p.stderr


def test_a_library_that_does_not_load_is_reported(tmp_path):
    broken = tmp_path / "libmimalloc.so"
    broken.write_bytes(b"")  # ld.so refuses it and goes on with glibc
    code = "import json; from coincast import allocator; print(json.dumps(allocator.describe()))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=env_with(LD_PRELOAD=str(broken), **{allocator.MARK: str(broken)}))
    a = json.loads(p.stdout)
    assert a["name"] == "glibc" and "did not load" in a["note"] and str(broken) in a["note"]


@pytest.mark.parametrize("choice, tuned", [("mimalloc", True), ("system", False)])
def test_tune_keeps_freed_memory_in_the_process(choice, tuned):
    """The Python API's remedy: after tune(), a freed 64 MB block is reused without page faults."""
    p = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120,
                       env=env_with(COINCAST_ALLOCATOR=choice))
    r = json.loads(p.stdout)
    if tuned:
        assert r["tuned"] == allocator.GLIBC_SETTINGS and r["describe"]["how"] == "tuned with mallopt"
        assert r["second_faults"] < 1000  # glibc kept the block
    else:
        assert r["tuned"] is None and r["describe"]["how"] == "defaults"
        assert r["second_faults"] > 10000  # unmapped on free, faulted in again (16384 pages)


def test_only_training_commands_reexec():
    assert allocator.trains(["run", "--data", "btc-usd"]) and allocator.trains(["--quiet", "backtest"])
    assert not allocator.trains(["--help"]) and not allocator.trains(["run", "--help"])
    assert not allocator.trains(["datasets"]) and not allocator.trains([])


@pytest.mark.skipif(allocator.mimalloc_path() is None, reason="cmeel-mimalloc is not installed here")
def test_module_prints_what_to_preload():
    p = subprocess.run([sys.executable, "-m", "coincast.allocator", "env"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert p.stdout.split() == [f"LD_PRELOAD={allocator.mimalloc_path()}", "MIMALLOC_PURGE_DELAY=-1", "MIMALLOC_ALLOW_THP=0"]
