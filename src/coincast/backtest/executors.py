"""Where independent jobs run: in this process, a local process pool, or Ray tasks on one machine or a cluster.

`pool(fn, shared, ex)` is a place to submit jobs `fn(*shared, item)` to, one item at a time:
`submit(item)` starts the job and returns `wait()`, which gives `(result, node)` (`node`: the
Ray node id the job ran on; None locally). `coincast tune` submits each trial's folds as the
trial goes. `run_in_order(fn, shared, items, ex)` submits them all and yields the results in
the items' order, whatever order they finish in: the backtest maps its fresh folds through it,
and `coincast evaluate` its warm (coin, timeframe, preset) runs. `run_grouped(fn, groups, ex)`
does the same for several groups of items, each with its own `shared`: `coincast evaluate
--refit fresh` submits the fresh folds of all its runs at once, so a cluster runs folds of
different runs side by side.

- local, one job at a time: in this process, each job when its `wait()` is called.
- local: a spawn process pool of `jobs` processes, `threads` torch threads each; `shared` is
  sent once per process (the pool's initializer).
- ray: one Ray task per item, `threads` CPUs and torch threads each; `shared` is put in the
  object store once (`ray.put`) and every task reads it from there. A task whose worker dies
  (killed, out of memory) is retried up to `RETRIES` times; a task that fails for a user's
  reason (a CoincastError: bad data, settings) fails the run with that error's one line.
  Without an address, a Ray instance is started for the run: bound to 127.0.0.1, `jobs` x
  `threads` CPUs, object store capped at `OBJECT_STORE_BYTES`, no dashboard, shut down at the
  end. With one (`auto` or HOST:PORT), the run joins that cluster and leaves it running; its
  CPUs decide how many tasks run at once. A process already connected to Ray (a user's own
  `ray.init`) runs the tasks there and leaves the connection as it was.

Ray is an optional extra (`pip install coincast[ray]`): it is imported only when asked for.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from coincast.errors import CoincastError, ConfigError

EXECUTORS = ("local", "ray")
RETRIES = 3  # task retries when a Ray worker process dies mid-task
OBJECT_STORE_BYTES = 1_000_000_000  # the object store of a Ray instance started for a run
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray binds every node to 127.0.0.1


@dataclass
class Executor:
    kind: str = "local"  # "local" or "ray"
    jobs: int = 1  # local: processes; ray: CPUs of the instance started for the run
    address: str | None = None  # ray only: "auto" or HOST:PORT of a running cluster
    threads: int = 1  # torch threads (and Ray CPUs) per job


def check(ex: Executor) -> None:
    """Reject an unusable executor before anything is trained or written (ConfigError)."""
    if ex.kind not in EXECUTORS:
        raise ConfigError(f"executor must be 'local' or 'ray' (got {ex.kind!r}): e.g. --executor ray")
    if not isinstance(ex.threads, int) or ex.threads < 1:
        raise ConfigError(f"threads per task must be at least 1 (got {ex.threads}): e.g. --threads-per-task 1")
    if ex.address is not None and ex.kind != "ray":
        raise ConfigError("--ray-address needs --executor ray (the local executor runs on this machine only)")
    if ex.kind == "ray":
        _import_ray(ex)
        if ex.address is not None and ex.address != "auto":
            _check_reachable(ex.address)


def _import_ray(ex: Executor):
    if ex.address is None:  # read when Ray is imported: keep a run's own instance on loopback
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'coincast[ray]' (or use --executor local)") from None
    return ray


def _check_reachable(address: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address must be auto or HOST:PORT (got {address!r}): e.g. --ray-address 10.0.0.5:6379")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        raise ConfigError(f"no Ray cluster answers at {address} ({exc.strerror or exc}): start one there with "
                          f"`ray start --head --port {port}`, or leave out --ray-address to start one for this run") from None


@contextmanager
def pool(fn: Callable, shared: tuple, ex: Executor, size: int | None = None) -> Iterator[Callable[[Any], Callable[[], tuple]]]:
    """`submit(item) -> wait()` for jobs `fn(*shared, item)`; `size`: at most this many processes."""
    if ex.kind == "ray":
        with _ray_pool(fn, shared, ex) as submit:
            yield submit
    elif min(ex.jobs, size or ex.jobs) == 1:
        yield lambda item: lambda: (fn(*shared, item), None)
    else:
        with ProcessPoolExecutor(min(ex.jobs, size or ex.jobs), mp_context=mp.get_context("spawn"),
                                 initializer=_init_local, initargs=(fn, shared, ex.threads)) as p:
            yield lambda item: (lambda future=p.submit(_local, item): (future.result(), None))


def run_in_order(fn: Callable, shared: tuple, items: Iterable, ex: Executor) -> Iterator[tuple[Any, str | None]]:
    """`fn(*shared, item)` for every item, as (result, node) in the items' order."""
    items = list(items)
    with pool(fn, shared, ex, size=len(items)) as submit:
        waits = [submit(item) for item in items]
        for wait in waits:
            yield wait()


def run_grouped(fn: Callable, groups: list[tuple[tuple, list]], ex: Executor) -> Iterator[tuple[int, Any, str | None]]:
    """`fn(*shared, item)` for every item of every group `(shared, items)`, all submitted at once,
    as (group number, result, node) in the groups' and items' order. On Ray each group's
    `shared` is put in the object store once and read only by its own tasks; local processes
    get every group's once, in their initializer."""
    if ex.kind == "ray":
        with ExitStack() as stack:  # the first pool starts the run's own Ray instance, if any; the others join it
            submits = [stack.enter_context(pool(fn, shared, ex)) for shared, _ in groups]
            waits = [(g, submits[g](item)) for g, (_, items) in enumerate(groups) for item in items]
            for g, wait in waits:
                yield (g, *wait())
        return
    flat = [(g, item) for g, (_, items) in enumerate(groups) for item in items]
    shared = [s for s, _ in groups]
    for (g, _), (result, node) in zip(flat, run_in_order(_in_group, (fn, shared), flat, ex)):
        yield g, result, node


def _in_group(fn: Callable, shared: list[tuple], job: tuple[int, Any]):
    g, item = job
    return fn(*shared[g], item)


# -- local: a spawn process pool ------------------------------------------------------------
_LOCAL: dict = {}


def _init_local(fn: Callable, shared: tuple, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # the jobs are the parallelism: no oversubscribed cores
    _LOCAL.update(fn=fn, shared=shared)


def _local(item):
    return _LOCAL["fn"](*_LOCAL["shared"], item)


# -- ray: tasks, shared inputs in the object store ------------------------------------------
def _task(fn: Callable, threads: int, item, *shared):
    """One job in a Ray worker: `shared` arrives resolved from the object store."""
    import ray
    import torch

    torch.set_num_threads(threads)
    return fn(*shared, item), ray.get_runtime_context().get_node_id()


@contextmanager
def _ray_pool(fn: Callable, shared: tuple, ex: Executor):
    ray = _import_ray(ex)
    owned = not ray.is_initialized()
    if owned:
        _start(ray, ex)
    pending: set = set()
    try:
        refs = [ray.put(x) for x in shared]  # once: every task reads the same objects
        task = ray.remote(num_cpus=ex.threads, max_retries=RETRIES, retry_exceptions=False)(_task)

        def submit(item):
            ref = task.remote(fn, ex.threads, item, *refs)
            pending.add(ref)

            def wait():
                try:
                    return ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    if isinstance(exc.cause, CoincastError):  # the user's reason, in its own words
                        raise type(exc.cause)(str(exc.cause)) from None
                    raise
                finally:
                    pending.discard(ref)
            return wait

        yield submit
    finally:
        if owned:
            ray.shutdown()
        else:  # a cluster that outlives the run: stop what the run left unfinished
            for ref in list(pending):
                ray.cancel(ref)


def _start(ray, ex: Executor) -> None:
    try:
        if ex.address is None:  # "local": a new instance, even where RAY_ADDRESS names a running one
            ray.init(address="local", num_cpus=ex.jobs * ex.threads, object_store_memory=OBJECT_STORE_BYTES,
                     include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False, logging_level="ERROR")
            bound = {n["NodeManagerAddress"] for n in ray.nodes()}
            if bound != {"127.0.0.1"}:  # Ray was imported before LOOPBACK_ENV was set, with clusters enabled
                ray.shutdown()
                raise RuntimeError(f"the run's own Ray instance bound to {sorted(bound)}, not 127.0.0.1: "
                                   f"set {LOOPBACK_ENV}=0 before Ray is imported")
        else:
            ray.init(address=ex.address, log_to_driver=False, logging_level="ERROR")
    except ConnectionError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot join the Ray cluster at {ex.address}: {first} (start one with `ray start --head`, "
                          "or leave out --ray-address to start one for this run)") from None
