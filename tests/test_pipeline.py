"""The whole run: tutorial shapes, the forecast table, baselines, the run folder, determinism."""

from __future__ import annotations

import json

import markupsafe
import numpy as np
import pytest

from coincast import run
from coincast.errors import DataError, OutputError
from coincast.evaluation.metrics import verdict
from tests.conftest import tiny


def test_tutorial_preset_has_the_tutorials_shapes_and_baselines(tmp_path):
    s = tiny("tutorial")
    s.model.hidden = [4, 4, 4]
    r = run("tutorial", s, tmp_path)
    assert r.shapes["train"] == [2400, 49, 35] and r.shapes["test"] == [267, 49, 35]
    assert r.shapes["target_column"] == 20 and r.shapes["target"] == "Bitcoin Price"
    assert str(r.forecast.index[0].date()) == "2017-03-31" and str(r.forecast.index[-1].date()) == "2017-12-22"
    m = r.metrics
    # the truths the README promises: persistence's normalised MSE and always-up's F1
    assert m["persistence"]["mse_norm"] == pytest.approx(0.0072, abs=5e-5)
    assert m["always_up"]["f1"] == pytest.approx(0.772, abs=1e-3)
    assert r.forecaster.settings.data.val_split == "random" and not r.forecaster.settings.train.early_stopping


def test_run_folder_contents_and_forecast_table(tmp_path):
    r = run("btc-usd", tiny(window=20), tmp_path)
    names = sorted(p.name for p in r.folder.iterdir())
    assert names == sorted(["config.json", "metrics.json", "timing.json", "forecast.csv", "report.html",
                            "price.png", "change.png", "confusion.png", "training.png",
                            "model.json", "model.safetensors"])
    assert list(tmp_path.iterdir()) == [r.folder]  # no staging folder left
    t = r.forecast
    assert list(t.columns) == ["actual", "model", "previous", "base", "persistence", "drift", "moving_average", "ar"]
    np.testing.assert_array_equal(t["persistence"], t["previous"])
    html = (r.folder / "report.html").read_text()
    assert "data:image/png;base64," in html and "persistence" in html and str(markupsafe.escape(r.verdict)) in html
    metrics = json.loads((r.folder / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"model", "persistence", "drift", "moving_average", "ar", "always_up"}
    assert metrics["verdict"] == r.verdict == verdict(r.metrics)  # the sentence of the run's own numbers


def test_same_seed_gives_identical_metrics_json(tmp_path):
    a = run("btc-usd", tiny(window=20), tmp_path / "a")
    b = run("btc-usd", tiny(window=20), tmp_path / "b")
    assert (a.folder / "metrics.json").read_text() == (b.folder / "metrics.json").read_text()


def test_too_few_rows_fails_before_any_folder(tmp_path, btc):
    path = tmp_path / "short.csv"
    btc.iloc[:55].to_csv(path)
    with pytest.raises(DataError, match="too few for windows of 50"):
        run(path, tiny(), tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="choose a writable folder"):
        run("btc-usd", tiny(window=20), blocker / "runs")
