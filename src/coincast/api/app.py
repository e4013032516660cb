"""The FastAPI app over a live service: /health, /ready, /metrics, /v1 (routes.py), the dashboard.

`create_app(service, tokens)` builds it; the service runs in its own thread beside the server
(server.py), and the app only reads through it (reader.py) or hands it commands. The OpenAPI
schema is at /openapi.json; there is no /docs page (its viewer loads from a CDN). CORS is off:
no Access-Control headers are sent, so browsers keep other sites' pages from reading the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from coincast.api import guards, risk, routes
from coincast.api.auth import Tokens, holder
from coincast.api.metrics import Metrics, RequestMetrics
from coincast.api.reader import BadCursor, NotReady, Reader
from coincast.errors import ModelFileError
from coincast.live.control import Busy, Refused
from coincast.live.service import Service

STATIC = Path(__file__).parent / "static"


def create_app(service: Service, tokens: Tokens = Tokens()) -> FastAPI:
    reader = Reader(service)
    metrics = Metrics(reader)
    app = FastAPI(title="coincast", version="1", docs_url=None, redoc_url=None,
                  description="Live next-step crypto forecasts, their record against persistence, and the model registry.")
    app.state.service, app.state.reader, app.state.tokens, app.state.metrics = service, reader, tokens, metrics
    guards.install(app)
    for kind, status in ((NotReady, 503), (Busy, 503), (Refused, 409), (ModelFileError, 409), (BadCursor, 422)):
        app.add_exception_handler(kind, _answer(status))
    app.include_router(routes.router)
    app.include_router(risk.router)  # the served distribution (daily streams)
    metrics.registry.register(risk.RiskCollector(reader))

    @app.get("/health")
    def health() -> dict:
        """Liveness: the server answers."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"description": "starting, catching up, stopped or failed"}})
    def ready(authorization: Optional[str] = Header(None)) -> JSONResponse:
        """Readiness: the store is open and the service has caught up. With a read token set, a caller
        without a token learns only that (`{"ready": ...}`); with one, the reason, the store and each
        stream's data age and last error."""
        told = not tokens.reads_protected or holder(tokens, authorization) is not None
        body = readiness(service, reader) if told else {"ready": _reason(service) is None}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics", dependencies=[Depends(routes.read_access)], response_class=Response)
    def prometheus() -> Response:
        """Prometheus text format: requests, latencies, forecasts, data age, trainings, decisions."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(guards.BodyLimit)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.router.on_shutdown.append(reader.close)
    return app


def _answer(status: int):
    """A handler answering an exception's one-line message with `status`."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status)

    return handler


def _reason(service: Service) -> tuple[str, str] | None:
    """(why, state) while the service is not ready; None once it is.

    Ready once the store is open and one pass over every stream is done (catching up after a
    restart: the candles that closed while down fetched, missed ones recorded); not while the
    loop is stopped or failed."""
    if service.failure is not None:
        return f"the live service failed: {service.failure}", "failed"
    if not service.opened.is_set():
        return "starting: the store is not open yet", "starting"
    if service.passes == 0:
        return "catching up: fetching and forecasting the candles that closed while the service was down", "catching up"
    if not service.running:
        return "the live service has stopped (end of its data, or shutting down): forecasts are no longer updated", "stopped"
    return None


def readiness(service: Service, reader: Reader) -> dict:
    """The whole answer of /ready: whether, why not, the store, and each stream's freshness."""
    reason, state = _reason(service) or (None, "running")
    streams = []
    if service.opened.is_set():
        for name in reader.names():
            s = reader.stream(name)
            streams.append({k: s[k] for k in ("name", "newest_candle", "data_age_s", "stale", "fallback", "last_error")})
    return {"ready": reason is None, "reason": reason, "service": state, "store": str(service.config.store),
            "passes": service.passes, "streams": streams}
