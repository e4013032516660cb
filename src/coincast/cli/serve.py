"""`coincast serve`: the live service (`--config`, or `--demo` on the replay exchange) with its
HTTP API and dashboard, in one process (coincast.api.server)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import typer

from coincast.cli.live import (COINS_HELP, FAULTS_HELP, HEAD_HELP, LOG_FORMAT_HELP, STORE_HELP,
                               demo_coins, note, say, service_options,
                               use_log_format)
from coincast.cli.options import ExecutorKind, RayAddress, ThreadsPerTask
from coincast.errors import ConfigError


def serve(
    demo: bool = typer.Option(False, "--demo", help="The live demo: a local replay exchange of the bundled candles (no internet, no config)."),
    config: Optional[Path] = typer.Option(None, help="TOML config with [[stream]] tables (see docs/guides/live.md)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; any other than loopback needs a token."),
    port: int = typer.Option(8000, help="Port (0: any free one; the URL is printed)."),
    token_file: Optional[Path] = typer.Option(None, help="File whose first line is the write token (default: $COINCAST_TOKEN)."),
    read_token_file: Optional[Path] = typer.Option(None, help="File with a token that GET routes then require (default: $COINCAST_READ_TOKEN)."),
    tokens_file: Optional[Path] = typer.Option(None, "--tokens", help="File of named tokens, one `name token` (write) or `name token read` line each; changes are recorded by name."),
    speed: float = typer.Option(1.0, help="--demo: simulated days per real second."),
    start: Optional[str] = typer.Option(None, "--from", help="--demo: first simulated day, YYYY-MM-DD (default 2025-06-01)."),
    days: Optional[int] = typer.Option(None, help="--demo: stop the service after this many simulated days (the API keeps serving)."),
    store: Optional[Path] = typer.Option(None, help=STORE_HELP),
    log_format: str = typer.Option("text", "--log-format", help=LOG_FORMAT_HELP),
    coins: str = typer.Option("btc,eth", help=COINS_HELP),
    faults: int = typer.Option(0, help=FAULTS_HELP),
    executor: ExecutorKind = None,
    ray_address: RayAddress = None,
    threads_per_task: ThreadsPerTask = None,
    risk_head: bool = typer.Option(True, "--risk-head/--no-risk-head", help=HEAD_HELP),
):
    """Serve the live service's forecasts: HTTP API under /v1, /metrics, and a dashboard at /."""
    from coincast.api.auth import check_bind, load_tokens

    use_log_format(log_format)

    if demo == (config is not None):
        raise ConfigError("give either --demo or --config live.toml (a file with [[stream]] tables)")
    if speed <= 0 or (days is not None and days < 1):
        raise ConfigError("--speed must be above 0 (a served demo runs on a clock) and --days at least 1")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a port: give 0..65535 (0: any free one)")
    from coincast.api.server import bind

    tokens = load_tokens(token_file, read_token_file, tokens_file=tokens_file)
    check_bind(host, tokens)  # before anything is written
    options = {"executor": executor, "ray_address": ray_address, "threads_per_task": threads_per_task}
    if demo:
        first, picked, svc = _demo_start(start), demo_coins(coins, faults), service_options(None, options)
        with bind(host, port) as sock:
            return _demo(sock, tokens, speed, first, days, store, picked, faults, svc, risk_head)
    from coincast.data.exchange import make_client
    from coincast.live.clock import WallClock
    from coincast.live.config import check, load_config
    from coincast.live.service import Service

    cfg = load_config(config)
    cfg.service = service_options(cfg.service, options)
    if store is not None:
        cfg.store = store
    check(cfg)
    with bind(host, port) as sock:
        _serve(Service(cfg, WallClock(), make_client), sock, tokens)


def _demo_start(start: Optional[str]):
    from coincast.live.demo import demo_start

    return demo_start(start)


def _demo(sock, tokens, speed: float, first, days: Optional[int], store: Optional[Path], coins: tuple[str, ...],
          faults: int, service, head: bool) -> None:
    from coincast.live.demo import DAY_S, demo_service

    path = store or Path(tempfile.mkdtemp(prefix="coincast-serve-demo-")) / "live.duckdb"
    note(f"demo store: {path}")
    with demo_service(path, first, speed * DAY_S, days, None, coins=coins, fault_every=faults, service=service,
                      head=head) as (s, until):
        _serve(s, sock, tokens, until)


def _serve(service, sock, tokens, until=None) -> None:
    from coincast.api.app import create_app
    from coincast.api.server import serve, url

    app = create_app(service, tokens)
    writes = "writes need a token" if tokens.writes else "writes disabled (no token)"
    reads = "reads need a token" if tokens.reads_protected else "reads open"
    say(f"serving on {url(sock)}/ (dashboard), API {url(sock)}/v1, schema /openapi.json; {writes}, {reads}; Ctrl-C stops")
    serve(service, app, sock, until, say)
    note("stopped cleanly")
