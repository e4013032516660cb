"""The versioned API, /v1: streams, forecasts, candles, decisions and models (reads), and
retrain, promote and rollback (writes, with the write token).

Reads go through the app's `Reader`; writes are commands run by the service's own thread
(`Service.control`), so the store keeps its one writer, and are recorded as made by the name of
the token that asked (auth.py). Every list is a page of at most 1,000 rows (`limit`, each route
with its own default) and `next_cursor` (null on the last page) fetches the next. An unknown name
answers 404 naming only what was asked for, and where the list is (never every name there is:
with a read token set, a caller without it must learn nothing from guessing).
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from coincast.api import auth
from coincast.api.guards import ApiError
from coincast.api.reader import Reader
from coincast.live import control

router = APIRouter(prefix="/v1")
START = Query(None, description="ISO time (UTC unless it says otherwise): rows from this time on")
END = Query(None, description="ISO time: rows before this time")
CURSOR = Query(None, description="next_cursor of the previous page")
MAX_PAGE = 1000


# The dependencies are async: they only compare tokens or look up the app's reader, so they run
# in the event loop rather than costing each request a trip through the thread pool.
async def read_access(request: Request, authorization: Optional[str] = Header(None)) -> None:
    _access(request, authorization, write=False)


async def write_access(request: Request, authorization: Optional[str] = Header(None)) -> str:
    """The name of the token that grants the write."""
    return _access(request, authorization, write=True)


def _access(request: Request, authorization: Optional[str], write: bool) -> str | None:
    try:
        return auth.check(request.app.state.tokens, authorization, write)
    except auth.Denied as exc:
        raise ApiError(exc.status, exc.detail) from None


async def reader(request: Request) -> Reader:
    return request.app.state.reader


def known_stream(name: str, r: Reader) -> str:
    if name not in r.names():
        raise ApiError(404, f"no stream '{name}': GET /v1/streams lists the streams")
    return name


def known_model(model_id: str, r: Reader) -> str:
    if not r.has_model(model_id):
        raise ApiError(404, f"no model '{model_id}': GET /v1/models lists the models")
    return model_id


class Change(BaseModel):
    """Why a model is promoted or rolled back by hand (recorded with the decision and the token's name)."""

    reason: str = Field(min_length=1, max_length=500)
    by: Optional[str] = Field(None, description="not accepted: who made a change is the name of the token that sent it")


def _who(change: Change, token: str) -> str:
    if change.by is not None:
        raise ApiError(422, "body field by: a change is recorded as made by the name of the token that sends it "
                            "(`name token` lines of `coincast serve --tokens FILE`); leave by out")
    return token


# -- reads ----------------------------------------------------------------------------------------
@router.get("/streams", dependencies=[Depends(read_access)])
def streams(r: Reader = Depends(reader)) -> dict:
    """Every stream: market, schedule, data freshness, champion, shadow, fallback, last error."""
    return {"streams": [r.stream(n) for n in r.names()]}


@router.get("/streams/{name}", dependencies=[Depends(read_access)])
def stream(name: str, r: Reader = Depends(reader)) -> dict:
    return r.stream(known_stream(name, r))


@router.get("/streams/{name}/forecast", dependencies=[Depends(read_access)], response_class=Response,
            responses={200: {"content": {"application/json": {}}, "description": "the latest forecast"}})
async def forecast(name: str, r: Reader = Depends(reader)) -> Response:
    """The latest served forecast: target time, point, 80/95% intervals, persistence, the network's
    price and the shrinkage a used, model, fallback.

    Answered from memory until the service's next pass (the store is read once per pass)."""
    known, body = r.latest_cached(known_stream(name, r))
    if not known:
        body = await run_in_threadpool(r.latest_json, name)  # a query: kept out of the event loop
    if body is None:
        raise ApiError(404, f"no forecast for stream '{name}' yet: the first model is still training")
    return Response(body, media_type="application/json")


@router.get("/streams/{name}/forecasts", dependencies=[Depends(read_access)], response_class=Response,
            responses={200: {"content": {"application/json": {}}, "description": "a page of forecasts"}})
def forecasts(name: str, start: Optional[datetime] = START, end: Optional[datetime] = END,
              limit: int = Query(100, ge=1, le=MAX_PAGE), cursor: Optional[str] = CURSOR,
              model: Optional[str] = Query(None, description="one model's forecasts (served or shadow)"),
              r: Reader = Depends(reader)) -> Response:
    """Served forecasts (or one model's), oldest first, with realised values and errors once known.

    Encoded straight from the rows; the page is kept until the service's next pass."""
    known_stream(name, r)
    if model is not None:
        known_model(model, r)
    return Response(r.forecasts_json(name, start, end, limit, cursor, model), media_type="application/json")


@router.get("/streams/{name}/candles", dependencies=[Depends(read_access)])
def candles(name: str, start: Optional[datetime] = START, end: Optional[datetime] = END,
            limit: int = Query(500, ge=1, le=MAX_PAGE), cursor: Optional[str] = CURSOR,
            r: Reader = Depends(reader)) -> dict:
    """Stored (closed) candles, oldest first."""
    return r.candles(known_stream(name, r), start, end, limit, cursor)


@router.get("/streams/{name}/decisions", dependencies=[Depends(read_access)])
def decisions(name: str, limit: int = Query(50, ge=1, le=MAX_PAGE), cursor: Optional[str] = CURSOR,
              model: Optional[str] = Query(None, description="only the decisions about this model"),
              r: Reader = Depends(reader)) -> dict:
    """The stream's decisions, newest first: first models, promotions, rejections, fallbacks, failures, missed."""
    known_stream(name, r)
    if model is not None:
        known_model(model, r)
    return r.decisions(name, limit, cursor, model)


@router.get("/models", dependencies=[Depends(read_access)])
def models(stream: Optional[str] = Query(None, description="only this stream's models"),
           limit: int = Query(100, ge=1, le=MAX_PAGE), cursor: Optional[str] = CURSOR,
           r: Reader = Depends(reader)) -> dict:
    """Models by stream, oldest first: status, training figures, live record."""
    if stream is not None:
        known_stream(stream, r)
    return r.models(stream, limit, cursor)


@router.get("/models/{model_id}", dependencies=[Depends(read_access)])
def model(model_id: str, r: Reader = Depends(reader)) -> dict:
    """One model: settings, training figures, live record, shadow start and the newest decisions about it
    (`decisions_cursor`: the next page, from /v1/streams/{name}/decisions?model=...)."""
    return r.model(known_model(model_id, r))


# -- writes ---------------------------------------------------------------------------------------
@router.post("/streams/{name}/retrain", status_code=202, dependencies=[Depends(write_access)])
def retrain(name: str, request: Request, r: Reader = Depends(reader)) -> dict:
    """Start a training now (a challenger, shadowed as a scheduled one is)."""
    service = request.app.state.service
    known_stream(name, r)
    model_id = service.control.call(lambda: control.retrain(service, name))
    return {"stream": name, "model": model_id, "status": "training"}


@router.post("/models/{model_id}/promote")
def promote(model_id: str, change: Change, request: Request, token: str = Depends(write_access),
            r: Reader = Depends(reader)) -> dict:
    """Make a shadow or retired model its stream's champion; the champion retires."""
    service, by = request.app.state.service, _who(change, token)
    known_model(model_id, r)
    return service.control.call(lambda: control.promote(service, model_id, by, change.reason))


@router.post("/models/{model_id}/rollback")
def rollback(model_id: str, change: Change, request: Request, token: str = Depends(write_access),
             r: Reader = Depends(reader)) -> dict:
    """`model_id` is a champion: its stream's previous champion takes the role back."""
    service, by = request.app.state.service, _who(change, token)
    known_model(model_id, r)
    return service.control.call(lambda: control.rollback(service, model_id, by, change.reason))
