"""`coincast tune`: Optuna over walk-forward folds before --tune-end, one test after it.

Real bundled BTC, the tiny model (the search's epochs and hidden sizes fixed to it), two
weekly folds per trial and two after the tune end: each study trains a few dozen tiny fits.
The Ray version (a real two-node cluster) is in tests/test_ray.py.
"""

import json

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape
from optuna.trial import TrialState

from coincast.config import load_toml
from coincast.data import load
from coincast.errors import ConfigError
from coincast.flows.evaluate import preset_settings
from coincast.flows.tune import TuneSettings, run_tune, trial_settings
from tests.conftest import TINY_EPOCHS, TINY_HIDDEN, assert_user_error, one_torch_thread, tiny_flags

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

TUNE_END = "2025-12-22"  # btc-usd ends 2026-01-05: 14 days after it, two weekly folds
FIXED = {"train": {"epochs": TINY_EPOCHS}, "model": {"hidden": list(TINY_HIDDEN)}}


def small(**kw) -> TuneSettings:
    return TuneSettings(**{"tune_end": TUNE_END, "trials": 3, "days": 14, "overrides": FIXED, **kw})


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return run_tune("btc-usd", small(), runs_dir=tmp_path_factory.mktemp("runs"))


def test_a_study_writes_its_folder_and_tests_the_best_after_the_tune_end(study):
    files = {p.name for p in study.folder.iterdir()}
    assert {"study.log", "best.toml", "trials.csv", "tune.json", "history.png", "importance.png", "report.html"} <= files
    assert study.folder.name == f"btc-usd-tune-{TUNE_END}"
    trials = study.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3 and len({json.dumps(t.params, sort_keys=True) for t in trials}) == 3
    assert all(len(t.intermediate_values) == 2 for t in trials)  # one report per fold: the ratio so far
    doc = json.loads((study.folder / "tune.json").read_text())
    assert doc["best_value"] == min(t.value for t in trials) and doc["trials"] == {"complete": 3, "pruned": 0, "fail": 0}
    # the test: both settings over the 14 days after the tune end, nothing before it
    tuned, default = study.holdout
    assert (tuned["preset"], default["preset"]) == ("tuned", "default")
    assert tuned["first"] == "2025-12-23" and tuned["last"] == "2026-01-05" and tuned["days"] == default["days"] == 14
    assert 0 <= study.dm_p <= 1 and doc["verdict"].startswith("Tuning ") and str(escape(doc["verdict"])) in (study.folder / "report.html").read_text()


def test_best_toml_is_the_tested_settings_and_run_accepts_it(study):
    want = trial_settings(preset_settings("default", "btc-usd"), study.study.best_trial.params, FIXED)
    got = load_toml(study.folder / "best.toml")
    got.data.target = want.data.target  # the file names no dataset: its target comes from the data
    assert got.to_dict() == want.to_dict()
    assert got.data.features[0] == "close" and got.hidden_sizes() == list(TINY_HIDDEN)


def test_the_search_never_sees_a_row_after_the_tune_end(tmp_path):
    """The same study on a copy of the data whose prices after the tune end are doubled: every
    trial's tuning score is the same to the last bit; only the test after the tune end moves
    (shrinkage off, so that the 14 test days are the network's own forecasts, not persistence)."""
    raw = load("btc-usd")
    changed = raw.copy()
    changed.loc[changed.index > pd.Timestamp(TUNE_END, tz=raw.index.tz), ["open", "high", "low", "close"]] *= 2
    runs = []
    for name, frame in (("same", raw), ("changed", changed)):
        frame.to_csv(tmp_path / f"{name}.csv")
        ts = small(trials=1, overrides={**FIXED, "model": {**FIXED["model"], "shrink": False}})
        runs.append(run_tune(str(tmp_path / f"{name}.csv"), ts, runs_dir=tmp_path))
    same, other = ([(t.params, t.intermediate_values) for t in r.study.trials] for r in runs)
    assert same == other
    assert runs[0].holdout[1]["rmse_ratio"] != runs[1].holdout[1]["rmse_ratio"]


def test_resume_continues_the_study_and_checks_it_is_the_same_question(tmp_path):
    first = run_tune("btc-usd", small(trials=2), runs_dir=tmp_path)
    before = [(t.params, t.value) for t in first.study.trials]
    with pytest.raises(ConfigError, match="already holds a study: add --resume"):
        run_tune("btc-usd", small(trials=3), runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="searched"):
        run_tune("btc-usd", small(trials=3, days=21), runs_dir=tmp_path, resume=True)
    more = run_tune("btc-usd", small(trials=3), runs_dir=tmp_path, resume=True)
    assert more.folder == first.folder
    assert [(t.params, t.value) for t in more.study.trials][:2] == before and len(more.study.trials) == 3
    with pytest.raises(ConfigError, match="no study to resume"):
        run_tune("btc-usd", small(tune_end="2025-12-15"), runs_dir=tmp_path, resume=True)


def test_the_median_pruner_stops_trials_that_trail_the_finished_ones(tmp_path):
    """One finished trial starts the pruner, from the first fold on: a trial is pruned exactly
    when its best ratio so far is worse than the median of the trials finished before it at
    that fold (Optuna's median rule), and runs every fold otherwise. Shrinkage off: with it on,
    21 days hold fewer than the 28 scored forecasts it needs, every ratio would be persistence's
    1.0 and nothing could trail the median."""
    no_shrink = {**FIXED, "model": {**FIXED["model"], "shrink": False}}
    run = run_tune("btc-usd", small(trials=8, days=21, startup_trials=1, warmup_folds=1, overrides=no_shrink),
                   runs_dir=tmp_path)
    trials = run.study.trials
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED}
    for t in trials[1:]:
        done = [d for d in trials[: t.number] if d.state == TrialState.COMPLETE]
        steps = sorted(t.intermediate_values)
        behind = [k for k in steps if min(t.intermediate_values[j] for j in steps if j <= k)
                  > np.median([d.intermediate_values[k] for d in done])]
        if t.state == TrialState.PRUNED:
            assert behind and behind[0] == t.last_step  # stopped at its first fold behind the median
        else:
            assert not behind and len(steps) == 3


def test_trials_side_by_side_give_the_same_study(study, tmp_path):
    """Trials run two at a time (in two processes) draw and score as one at a time does when
    the sampler's draws do not depend on finished trials (TPE's first ones are random)."""
    from coincast.backtest.executors import Executor

    two = run_tune("btc-usd", small(jobs=2), Executor("local", 2), runs_dir=tmp_path)
    for a, b in zip(study.study.trials, two.study.trials):
        assert a.params == b.params
        assert a.value == pytest.approx(b.value, rel=1e-6)


@pytest.mark.parametrize("args, words", [
    (["--tune-end", "soon"], "is not a date: use --tune-end YYYY-MM-DD"),
    (["--tune-end", "2026-01-01"], "lie after --tune-end 2026-01-01, too few to test the result on"),
    (["--tune-end", TUNE_END, "--days", "5000"], "--days 5000 needs more than the"),
    (["--tune-end", TUNE_END, "--trials", "0"], "trials must be at least 1"),
    (["--tune-end", TUNE_END, "--resume"], "no study to resume in"),
    (["--tune-end", TUNE_END, "--executor", "spark"], "executor must be 'local' or 'ray'"),
])
def test_cli_bad_input_is_one_line_exit_2_nothing_written(cli, tmp_path, args, words):
    p = cli("tune", *args, *tiny_flags("tune"), "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert_user_error(p, words)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_cli_tunes_and_run_accepts_its_best_toml(cli, tmp_path):
    p = cli("tune", "--tune-end", TUNE_END, "--trials", "1", "--days", "14", *tiny_flags("tune"),
            "--out", str(tmp_path), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "trial 0: RMSE/pers" in p.stdout and "after 2025-12-22, tuned: RMSE/pers" in p.stdout
    assert "Tuning " in p.stdout and "best.toml" in p.stdout
    folder = tmp_path / f"btc-usd-tune-{TUNE_END}"
    again = cli("tune", "--tune-end", TUNE_END, "--trials", "1", "--days", "14", *tiny_flags("tune"),
                "--out", str(tmp_path), cwd=tmp_path)
    assert_user_error(again, "already holds a study: add --resume")
    run = cli("run", "--config", str(folder / "best.toml"), "--no-risk-head", "--quiet", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "run folder" in run.stdout
