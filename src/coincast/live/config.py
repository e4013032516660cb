"""The live service's configuration: a TOML file with a store, `[[stream]]` tables (one stream
each) and `[[fleet]]` tables (many markets of one exchange in one table, `live/fleet.py`).

    store = "~/coincast/live.duckdb"        # optional: default $COINCAST_STORE, else the user's store
    [[stream]]
    name = "btc-1d"
    data = "store:binance/BTC/USDT/1d"      # fetched with ccxt as `coincast fetch` does
    since = "2023-01-01"                    # first candle to fetch into an empty store (default: all)
    preset = "default"
    retrain_every = 7                       # candles between trainings
    refit = "warm"                          # "warm": start from the champion's weights; "fresh"
    shadow = 7                              # candles a challenger forecasts beside the champion
    guard = 60                              # forecasts in the live record the guard judges
    train_timeout = "2h"                    # a training's time limit (default: from the stream's size)
    [stream.risk]                           # daily streams: the network's risk head (live/head.py)
    head = true                             # train it with each model (false: GARCH-t / HAR-RV only)
    head_epochs = 40                        # its first training's epoch limit
    [stream.settings.model]                 # any [data]/[model]/[train] setting of `coincast run`
    hidden = [16, 16]

    [[fleet]]                               # one stream per (symbol, timeframe): btc-usdt-1d, btc-usdt-1h, ...
    exchange = "binance"
    symbols = ["BTC/USDT", "ETH/USDT"]
    timeframes = ["1d", "1h"]
    retrain_every = 7                       # any [[stream]] key but name and data, shared
    [fleet.timeframe.1h]                    # keys for one timeframe's streams
    retrain_every = 168
    [service]                               # optional: where trainings run
    executor = "ray"                        # "local" (default): one worker process; "ray": Ray tasks
    ray_address = "auto"                    # "auto" or HOST:PORT of a running cluster; left out: a Ray
                                            # instance started for the service on 127.0.0.1
    threads_per_task = 1                    # torch threads (and Ray CPUs) per training

`coincast live` and `coincast serve` take the same as --executor, --ray-address and
--threads-per-task; an option given overrides the config.

Everything is checked before anything is written; each mistake is one ConfigError line that
says what is wrong and how to fix it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from coincast.config import Settings, apply_overrides, preset, tomllib, validate
from coincast.data.exchange import make_client
from coincast.data.store import default_path, parse_ref, timeframe_seconds
from coincast.errors import CoincastError, ConfigError


@dataclass
class StreamRisk:
    """A stream's [stream.risk] table: the network's risk head, trained with each model of a daily
    stream that has its history (live/head.py), so the stream serves the backtest's served model."""

    head: bool = True
    head_epochs: int | None = None  # its first training's epoch limit (None: NetworkRisk's, 40; early stopping ends it sooner)


@dataclass
class Stream:
    """One forecast stream: a market's candles, the model settings and the retraining schedule."""

    name: str
    data: str  # store:EXCHANGE/SYMBOL/TIMEFRAME
    settings: Settings = field(default_factory=Settings)
    since: str | None = None
    retrain_every: int = 7
    refit: str = "warm"
    shadow: int = 7
    guard: int = 60
    train_timeout: str | None = None  # a pandas duration ("90min", "2h"); None: live.worker.default_timeout
    risk: StreamRisk = field(default_factory=StreamRisk)

    @property
    def market(self) -> tuple[str, str, str]:
        """(exchange, symbol, timeframe)."""
        return parse_ref(self.data)

    @property
    def bar(self) -> pd.Timedelta:
        return pd.Timedelta(seconds=timeframe_seconds(self.market[2]))


@dataclass
class ServiceSettings:
    """The `[service]` table: where the service's trainings run (live/training.py)."""

    executor: str = "local"  # "local": the worker process (live/worker.py); "ray": Ray tasks (live/ray_training.py)
    ray_address: str | None = None  # "auto" or HOST:PORT; None: a Ray instance started for the service on 127.0.0.1
    threads_per_task: int = 1


@dataclass
class LiveConfig:
    streams: list[Stream]
    store: Path = field(default_factory=default_path)
    service: ServiceSettings = field(default_factory=ServiceSettings)


STREAM_KEYS = {f.name for f in dataclasses.fields(Stream)} | {"preset"}
SERVICE_KEYS = {f.name for f in dataclasses.fields(ServiceSettings)}


def load_config(path: str | Path) -> LiveConfig:
    """Read and check a live TOML config (ConfigError on the first mistake)."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}; write one with [[stream]] tables (see docs/guides/live.md)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix the syntax") from None
    unknown = set(doc) - {"store", "stream", "fleet", "service"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}: the top level holds store, "
                          "[[stream]] and [[fleet]] tables and a [service] table")
    tables, fleets = doc.get("stream", []), doc.get("fleet", [])
    if not isinstance(tables, list) or not isinstance(fleets, list) or not (tables or fleets):
        raise ConfigError(f"{path} has no streams: add at least one [[stream]] table with name and data, "
                          "or a [[fleet]] table with exchange, symbols and timeframes")
    from coincast.live.fleet import fleet_streams  # it builds on this module's Stream and checks

    streams = [stream_from(t, k + 1) for k, t in enumerate(tables)]
    streams += fleet_streams(fleets, streams)
    store = Path(doc["store"]).expanduser() if "store" in doc else default_path()
    return check(LiveConfig(streams, store, service_from(doc.get("service", {}))))


def service_from(table) -> ServiceSettings:
    """The [service] table as ServiceSettings (its values are checked by `check`)."""
    if not isinstance(table, dict):
        raise ConfigError("service must be a table: write [service] then executor = \"ray\" on the next line")
    unknown = set(table) - SERVICE_KEYS
    if unknown:
        raise ConfigError(f"[service]: unknown key(s) {', '.join(sorted(unknown))}; known are {', '.join(sorted(SERVICE_KEYS))}")
    return ServiceSettings(**table)


def stream_from(table: dict, k: int) -> Stream:
    """One [[stream]] table (the k-th) as a Stream, its settings applied on its preset."""
    where = f"stream {table.get('name', k)!r}" if isinstance(table, dict) else f"stream {k}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table: write [[stream]] then one key per line")
    unknown = set(table) - STREAM_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known are {', '.join(sorted(STREAM_KEYS))}")
    for key in ("name", "data"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise ConfigError(f"{where} needs {key} = \"...\" (e.g. name = \"btc-1d\", data = \"store:binance/BTC/USDT/1d\")")
    settings = apply_overrides(preset(table.get("preset", "default")), _settings_table(table, where))
    values = {k: v for k, v in table.items() if k not in ("preset", "settings", "risk")}
    return Stream(settings=validate(settings), risk=_risk_table(table, where), **values)


def _settings_table(table: dict, where: str) -> dict:
    settings = table.get("settings", {})
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}: settings must be tables, e.g. [stream.settings.model] then hidden = [16, 16]")
    return settings


def _risk_table(table: dict, where: str) -> StreamRisk:
    risk = table.get("risk", {})
    known = {f.name for f in dataclasses.fields(StreamRisk)}
    if not isinstance(risk, dict):
        raise ConfigError(f"{where}: risk must be a table, e.g. [stream.risk] then head = false")
    if set(risk) - known:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(set(risk) - known))} in [stream.risk]; "
                          f"known are {', '.join(sorted(known))}")
    return StreamRisk(**risk)


def check(config: LiveConfig) -> LiveConfig:
    """Ranges, names, exchanges and timeframes, and a writable store, before anything is written."""
    names = [s.name for s in config.streams]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"stream name(s) {', '.join(repeated)} used twice: give every [[stream]] its own name")
    for s in config.streams:
        check_stream(s)
    check_service(config.service)
    _check_writable(config.store)
    return config


def check_service(svc: ServiceSettings) -> None:
    """An executor the service can use: its values, Ray installed, the cluster answering (ConfigError)."""
    from coincast.backtest.executors import Executor, check

    if svc.executor not in ("local", "ray"):
        raise ConfigError(f"[service] executor must be \"local\" or \"ray\" (got {svc.executor!r}): "
                          "e.g. executor = \"ray\" or --executor ray")
    t = svc.threads_per_task
    if not isinstance(t, int) or isinstance(t, bool) or t < 1:
        raise ConfigError(f"[service] threads_per_task must be a whole number, at least 1 (got {t!r}): "
                          "e.g. threads_per_task = 1 or --threads-per-task 1")
    if svc.ray_address is not None and not isinstance(svc.ray_address, str):
        raise ConfigError(f"[service] ray_address must be \"auto\" or \"HOST:PORT\" (got {svc.ray_address!r})")
    if svc.ray_address is not None and svc.executor != "ray":
        raise ConfigError("[service] ray_address needs executor = \"ray\" (or --executor ray): "
                          "the local worker runs on this machine only")
    check(Executor(svc.executor, address=svc.ray_address, threads=t))  # Ray installed, the cluster answers


def check_stream(s: Stream) -> None:
    """One stream's ranges, names, exchange and timeframe (ConfigError naming the stream)."""
    where = f"stream {s.name!r}"
    if not all(c.isalnum() or c in "-_." for c in s.name):
        raise ConfigError(f"{where}: a name may hold letters, digits, '-', '_' and '.' only (it names model folders)")
    whole = [("retrain_every", s.retrain_every, 1), ("shadow", s.shadow, 1), ("guard", s.guard, 2)]
    for key, value, least in whole:
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigError(f"{where}: {key} must be a whole number of candles, at least {least} (got {value!r})")
    if s.train_timeout is not None:
        try:
            ok = isinstance(s.train_timeout, str) and pd.Timedelta(s.train_timeout) > pd.Timedelta(0)
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise ConfigError(f"{where}: train_timeout must be a duration above zero, e.g. \"90min\" or \"2h\" "
                              f"(got {s.train_timeout!r}); leave it out for a limit from the stream's size")
    if not isinstance(s.risk.head, bool):
        raise ConfigError(f"{where}: [stream.risk] head must be true or false (got {s.risk.head!r})")
    epochs = s.risk.head_epochs
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1):
        raise ConfigError(f"{where}: [stream.risk] head_epochs must be a whole number of epochs, at least 1 (got {epochs!r})")
    if s.refit not in ("warm", "fresh"):
        raise ConfigError(f"{where}: refit must be \"warm\" or \"fresh\" (got {s.refit!r})")
    if s.since is not None:
        try:
            pd.Timestamp(s.since)
        except (ValueError, TypeError):
            raise ConfigError(f"{where}: since must be a date YYYY-MM-DD (got {s.since!r})") from None
    if not str(s.data).startswith("store:"):
        raise ConfigError(f"{where}: data must be a store reference, e.g. store:binance/BTC/USDT/1d (got {s.data!r})")
    try:
        exchange, _, timeframe = s.market
        timeframe_seconds(timeframe)
        client = make_client(exchange)
    except CoincastError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    offered = list(getattr(client, "timeframes", None) or {})
    if timeframe not in offered:
        raise ConfigError(f"{where}: {exchange} does not offer timeframe '{timeframe}'; use one of {', '.join(offered)}")
    if not client.has.get("fetchOHLCV"):
        raise ConfigError(f"{where}: {exchange} serves no candles through ccxt (no fetchOHLCV); choose another exchange")


def _check_writable(store: Path) -> None:
    """The store's folder exists or can be made, and can be written (models go beside the store)."""
    folder = store.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK) \
            or (store.exists() and not os.access(store, os.W_OK)):
        raise ConfigError(f"store {store} cannot be written (no write permission in {existing or folder}); "
                          "choose a writable path with store = \"...\" in the config or --store")

