"""The benchmark scripts never rot: a 1-epoch run of the coincast side and the summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from coincast.models.step import autocast_dtype

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_results_and_summary(tmp_path):
    out = tmp_path / "coincast_btc-usd.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks/bench.py"), "--data", "btc-usd", "--epochs", "1",
                    "--out", str(out)], check=True, capture_output=True, timeout=600)
    r = json.loads(out.read_text())
    assert r["shapes"]["train"][1:] == [49, 5] and len(r["seconds_per_epoch"]) == 1
    # one epoch: its time is the median, and the throughput figures are the counts over it
    assert r["median_epoch_seconds"] == r["seconds_per_epoch"][0]
    assert r["achieved_gflops"] == pytest.approx(r["flops_per_epoch"] / r["median_epoch_seconds"] / 1e9, rel=1e-12)
    assert r["windows_per_second"] == pytest.approx(r["n_fit"] / r["median_epoch_seconds"], rel=1e-12)
    assert 100 < r["peak_rss_mib"] < 64 * 1024  # MiB: torch alone takes more than 100 (a KiB/bytes slip fails)
    assert r["inference"]["one_asset_ms"] > 0  # a wall time
    # the FLOP count is the network's: 3 BiLSTM layers on 5 inputs
    assert r["flops"]["params"] == sum(
        4 * h * (i + h) + 4 * h for i, h in [(5, 49), (98, 98), (196, 49)]) * 2 + 98 + 1
    doc = tmp_path / "BENCHMARKS.md"
    subprocess.run([sys.executable, str(ROOT / "benchmarks/summarise.py"), "--results", str(tmp_path), "--doc", str(doc)],
                   check=True, capture_output=True, timeout=120)
    text = doc.read_text()
    auto = autocast_dtype("auto", torch.device("cpu"))  # what this machine trains in
    assert r["train_dtype"] == ("bf16" if auto == torch.bfloat16 else "fp32")
    assert f"| btc-usd | coincast ({r['train_dtype']}) |" in text and "next-step forecast" in text


def test_skill_benchmark_runs_and_writes_its_section(tmp_path):
    out, doc = tmp_path / "skill.json", tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\nhand-written text stays\n")
    subprocess.run([sys.executable, str(ROOT / "benchmarks/skill.py"), "--coins", "ltc-usd", "--presets", "default",
                    "--days", "14", "--epochs", "1", "--out", str(out), "--doc", str(doc)],
                   check=True, capture_output=True, timeout=600)
    row = json.loads(out.read_text())["rows"][0]
    assert row["days"] == 14 and row["folds"] == 2 and row["last"] == "2026-01-05"
    text = doc.read_text()
    # the section's row is this run's: its ratios, p-value and mean shrinkage (shrinkage is on in the default preset)
    assert "hand-written text stays" in text
    assert (f"| ltc-usd | default | 14 | {row['rmse_ratio']:.3f} | {row['mae_ratio']:.3f} | {row['dm_p']:.3g} | "
            f"{row['accuracy']:.3f} |") in text
    assert f"| {row['mean_shrink']:.3f} | {row['seconds']:.0f} |" in text
    # --resume keeps finished rows and runs only the missing ones (none here)
    subprocess.run([sys.executable, str(ROOT / "benchmarks/skill.py"), "--coins", "ltc-usd", "--presets", "default",
                    "--resume", "--out", str(out), "--doc", str(doc)], check=True, capture_output=True, timeout=600)
    assert json.loads(out.read_text())["rows"] == [row]
