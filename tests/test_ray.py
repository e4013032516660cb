"""Fresh folds as Ray tasks on a real two-node Ray cluster on this machine (no mocks).

The cluster (`ray.cluster_utils.Cluster`: a head and a second node, one CPU each) is started
once for the module, on loopback only: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 has to be in the
environment before Ray is imported, and every node address is checked to be 127.0.0.1.
Tiny model, four folds of 22 test days, and a 4-trial tune of two folds a trial: the module
stays around a minute on 2 cores.
"""

import functools
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when Ray is imported: loopback only

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import ray  # noqa: E402

from coincast.backtest import executors  # noqa: E402
from coincast.backtest.engine import BacktestSettings, check, fold_result, plan, walk_forward  # noqa: E402
from coincast.data import load  # noqa: E402
from coincast.errors import DataError  # noqa: E402
from coincast.flows.evaluate import evaluate_one, plan_jobs, run_evaluation  # noqa: E402
from coincast.flows.tune import TuneSettings, run_tune  # noqa: E402
from coincast.prep.inputs import build_inputs  # noqa: E402
from coincast.prep.windows import fill_zeros  # noqa: E402
from tests import ray_helpers  # noqa: E402
from tests.conftest import TINY_EPOCHS, TINY_HIDDEN, assert_user_error, one_torch_thread, tiny, tiny_flags  # noqa: E402

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

SMALL = {"window": 12, "target": "close"}
START = "2025-12-15"  # 22 test days: folds of 7, 7, 7, 1 (as tests/test_backtest.py)


@pytest.fixture(scope="module")
def frame():
    return fill_zeros(load("btc-usd").iloc[-400:])


cluster = pytest.fixture(scope="module")(ray_helpers.two_nodes)


@pytest.fixture(scope="module")
def local(frame):
    """The reference: the same backtest run in this process, fold after fold."""
    return walk_forward(frame, tiny(**SMALL), BacktestSettings(start=START), "close", network=True)


def on_ray(address: str) -> BacktestSettings:
    return BacktestSettings(start=START, executor="ray", ray_address=address)


def test_cluster_is_two_nodes_on_loopback(cluster):
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2
    assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}


def test_folds_run_on_both_nodes_and_match_the_local_executor(cluster, frame, local):
    r = walk_forward(frame, tiny(**SMALL), on_ray(cluster.address), "close", network=True)
    assert len(r.folds) == 4
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert set(r.folds["node"]) == alive  # every fold ran on a node of this cluster, and both nodes ran folds
    pd.testing.assert_frame_equal(r.table, local.table, rtol=1e-6)


def test_a_killed_worker_is_retried_and_the_forecasts_are_unchanged(cluster, frame, local, tmp_path):
    s, bt = tiny(**SMALL), on_ray(cluster.address)
    inputs = build_inputs(frame, "close", None)
    plans = plan(len(frame), check(frame, s, bt), bt)
    marker = tmp_path / "killed"
    fn = functools.partial(ray_helpers.dies_once, str(marker))
    results = [r for r, _ in executors.run_in_order(fn, (inputs, s), plans, bt.executor_of())]
    assert marker.exists()  # fold 1's first worker was killed
    for r, want in zip(results, (fold_result(inputs, s, p) for p in plans)):
        pd.testing.assert_frame_equal(r["pred"], want["pred"], rtol=1e-6)


def test_a_data_error_in_a_task_is_its_one_line(cluster, frame):
    s, bt = tiny(**SMALL), on_ray(cluster.address)
    inputs = build_inputs(frame, "close", None)
    plans = plan(len(frame), check(frame, s, bt), bt)
    with pytest.raises(DataError) as err:
        list(executors.run_in_order(ray_helpers.bad_data, (inputs, s), plans, bt.executor_of()))
    assert str(err.value) == ray_helpers.BAD_DATA  # the user's reason, not a Ray traceback


def test_cli_backtest_on_the_cluster_writes_its_run_folder(cli, cluster, tmp_path):
    p = cli("backtest", *tiny_flags("backtest", window=12), "--start", START, "--executor", "ray",
            "--ray-address", cluster.address, "--bootstrap", "50", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"fresh refits as Ray tasks on the Ray cluster at {cluster.address}" in p.stdout
    folder, = (tmp_path / "runs").iterdir()
    folds = pd.read_csv(folder / "folds.csv")
    assert len(folds) == 4 and folds["node"].notna().all()


def test_a_run_of_its_own_starts_ray_on_loopback_and_matches_local(frame, local, tmp_path):
    """No --ray-address: the run starts its own Ray instance (in a fresh process, as a user's
    `coincast backtest --executor ray` does; RAY_ADDRESS still names the test cluster and is not
    used) on 127.0.0.1 (the executor checks), and shuts it down at the end."""
    frame.to_csv(tmp_path / "btc.csv")
    code = ("import sys, pandas as pd\n"
            "from coincast.backtest.engine import BacktestSettings, walk_forward\n"
            "from coincast.data import load\n"
            "from tests.conftest import tiny\n"
            "import torch; torch.set_num_threads(1)\n"
            f"r = walk_forward(load({str(tmp_path / 'btc.csv')!r}), tiny(window=12, target='close'),\n"
            f"                 BacktestSettings(start={START!r}, executor='ray', jobs=2), network=True)\n"
            "import ray; assert not ray.is_initialized()\n"
            f"r.table.to_pickle({str(tmp_path / 'table.pkl')!r})\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True, text=True,
                       timeout=300, env={k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"})
    assert p.returncode == 0, p.stderr[-3000:]
    pd.testing.assert_frame_equal(pd.read_pickle(tmp_path / "table.pkl"), local.table, rtol=1e-6, check_freq=False)


def test_evaluate_on_the_cluster_matches_the_grid_run_here(cluster, tmp_path):
    overrides = {"data": {"window": 12}, "train": {"epochs": 1}, "model": {"hidden": [4, 4]}}
    run = run_evaluation(["btc-usd", "eth-usd"], ["default"], 8, ex=executors.Executor("ray", address=cluster.address),
                         runs_dir=tmp_path, overrides=overrides)
    here = [evaluate_one(job) for job in plan_jobs(["btc-usd", "eth-usd"], ["default"], 8, 7, overrides)]
    assert [(r["coin"], r["preset"]) for r in run.rows] == [("btc-usd", "default"), ("eth-usd", "default")]
    for got, want in zip(run.rows, here):
        for key in ("rmse_ratio", "mae_ratio", "dm_p", "accuracy", "mean_shrink"):
            assert got[key] == pytest.approx(want[key], rel=1e-6), key
        assert len(got["nodes"]) == 1 and got["nodes"][0] in {n["NodeID"] for n in ray.nodes()}  # a warm run: one task


def test_fresh_folds_of_the_grid_run_as_tasks_on_both_nodes_and_match_the_grid_run_here(cluster, tmp_path):
    """Daily and hourly candles over the last 3 days, fresh folds of 2 + 1 days: the four folds of
    both runs are submitted at once, one task each; shrinkage off, so the rows score the network's
    own forecasts."""
    overrides = {"data": {"window": 12}, "train": {"epochs": 1}, "model": {"hidden": [4, 4], "shrink": False}}
    grid = functools.partial(run_evaluation, ["btc-usd"], ["default"], 3, 2, overrides=overrides,
                             timeframes=["1d", "1h"], refit="fresh")
    there = grid(ex=executors.Executor("ray", address=cluster.address), runs_dir=tmp_path / "ray")
    here = grid(runs_dir=tmp_path / "here")
    assert [(r["timeframe"], r["folds"], len(r["nodes"])) for r in there.rows] == [("1d", 2, 2), ("1h", 2, 2)]  # a task a fold
    for got, want in zip(there.rows, here.rows):
        assert want["rmse_ratio"] != 1.0  # the network's forecasts, not persistence's
        for key in ("rmse_ratio", "mae_ratio", "dm_p", "accuracy", "p_vs_50"):
            assert got[key] == pytest.approx(want[key], rel=1e-6), key
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert {node for r in there.rows for node in r["nodes"]} == alive  # folds of the grid ran on both nodes


def test_a_tune_on_the_cluster_runs_trials_on_both_nodes_and_matches_one_here(cluster, tmp_path):
    """Four trials, two at a time, their folds as Ray tasks: the same study as the one run in
    this process, trial after trial (TPE's first trials are the seed's random draws)."""
    ts = TuneSettings("2025-12-22", trials=4, days=14, jobs=2,
                      overrides={"train": {"epochs": TINY_EPOCHS}, "model": {"hidden": list(TINY_HIDDEN)}})
    there = run_tune("btc-usd", ts, executors.Executor("ray", address=cluster.address), runs_dir=tmp_path / "ray")
    here = run_tune("btc-usd", TuneSettings(**{**ts.__dict__, "jobs": 1}), runs_dir=tmp_path / "here")
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert set().union(*(t.user_attrs["nodes"] for t in there.study.trials)) == alive
    assert len(there.study.trials) == len(here.study.trials) == 4
    for a, b in zip(there.study.trials, here.study.trials):
        assert a.params == b.params
        assert a.value == pytest.approx(b.value, rel=1e-6)
    for got, want in zip(there.holdout, here.holdout):
        assert got["rmse_ratio"] == pytest.approx(want["rmse_ratio"], rel=1e-6)


# -- bad input: one line, exit 2, nothing written ----------------------------------------------
@pytest.mark.parametrize("args, words", [
    (["--executor", "bogus"], "executor must be 'local' or 'ray' (got 'bogus')"),
    (["--ray-address", "auto"], "--ray-address needs --executor ray"),
    (["--executor", "ray", "--ray-address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
    (["--executor", "ray", "--ray-address", "nowhere"], "Ray address must be auto or HOST:PORT (got 'nowhere')"),
    (["--executor", "ray", "--refit", "warm"], "warm refits run one after the other"),
    (["--threads-per-task", "0"], "threads per task must be at least 1 (got 0)"),
])
def test_cli_bad_executor_is_one_line_exit_2_nothing_written(cli, tmp_path, args, words):
    out = tmp_path / "runs"
    p = cli("backtest", *tiny_flags("backtest", window=12), "--start", START, "--out", str(out), *args, cwd=tmp_path)
    assert_user_error(p, words)
    assert not out.exists() or not any(out.iterdir())


def test_the_default_executors_never_import_ray():
    code = ("import sys\n"
            "import coincast\n"
            "from coincast.cli import main\n"
            "from coincast.backtest import engine, executors\n"
            "executors.check(engine.BacktestSettings(jobs=2).executor_of())\n"
            "from coincast.live import service, training\n"
            "from coincast.live.config import ServiceSettings, check_service\n"
            "check_service(ServiceSettings())\n"
            "training.executor(ServiceSettings()).stop()  # the live service's default: the local worker\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
