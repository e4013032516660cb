"""The live service's trainings as Ray tasks on a real two-node Ray cluster on this machine (no
mocks): the replay exchange on 127.0.0.1, real ccxt clients, real DuckDB, virtual time (a
training takes no simulated time, so each run is the same whichever node trains faster).

* a fleet of six daily streams: trainings run side by side on both nodes (the node id on each
  model row), every stream forecasts every candle from its first model on, the registry whole;
* a node killed during trainings (its raylet and workers, as `Cluster.remove_node` does): with
  retries the lost training is rerun on a live node; without, it is recorded failed with the
  reason; the champions keep serving, no stream misses a candle, no partial model files;
* a training's time limit cancels its task;
* the same seed and data give the same model bytes with the local worker and with Ray.

Tiny models (hidden [4, 4], one epoch): the module stays around a minute on 2 cores.
"""

import functools
import os
import threading

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when Ray is imported: loopback only

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import ray  # noqa: E402

from coincast import load  # noqa: E402
from coincast.live.config import ServiceSettings  # noqa: E402
from coincast.live.demo import demo_service  # noqa: E402
from coincast.live.ray_training import RayTrainer  # noqa: E402
from coincast.live.registry import MARKER, models_dir  # noqa: E402
from coincast.live.worker import Worker  # noqa: E402
from coincast.models.forecaster import Forecaster  # noqa: E402
from tests import ray_helpers  # noqa: E402
from tests.conftest import one_torch_thread, tiny  # noqa: E402

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
cluster = pytest.fixture(scope="module")(ray_helpers.two_nodes)

START = pd.Timestamp("2025-06-01", tz="UTC")
LAST = START.tz_localize(None)  # the store keeps UTC times naive
SIX = ("btc", "eth", "ltc", "bnb", "xrp", "ada")
SETTINGS = tiny(window=20, model={"shrink": False}, train={"shards": 1})


def alive() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


def run(cluster, store, coins, days, fn, retries=3, retrain_every=3):
    """The demo's service on the cluster, its trainings `fn` (worker.train_job after a rendezvous)."""
    lines: list[str] = []
    with demo_service(store, START, None, days, lines.append, SETTINGS, retrain_every=retrain_every, shadow=2,
                      guard=10, coins=coins, service=ServiceSettings("ray", cluster.address)) as (service, until):
        assert isinstance(service.worker, RayTrainer)
        service.worker = RayTrainer(cluster.address, retries=retries, fn=fn)
        service.run(threading.Event(), until=until)
    assert service.failure is None
    with duckdb.connect(str(store), read_only=True) as con:
        models = con.execute("SELECT * FROM models").df()
        served = con.execute("SELECT stream, target_time FROM forecasts WHERE served ORDER BY target_time").df()
        failures = con.execute("SELECT model, reason FROM decisions WHERE kind = 'failure'").df()
    return models, served, failures, lines


def assert_every_candle_forecast(models, served, last_day):
    """Each stream: a served forecast for every candle from its first model's on, none missed."""
    for stream, rows in served.groupby("stream"):
        targets = pd.DatetimeIndex(rows["target_time"])
        first = models.loc[models["stream"] == stream, "created"].min().normalize()
        assert targets[0] <= first + pd.Timedelta(days=1), stream
        assert list(targets) == list(pd.date_range(targets[0], last_day, freq="D")), stream
    assert served["stream"].nunique() == models["stream"].nunique()


def assert_registry_whole(store, models):
    """One champion a stream, at most one shadow, no training left; the model folder holds
    exactly the served models' folders, whole, and nothing half-written."""
    counts = models.groupby("stream")["status"].value_counts().unstack(fill_value=0)
    assert (counts["champion"] == 1).all(), counts
    assert "training" not in counts and ("shadow" not in counts or (counts["shadow"] <= 1).all()), counts
    kept = set(models.loc[models["status"].isin(["champion", "shadow", "retired"]), "id"])
    folder = models_dir(store)
    assert {p.name for p in folder.iterdir()} == kept | {MARKER}  # no orphan, no .tmp- staging folder
    for model_id in kept:
        Forecaster.load(folder / model_id)


def test_a_fleet_of_six_streams_trains_on_both_nodes_and_forecasts_every_candle(cluster, cli, tmp_path):
    store, meet = tmp_path / "live.duckdb", tmp_path / "meet"
    meet.mkdir()
    fn = functools.partial(ray_helpers.on_every_node, str(meet), 2)
    models, served, failures, lines = run(cluster, store, SIX, 7, fn)
    assert failures.empty, failures.to_string()
    assert set(models["stream"]) == {f"{c}-1d" for c in SIX}
    assert models["node"].notna().all()
    assert set(models["node"]) == alive()  # trainings ran on both nodes, each recorded on its row
    assert len(models) >= 12  # every stream retrained at least once (retrain every 3 candles, 7 days)
    assert_every_candle_forecast(models, served, LAST + pd.Timedelta(days=7))
    assert_registry_whole(store, models)
    assert any(" on node " in line and "trained in" in line for line in lines)
    shown = cli("models", "show", models["id"].iloc[0], "--store", str(store), cwd=tmp_path)
    assert f"trained on Ray node {models['node'].iloc[0]}" in shown.stdout


def test_a_training_past_its_time_limit_is_cancelled_and_recorded_failed(cluster, tmp_path):
    """A hung training (it waits for a file that never comes); the time limit runs on the
    executor's clock, here one the test moves: the task is cancelled and its result is a failure
    with the reason; nothing is written."""
    now = [0.0]
    trainer = RayTrainer(cluster.address, clock=lambda: now[0], fn=functools.partial(ray_helpers.waits, str(tmp_path)))
    trainer.submit({"id": "hung", "settings": SETTINGS.to_dict(), "candles": load("btc-usd").iloc[-400:],
                    "init": None, "staging": str(tmp_path / "staging")}, timeout_s=60)
    ref, = trainer.running
    assert trainer.poll() is None and trainer.busy  # within its limit
    now[0] = 61
    assert trainer.poll() == {"ok": False, "id": "hung", "reason": "the training did not finish within its time limit "
                                                                  "of 60 s (train_timeout); its Ray task was cancelled"}
    assert not trainer.busy and not (tmp_path / "staging").exists()
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=ray_helpers.WAIT_S)


def test_the_same_seed_and_data_give_the_same_model_bytes_with_the_worker_and_with_ray(cluster, tmp_path):
    job = {"id": "same", "settings": SETTINGS.to_dict(), "candles": load("eth-usd").iloc[-600:], "init": None}
    worker, trainer = Worker(threads=1), RayTrainer(cluster.address)
    try:
        worker.submit({**job, "staging": str(tmp_path / "worker")})
        trainer.submit({**job, "staging": str(tmp_path / "ray")})
        here, there = worker.wait(), trainer.wait()
    finally:
        worker.stop()
    assert here["ok"] and there["ok"], (here, there)
    assert there["node"] in alive()
    for name in ("model.safetensors", "model.json"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "worker" / name).read_bytes(), name
    assert {k: v for k, v in here["figures"].items() if k != "seconds"} == \
           {k: v for k, v in there["figures"].items() if k != "seconds"}


@pytest.mark.parametrize("retries", [3, 0])
def test_a_node_killed_during_trainings_retries_or_records_them_and_no_stream_stops(cluster, tmp_path, retries):
    """A third node joins; the three streams' second trainings run one on each node (a rendezvous
    holds them until one has started on the new node); the new node is killed while its training
    runs. The service runs on: with retries the training is rerun on a live node, without it is
    recorded failed with the reason; the champions serve every candle."""
    doomed = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    started = rendezvous / "started"

    def kill() -> None:
        ray_helpers.wait_for(started.exists, "a training on the doomed node")
        cluster.remove_node(doomed, allow_graceful=False)

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    fn = functools.partial(ray_helpers.dies_with_its_node, str(rendezvous), doomed.node_id, "-m2")
    store = tmp_path / "live.duckdb"
    models, served, failures, _ = run(cluster, store, SIX[:3], 6, fn, retries=retries, retrain_every=2)
    killer.join(timeout=ray_helpers.WAIT_S)
    assert not killer.is_alive()  # the node was killed (Ray marks it dead after its health checks)
    lost = started.read_text()
    row = models.set_index("id").loc[lost]
    if retries:
        assert row["status"] in ("shadow", "champion", "retired") and row["node"] != doomed.node_id  # rerun elsewhere
        assert failures.empty, failures.to_string()
    else:
        assert row["status"] == "failed"
        assert list(failures["model"]) == [lost]
        assert failures["reason"].iloc[0].startswith("the Ray task was lost after 0 retries (")
    assert_every_candle_forecast(models, served, LAST + pd.Timedelta(days=6))
    assert_registry_whole(store, models)
