"""How many markets can one live service run? A simulated month of 12 streams on the replay exchange.

    .venv/bin/python benchmarks/live_fleet.py [--days 30] [--executors local,ray1,ray2] [--default-model]

The six bundled coins as <COIN>USDT, daily and hourly (12 streams), on virtual time (each pass
over the streams takes as long as its work; no simulated time passes otherwise), with trainings
NOT held: they run beside the loop in real time, so the replay runs at full speed and the
executor's throughput decides how many of the due trainings get done. The demo's small model
(window 20, hidden [8, 8], 5 epochs, batches of 256) on every stream; daily streams train on
candles since 2023-01-01 and retrain every 7 candles, hourly ones on candles since 2025-09-01
and retrain every 24 candles. Once per executor:

- local: the service's worker process (one training at a time, one torch thread, nice +10);
- ray1 / ray2: Ray tasks (one CPU and one torch thread each) on a Ray cluster of one or two
  nodes of one CPU each on 127.0.0.1 (`ray.cluster_utils.Cluster`), joined by the service.

Measured in the service's process: wall time; trainings finished (and per wall hour) and their
own seconds (the `seconds` figure of each training), by timeframe; forecast latency per candle,
from the tick (the start of the pass that forecasts it: every stream's fetch starts then, side by
side) to its forecast rows written (`Registry.issue` returning),
by timeframe; the store's write cost per forecast (`Registry.issue` and `issue_risk`, per
call) and per registration (`training._register`: files moved, rows and decision in one
transaction); the service's RSS after each pass (the training processes are not counted).

A pass (the 6 hourly streams, at midnight the 6 daily ones too) takes under a second of wall
time on a quiet 2-core machine, so the simulated month (720 hourly passes) takes about 9
minutes per executor there, all three in about half an hour; `--days 7` runs a week.

`--default-model` instead times one training of the default preset (what a stream gets
without settings), one torch thread, in this process, on BTC/USDT daily and hourly candles as
the streams above see them on their first day (the daily one with its first risk head, pooled
with the other five coins): the per-training cost the extrapolation in BENCHMARKS.md starts from.

Writes one JSON per executor and `summary.json` (or `default_model.json`) to --out (default
benchmarks/results/live_fleet/), and prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when Ray is imported: loopback only

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from coincast.live import training  # noqa: E402
from coincast.data.store import timeframe_seconds  # noqa: E402
from coincast.live.clock import SimClock  # noqa: E402
from coincast.live.config import LiveConfig, ServiceSettings, Stream, check  # noqa: E402
from coincast.live.demo import demo_settings  # noqa: E402
from coincast.live.registry import Registry  # noqa: E402
from coincast.live.replay import COINS, Replay, ReplayExchange  # noqa: E402
from coincast.live.service import Service  # noqa: E402
from coincast.machine import cpu_model  # noqa: E402

START = pd.Timestamp("2025-12-01 00:01", tz="UTC")  # the hourly series end 2026-01-05 23:00
SINCE = {"1d": "2023-01-01", "1h": "2025-09-01"}
RETRAIN = {"1d": 7, "1h": 24}  # candles between trainings: weekly / daily
SHADOW = {"1d": 7, "1h": 24}
GUARD = {"1d": 30, "1h": 48}


def streams() -> list[Stream]:
    return [Stream(f"{coin}-{tf}", f"store:binance/{coin.upper()}/USDT/{tf}", demo_settings(), SINCE[tf], RETRAIN[tf],
                   "warm", SHADOW[tf], GUARD[tf]) for tf in ("1d", "1h") for coin in COINS]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def summary(values: list[float], scale: float = 1000.0) -> dict:
    """n, median, p95, max (in ms for `scale` 1000)."""
    return {"n": len(values), "median": _r(statistics.median(values) * scale if values else None),
            "p95": _r(pct(values, 0.95) * scale if values else None), "max": _r(max(values) * scale if values else None)}


def _r(x):
    return None if x is None else round(x, 3)


class Measured(Service):
    """The service, timing each pass's start (the tick) and sampling RSS after each pass."""

    pass_start = 0.0
    rss: list[float]

    def _pass(self, stop):
        self.pass_start = time.perf_counter()
        super()._pass(stop)
        self.rss.append(rss_mib())


def instrument(service: Measured, out: dict) -> None:
    """Time the store's writes and each forecast's latency (class attributes patched for the run)."""
    issue, issue_risk, register = Registry.issue, Registry.issue_risk, training._register

    def timed_issue(self, rows):
        t = time.perf_counter()
        n = issue(self, rows)
        done = time.perf_counter()
        out["issue_s"].append(done - t)
        if rows:
            tf = rows[0]["stream"].rsplit("-", 1)[1]
            out[f"latency_{tf}_s"].append(done - service.pass_start)
        return n

    def timed_issue_risk(self, rows):
        t = time.perf_counter()
        issue_risk(self, rows)
        out["issue_risk_s"].append(time.perf_counter() - t)

    def timed_register(svc, result):
        t = time.perf_counter()
        register(svc, result)
        out["register_s"].append(time.perf_counter() - t)

    Registry.issue, Registry.issue_risk, training._register = timed_issue, timed_issue_risk, timed_register
    out["_restore"] = lambda: (setattr(Registry, "issue", issue), setattr(Registry, "issue_risk", issue_risk),
                               setattr(training, "_register", register))


def run_one(kind: str, days: int, folder: Path) -> dict:
    cluster = None
    svc = ServiceSettings()
    if kind.startswith("ray"):
        import ray
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        for _ in range(int(kind[3:]) - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        svc = ServiceSettings("ray", cluster.address, 1)
    store = folder / f"{kind}.duckdb"
    out: dict = {k: [] for k in ("issue_s", "issue_risk_s", "register_s", "latency_1d_s", "latency_1h_s")}
    clock = SimClock(START, None)  # virtual time
    until = START + pd.Timedelta(days=days)
    lines: list[str] = []
    try:
        with ReplayExchange(Replay(clock, days_before_today=None)) as exchange:
            service = Measured(check(LiveConfig(streams(), store, svc)), clock, lambda name: exchange.client(timeout_ms=10_000),
                               lines.append, grace=pd.Timedelta(minutes=1), hold="none", threads=1, fetch_backoff_s=0.05)
            service.rss = []
            instrument(service, out)
            t0 = time.perf_counter()
            service.run(threading.Event(), until=until)
            wall = time.perf_counter() - t0
    finally:
        out.pop("_restore", lambda: None)()
        if cluster is not None:
            import ray

            ray.shutdown()
            cluster.shutdown()
    if service.failure is not None:
        raise service.failure
    with duckdb.connect(str(store), read_only=True) as con:
        models = con.execute("SELECT stream, status, figures, node FROM models").df()
        forecasts = con.execute("SELECT stream, count(*) AS n FROM forecasts WHERE served GROUP BY stream").df()
    models["tf"] = models["stream"].str.rsplit("-", n=1).str[1]
    done = models[models["figures"].notna()]
    seconds = {tf: [json.loads(f)["seconds"] for f in g["figures"]] for tf, g in done.groupby("tf")}
    due = {tf: len(COINS) * (days * 86400 // (RETRAIN[tf] * timeframe_seconds(tf)) + 1) for tf in RETRAIN}
    return {
        "executor": kind, "days": days, "streams": len(streams()), "passes": service.passes, "wall_s": round(wall, 1),
        "trainings_started": int(len(models)), "trainings_finished": int(len(done)),
        "trainings_failed": int((models["status"] == "failed").sum()),
        "trainings_per_wall_hour": round(len(done) / wall * 3600, 1),
        "trainings_finished_by_timeframe": {tf: len(v) for tf, v in seconds.items()},
        "trainings_due_by_schedule": due,
        "training_s_by_timeframe": {tf: {"n": len(v), "median": round(statistics.median(v), 3), "max": round(max(v), 3)}
                                    for tf, v in seconds.items()},
        "nodes": sorted(set(models["node"].dropna())),
        "served_forecasts": int(forecasts["n"].sum()),
        "forecast_latency_ms": {"1d": summary(out["latency_1d_s"]), "1h": summary(out["latency_1h_s"])},
        "store_write_ms": {"issue_per_call": summary(out["issue_s"]), "issue_risk_per_call": summary(out["issue_risk_s"]),
                           "registration": summary(out["register_s"])},
        "rss_mib": {"after_first_pass": round(service.rss[0], 1), "median": round(statistics.median(service.rss), 1),
                    "peak": round(max(service.rss), 1), "end": round(service.rss[-1], 1)},
    }


def default_model_cost() -> dict:
    """Seconds of one default-preset training (`worker.train_job`) per timeframe, one thread."""
    from coincast.config import preset
    from coincast.data import load
    from coincast.live.worker import train_job

    def candles(dataset: str, tf: str) -> pd.DataFrame:
        return load(dataset).loc[pd.Timestamp(SINCE[tf], tz="UTC"):START.floor("D") - pd.Timedelta(seconds=1)]

    out = {}
    with tempfile.TemporaryDirectory(prefix="coincast-live-fleet-") as tmp:
        for tf, dataset in (("1d", "btc-usd"), ("1h", "btc-usd-1h")):
            # a daily stream's first training also fits the network's risk head, pooled with the
            # fleet's other daily markets (live/head.py); a warm retrain only continues it
            head = {"head": {"epochs": None}, "pool": {f"binance/{c.upper()}/USDT": candles(f"{c}-usd", tf)
                                                        for c in COINS if c != "btc"}} if tf == "1d" else {}
            t = time.perf_counter()
            fig = train_job({"id": tf, "settings": preset("default").to_dict(), "candles": candles(dataset, tf),
                             "init": None, "staging": str(Path(tmp) / tf), **head})
            out[tf] = {"candles": len(candles(dataset, tf)), "wall_s": round(time.perf_counter() - t, 2),
                       "epochs_run": fig["epochs_run"], "windows": fig["windows"],
                       "risk_head_s": round(fig["risk_head"]["seconds"], 2) if fig.get("risk_head") else None}
            print(json.dumps({tf: out[tf]}))
    return out


def environment() -> dict:
    import ray

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "ray": ray.__version__, "duckdb": duckdb.__version__, "pandas": pd.__version__,
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
            "measured_at": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M UTC"), "nice": os.nice(0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--executors", default="local,ray1,ray2")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "live_fleet")
    p.add_argument("--default-model", action="store_true", help="time one default-preset training per timeframe instead")
    args = p.parse_args()
    torch.set_num_threads(1)  # the service forecasts one window at a time; a training gets one thread
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment()
    print(json.dumps(env))
    if args.default_model:
        cost = {"environment": env, "trainings": default_model_cost(), "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
        (args.out / "default_model.json").write_text(json.dumps(cost, indent=1) + "\n")
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="coincast-live-fleet-") as tmp:
        for kind in args.executors.split(","):
            r = {**run_one(kind, args.days, Path(tmp)), "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
            (args.out / f"{kind}.json").write_text(json.dumps(r, indent=1) + "\n")
            print(json.dumps(r))
            results.append(r)
    (args.out / "summary.json").write_text(json.dumps({"environment": env, "runs": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
