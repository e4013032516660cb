"""Run the app on uvicorn with the live service beside it, in one process.

The service loop runs in a thread of its own (trainings in its worker process), the server in the
main thread, so neither waits for the other. The socket is bound here first, so a busy port is one
line and `--port 0` gets a free one. SIGINT/SIGTERM stop both: the server finishes its requests,
the service its step; a service that fails stops the server and its error is raised here.
"""

from __future__ import annotations

import signal
import socket
import threading
from contextlib import contextmanager
from typing import Callable

import pandas as pd
import uvicorn

from coincast.errors import ConfigError
from coincast.live.service import Service


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (ConfigError when the address cannot be used)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port or --host") from None
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn, but SIGINT/SIGTERM only ask it to stop (uvicorn re-raises them after shutdown,
    which would kill the process before the service finishes its step)."""

    on_signal: Callable[[str], None] = print

    @contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            self.on_signal(f"{signal.Signals(signum).name}: stopping after this step")
            self.should_exit = True

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def serve(service: Service, app, sock: socket.socket, until: pd.Timestamp | None = None,
          log: Callable[[str], None] = print) -> None:
    """Serve `app` on `sock` while `service` runs; returns when a signal stops both."""
    stop = threading.Event()
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    server.on_signal = log

    def live() -> None:
        try:
            service.run(stop, until=until)
        except BaseException:
            server.should_exit = True  # the error is raised below, after the server stopped

    thread = threading.Thread(target=live, name="coincast-live", daemon=True)
    thread.start()
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        thread.join()
    if service.failure is not None:
        raise service.failure
