"""`coincast live` (the live service, or its demo on the replay exchange) and `coincast models
ls|show|promote|rollback`.

Register them in cli/main.py:

    from coincast.cli.live import live, models_app

    app.command("live")(live)
    app.add_typer(models_app, name="models")
"""

from __future__ import annotations

import json
import logging
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from coincast.cli.options import ExecutorKind, RayAddress, ThreadsPerTask
from coincast.errors import ConfigError

out = Console(soft_wrap=True, highlight=False)


LOG_FORMAT_HELP = "Log lines as text (readable, a timestamp and a level on each) or json (one object a line, for log shippers)."
_format = {"log": "text"}


def use_log_format(fmt: str) -> None:
    """Send the service's log lines to stdout in `fmt` (ConfigError for an unknown one)."""
    from coincast.live.log import FORMATS, setup

    if fmt not in FORMATS:
        raise ConfigError(f"--log-format {fmt} is not a format: give {' or '.join(FORMATS)}")
    _format["log"] = fmt
    setup(fmt)


def say(line: str) -> None:
    """One line of the service (a URL, a signal): through `logging`, with a timestamp and a level."""
    logging.getLogger("coincast.live").info(line)


def note(line: str) -> None:
    """One line of the command itself (where the store is, "stopped cleanly"): as it is in text
    format (no markup: lines hold [brackets]), a log record in json format."""
    if _format["log"] == "json":
        logging.getLogger("coincast.cli").info(line)
    else:
        out.print(line, markup=False)


STORE_HELP = "Store file (default: the config's store; for --demo a new temporary folder)."
COINS_HELP = "--demo: the coins to forecast, comma-separated, of btc, eth, ltc, bnb, xrp, ada (daily USDT candles)."
HEAD_HELP = ("--demo: train the network's risk head with each model and serve it (the backtest's served model); "
             "--no-risk-head serves GARCH-t's distribution. A config sets it per stream: head = false in its stream.risk table.")
FAULTS_HELP = "--demo: answer every N-th request to the replay exchange with a fault (500, empty page, duplicates, shuffled) to watch the service ride them out; 0: none."

models_app = typer.Typer(no_args_is_help=True, help="The live model registry: list, show, promote, roll back.")


@contextmanager
def stop_on_signals():
    """An event set by SIGINT or SIGTERM: the service finishes its current step, then stops."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    handler = lambda signum, frame: (stop.set(), note(f"{signal.Signals(signum).name}: stopping after this step"))
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def live(
    demo: bool = typer.Option(False, "--demo", help="Run against a local replay exchange of the bundled candles (no internet, no config)."),
    config: Optional[Path] = typer.Option(None, help="TOML config with [[stream]] tables (see docs/guides/live.md)."),
    speed: float = typer.Option(1.0, help="--demo: simulated days per real second (0: as fast as the work allows)."),
    start: Optional[str] = typer.Option(None, "--from", help="--demo: first simulated day, YYYY-MM-DD (default 2025-06-01)."),
    days: Optional[int] = typer.Option(None, help="--demo: stop after this many simulated days (default: at the end of the data)."),
    store: Optional[Path] = typer.Option(None, help=STORE_HELP),
    log_format: str = typer.Option("text", "--log-format", help=LOG_FORMAT_HELP),
    coins: str = typer.Option("btc,eth", help=COINS_HELP),
    faults: int = typer.Option(0, help=FAULTS_HELP),
    executor: ExecutorKind = None,
    ray_address: RayAddress = None,
    threads_per_task: ThreadsPerTask = None,
    risk_head: bool = typer.Option(True, "--risk-head/--no-risk-head", help=HEAD_HELP),
):
    """Keep forecasts current: fetch each candle, forecast the next, score, retrain, shadow, promote."""
    use_log_format(log_format)
    if demo == (config is not None):
        raise ConfigError("give either --demo or --config live.toml (a file with [[stream]] tables)")
    if speed < 0 or (days is not None and days < 1):
        raise ConfigError("--speed must be 0 or more and --days at least 1")
    options = {"executor": executor, "ray_address": ray_address, "threads_per_task": threads_per_task}
    if demo:
        return _demo(speed, start, days, store, demo_coins(coins, faults), faults, service_options(None, options),
                     risk_head)
    from coincast.data.exchange import make_client
    from coincast.live.clock import WallClock
    from coincast.live.config import check, load_config
    from coincast.live.service import Service

    cfg = load_config(config)
    cfg.service = service_options(cfg.service, options)
    if store is not None:
        cfg.store = store
    check(cfg)
    note(f"live: {len(cfg.streams)} stream(s) into {cfg.store}; Ctrl-C stops after the current step")
    with stop_on_signals() as stop:
        Service(cfg, WallClock(), make_client).run(stop)
    note("stopped cleanly")


def service_options(svc, options: dict):
    """The config's [service] table (None: the defaults) with the options given on the command
    line in its place, checked (ConfigError)."""
    import dataclasses

    from coincast.live.config import ServiceSettings, check_service

    svc = dataclasses.replace(svc or ServiceSettings(), **{k: v for k, v in options.items() if v is not None})
    check_service(svc)
    return svc


def demo_coins(coins: str, faults: int) -> tuple[str, ...]:
    """The demo's coins from `--coins` (ConfigError on an unknown one), `--faults` checked."""
    from coincast.live.demo import COINS

    picked = tuple(c.strip().lower() for c in coins.split(",") if c.strip())
    unknown = [c for c in picked if c not in COINS]
    if unknown or not picked or len(set(picked)) < len(picked):
        raise ConfigError(f"--coins {coins}: give some of {', '.join(COINS)}, each once, comma-separated (e.g. btc,eth)")
    if faults < 0:
        raise ConfigError(f"--faults {faults}: give 0 (none) or N, to answer every N-th exchange request with a fault")
    return picked


def _demo(speed: float, start: Optional[str], days: Optional[int], store: Optional[Path], coins: tuple[str, ...],
          faults: int, service, head: bool) -> None:
    from coincast.live.demo import DAY_S, demo_start, run_demo

    first = demo_start(start)
    path = store or Path(tempfile.mkdtemp(prefix="coincast-live-demo-")) / "live.duckdb"
    note(f"demo store: {path} (the running service holds its lock: `coincast serve --demo` shows the same "
         "demo through an HTTP API and a dashboard while it runs)")
    with stop_on_signals() as stop:
        run_demo(path, first, speed * DAY_S or None, days, stop, None, coins=coins, fault_every=faults, service=service,
                 head=head)
    note(f"stopped cleanly; `coincast models ls --store {path}` lists the models and their live records")


def _registry(store: Optional[Path]):
    from coincast.data.store import Store
    from coincast.live.registry import Registry

    db = Store(store, read_only=True)
    return db, Registry(db, create=False)


@models_app.command("ls")
def models_ls(
    store: Path = typer.Option(..., help="The live service's store file."),
    stream: Optional[str] = typer.Option(None, help="Only this stream."),
):
    """Every model: stream, status, trained through, and its live record against persistence."""
    db, reg = _registry(store)
    with db:
        models = reg.models(stream)
    if models.empty:
        out.print(f"{store} holds no models{f' for stream {stream}' if stream else ''} yet: run `coincast live` first")
        return
    table = Table(box=None, collapse_padding=True, pad_edge=False)
    for col in ("id", "stream", "status", "trained through", "live n", "RMSE x persistence", "DM p", "direction"):
        table.add_column(col, no_wrap=True)
    for m in models.itertuples(index=False):
        rec = json.loads(m.live) if m.live else {}
        ratio = rec.get("rmse_ratio")
        table.add_row(m.id, m.stream, m.status, f"{m.trained_through:%Y-%m-%d %H:%M}", str(rec.get("n", 0)),
                      f"{ratio:.3f}" if ratio is not None else "-", _p(rec.get("dm_p_better")),
                      f"{rec['direction_accuracy']:.0%}" if rec.get("n") else "-")
    out.print(table)


@models_app.command("show")
def models_show(
    model_id: str = typer.Argument(..., help="A model id from `coincast models ls`."),
    store: Path = typer.Option(..., help="The live service's store file."),
):
    """One model: its settings, training figures, live record and the decisions about it."""
    db, reg = _registry(store)
    with db:
        models = reg.models()
        row = models[models["id"] == model_id]
        if row.empty:
            known = ", ".join(models["id"]) or "none yet"
            raise ConfigError(f"no model '{model_id}' in {store}; known: {known}")
        m = row.iloc[0]
        decisions = reg.decisions(m["stream"])
    node = m.get("node")  # the Ray node its training ran on (None: the local worker, or a store from before)
    out.print(f"{m['id']}: stream {m['stream']}, {m['status']}, trained through {m['trained_through']:%Y-%m-%d %H:%M}, "
              f"files {reg.folder(m['id'])}{f', trained on Ray node {node}' if isinstance(node, str) else ''}")
    for title, text in (("training", m["figures"]), ("live record", m["live"])):
        out.print(f"{title}: {json.dumps(json.loads(text)) if text else '-'}")
    mine = decisions[(decisions["model"] == model_id) | (decisions["other"] == model_id)]
    for d in mine.itertuples(index=False):
        out.print(f"{d.decided_at:%Y-%m-%d %H:%M} {d.kind}: {d.reason}")


def _changed(store: Path):
    """The registry on a writable store (the service must not be running: it owns the store)."""
    from coincast.data.store import Store
    from coincast.live.registry import Registry

    if not Path(store).exists():
        raise ConfigError(f"no store at {store}: give the live service's store file")
    db = Store(store)
    return db, Registry(db, create=False)


def _now():
    import pandas as pd

    return pd.Timestamp.now(tz="UTC")


@models_app.command("promote")
def models_promote(
    model_id: str = typer.Argument(..., help="A shadow or retired model id from `coincast models ls`."),
    reason: str = typer.Option(..., help="Why (recorded with the decision)."),
    by: Optional[str] = typer.Option(None, help="Who (default: the user name)."),
    store: Path = typer.Option(..., help="The live service's store file (stop the service first)."),
):
    """Make a model its stream's champion by hand; the champion retires. Recorded with who and why."""
    import getpass

    from coincast.models.forecaster import Forecaster

    db, reg = _changed(store)
    with db:
        row = reg.promotable(model_id)
        Forecaster.load(reg.folder(model_id))  # its files exist and load, or one line and nothing changes
        replaced = reg.swap(row["stream"], model_id, _now(), "manual_promotion", by or getpass.getuser(), reason)
    out.print(f"{model_id} is now the champion{f' (retired {replaced})' if replaced else ''}; "
              "a running service picks it up when restarted")


@models_app.command("rollback")
def models_rollback(
    stream: str = typer.Argument(..., help="The stream whose last champion change to undo."),
    reason: str = typer.Option(..., help="Why (recorded with the decision)."),
    by: Optional[str] = typer.Option(None, help="Who (default: the user name)."),
    store: Path = typer.Option(..., help="The live service's store file (stop the service first)."),
):
    """Give the champion role back to the model the current champion replaced."""
    import getpass

    from coincast.models.forecaster import Forecaster

    db, reg = _changed(store)
    with db:
        restored, retired = reg.previous_champion(stream)
        Forecaster.load(reg.folder(restored))
        reg.swap(stream, restored, _now(), "rollback", by or getpass.getuser(), reason)
    out.print(f"{stream}: {restored} is the champion again ({retired} retired)")


def _p(p) -> str:
    return "-" if p is None else f"{p:.3g}"
