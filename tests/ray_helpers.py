"""The Ray tests' two-node cluster, and the functions they send to Ray workers by value.

`two_nodes` (a module fixture of tests/test_ray.py and tests/test_live_ray.py): a real Ray
cluster on this machine (`ray.cluster_utils.Cluster`: a head and a second node, one CPU each),
this process connected to it; the tests set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray is
imported, so every node binds 127.0.0.1.

Fold functions (tests/test_ray.py): `dies_once` kills its own worker process (a real SIGKILL)
the first time fold 1 runs, leaving a marker file so the retry goes through; `bad_data` fails
fold 1 with a DataError, as a fold whose rows cannot be used would.

Trainings (tests/test_live_ray.py), each `worker.train_job` after a rendezvous through files in
`folder` (events, each wait bounded): `on_every_node` starts training once a training has
started on each of `nodes` nodes, so the first trainings of a fleet run side by side on both;
`dies_with_its_node` (the trainings of models whose id ends with `model`) never trains the
first time it runs on the node `doomed` (it records `started` there and waits to be killed with
its node) and elsewhere trains once that has happened; `waits` waits for a file that never comes
(a hung training).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from coincast.backtest.engine import fold_result
from coincast.errors import DataError
from coincast.live.worker import train_job

WAIT_S = 600  # the longest a rendezvous waits: only a guard against a hang (a fresh node's first worker
# imports torch, which on a busy 2-core machine can take minutes)

BAD_DATA = "fold 1: the close column is NaN on 2025-12-24: fix the file or drop that row"


def dies_once(marker: str, inputs, settings, p):
    if p.k == 1 and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return fold_result(inputs, settings, p)


def bad_data(inputs, settings, p):
    if p.k == 1:
        raise DataError(BAD_DATA)
    return fold_result(inputs, settings, p)


def two_nodes():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not find tests/
    ray.init(address=c.address, log_to_driver=False, logging_level="ERROR")
    yield c
    ray.shutdown()
    c.shutdown()


def wait_for(done, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {WAIT_S} s for {what}")
        time.sleep(0.02)


def _node() -> str:
    return ray.get_runtime_context().get_node_id()


def on_every_node(folder: str, nodes: int, job: dict) -> dict:
    (Path(folder) / _node()).touch()
    wait_for(lambda: len(list(Path(folder).iterdir())) >= nodes, f"trainings on {nodes} nodes")
    return train_job(job)


def dies_with_its_node(folder: str, doomed: str, model: str, job: dict) -> dict:
    if not job["id"].endswith(model):  # another round of trainings: as it is
        return train_job(job)
    started = Path(folder) / "started"
    if _node() == doomed and not started.exists():
        started.write_text(job["id"])
        wait_for(lambda: False, "this node to be killed")
    wait_for(started.exists, "a training on the doomed node")
    return train_job(job)


def waits(folder: str, job: dict) -> dict:
    wait_for((Path(folder) / "go").exists, "a file no test writes")
    return train_job(job)
