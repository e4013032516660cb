"""What a client sees when a request goes wrong: always JSON, never a stack trace.

* `ApiError(status, detail, **extra)`: the routes' own refusals; a 404 names what was asked for
  and where the list of what exists is, never the names themselves (an unknown route: /openapi.json).
* a malformed value: 422 whose `detail` names the field (`query parameter limit: ...`).
* a request body over MAX_BODY bytes: 413, before the route runs (`BodyLimit`).
* anything unexpected: 500 `internal error`; the traceback goes to the server's log only.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

MAX_BODY = 64 * 1024
log = logging.getLogger("coincast.api")


class ApiError(Exception):
    def __init__(self, status: int, detail: str, **extra):
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


def _field(error: dict) -> str:
    where, *path = error.get("loc", ("?",))
    kind = {"query": "query parameter", "path": "path parameter", "body": "body field", "header": "header"}.get(where, where)
    return f"{kind} {'.'.join(str(p) for p in path) or '(whole body)'}"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into a JSON answer."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, **exc.extra}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(e), "message": e.get("msg", "invalid")} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body: dict = {"detail": exc.detail}
        if exc.status_code == 404 and exc.detail == "Not Found":
            body = {"detail": f"no route {request.url.path}: /openapi.json lists the routes"}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error: the request failed on the server (details are in its log)"},
                            status_code=500)


class BodyLimit:
    """ASGI middleware: refuse a body over `limit` bytes with 413 (by Content-Length, or as it streams)."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(send)
        seen, over, started = 0, False, False

        async def counted():
            nonlocal seen, over
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # the route gets an empty body; its answer is replaced by the 413
                over = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def watched(message):
            nonlocal started
            if over and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, watched)
        if over and not started:
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        response = JSONResponse({"detail": f"request body over {self.limit // 1024} KB: send at most {self.limit} bytes"},
                                status_code=413)
        await response({"type": "http"}, None, send)
