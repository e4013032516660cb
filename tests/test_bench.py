"""The benchmark scripts never rot: a 1-epoch run of the coincast side and the summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from coincast.machine import cpu_model
from coincast.models.step import autocast_dtype

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import summarise  # noqa: E402


def keras_result(median: float, intra: int = 0, inter: int = 0) -> dict:
    """A Keras reference result with the fields the summary reads."""
    return {"implementation": "keras", "median_epoch_seconds": median, "train_seconds": 100 * median,
            "windows_per_second": 1000 / median, "achieved_gflops": 50 / median, "peak_rss_mib": 2000,
            "final_train_loss": 0.003, "final_val_loss": 0.0034, "test_mse": 0.0008, "f1": 0.5,
            "threads": {"intra_op": intra, "inter_op": inter}, "versions": {"tensorflow": "2.21.0", "keras": "3.15.1"},
            "cpu": {"model": "test CPU", "simd": ["avx2"]}}


def test_summary_compares_with_the_faster_keras_run():
    runs = [keras_result(2.4), keras_result(1.9, 1, 2), None]
    assert summarise.fastest_keras(runs) is runs[1]
    assert summarise.fastest_keras([None]) is None
    assert summarise.keras_threads(runs[0]) == "TF default threads"
    assert summarise.keras_threads(runs[1]) == "intra-op 1, inter-op 2"


def test_sections_per_cpu_kind_replace_only_their_own():
    a, b = summarise.cpu_key("CPU A", ["fma", "avx2", "avx512f"]), summarise.cpu_key("CPU B", ["avx2"])
    assert a == "CPU A | avx2 avx512f" and summarise.cpu_key("CPU C", None) == "CPU C | flags not recorded"
    text = summarise.update_section("", a, "table of A, first run")
    text = summarise.update_section(text, b, summarise.NOT_MEASURED)
    text = summarise.update_section(text, a, "table of A, second run")
    keys = [m.group("key") for m in summarise.SECTION.finditer(text)]
    assert keys == [b, a]  # a new kind goes first; a rerun stays where it was
    assert "second run" in text and "first run" not in text and "not yet measured on this kind" in text.lower()


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
    assert r["allocator"]["name"] in ("mimalloc", "glibc") and r["date"] and r["cpu"]["simd"] is not None
    (tmp_path / "keras_btc-usd.json").write_text(json.dumps(keras_result(2 * r["median_epoch_seconds"])))
    (tmp_path / "keras-intra1-inter2_btc-usd.json").write_text(json.dumps(keras_result(r["median_epoch_seconds"], 1, 2)))
    doc = tmp_path / "BENCHMARKS.md"
    other = summarise.update_section("", "Other CPU | avx2", "| the other CPU's table |")
    doc.write_text(f"# Benchmarks\n\n{summarise.BEGIN}\n{other}{summarise.END}\n\nhand-written\n")
    subprocess.run([sys.executable, str(ROOT / "benchmarks/summarise.py"), "--results", str(tmp_path), "--doc", str(doc)],
                   check=True, capture_output=True, timeout=120)
    text = doc.read_text()
    auto = autocast_dtype("auto", torch.device("cpu"))  # what this machine trains in
    assert r["train_dtype"] == ("bf16" if auto == torch.bfloat16 else "fp32")
    assert f"| btc-usd | coincast ({r['train_dtype']}) | {r['median_epoch_seconds']:.3f} | 1.00x |" in text
    assert "| btc-usd | keras (intra-op 1, inter-op 2: the reference) |" in text and "| 2.00x |" in text
    assert "next-step forecast" in text and f"allocator {r['allocator']['name']}" in text
    keys = [m.group("key") for m in summarise.SECTION.finditer(text)]
    assert keys == [summarise.cpu_key(r["cpu"]["model"], r["cpu"]["simd"]), "Other CPU | avx2"]
    assert "| the other CPU's table |" in text and text.endswith("hand-written\n")


def test_skill_benchmark_writes_its_section_from_a_coincast_evaluate_run(cli, tmp_path):
    """`make skill`'s two steps, small: `coincast evaluate`, then benchmarks/skill.py on its folder."""
    out, doc = tmp_path / "skill.json", tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\nhand-written text stays\n")
    p = cli("evaluate", "--data", "ltc-usd", "--presets", "default", "--days", "14", "--epochs", "1",
            "--out", str(tmp_path / "skill"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    subprocess.run([sys.executable, str(ROOT / "benchmarks/skill.py"), str(tmp_path / "skill"), "--out", str(out),
                    "--doc", str(doc)], check=True, capture_output=True, timeout=120)
    run, = (tmp_path / "skill").iterdir()
    assert json.loads(out.read_text()) == json.loads((run / "evaluation.json").read_text())
    row = json.loads(out.read_text())["rows"][0]
    assert row["days"] == 14 and row["folds"] == 2 and row["last"] == "2026-01-05"
    text = doc.read_text()
    # the section's row is this run's: its ratios, p-value and mean shrinkage (shrinkage is on in the default preset)
    assert "hand-written text stays" in text
    assert (f"| ltc-usd | default | 14 | {row['rmse_ratio']:.3f} | {row['mae_ratio']:.3f} | {row['dm_p']:.3g} | "
            f"{row['accuracy']:.3f} |") in text
    assert f"| {row['mean_shrink']:.3f} | {row['seconds']:.0f} |" in text
    assert cpu_model() in text  # the machine, named beside the figures
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks/skill.py"), str(tmp_path / "nothing")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "no evaluation.json in" in bad.stderr
