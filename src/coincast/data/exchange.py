"""Exchange ingestion with ccxt: page through closed OHLCV candles into the store.

A fetch resumes after the newest stored candle, lets ccxt pace requests to the
exchange's rate limit, retries transient failures (timeouts, 429, 5xx) with exponential
backoff (a 429 that says how long to wait, `Retry-After`, waits that long instead), never
stores the still-open candle, and commits each page on its own, so an interruption loses
nothing already fetched: run the same command again to resume.
"""

from __future__ import annotations

import difflib
import email.utils
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import ccxt
import pandas as pd
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from coincast.data.store import OHLCV, Store, timeframe_seconds
from coincast.errors import DataError

# Defaults: five retries waiting 1, 2, 4, 8, 16 s ride out a typical 429 ban or a short outage.
RETRIES = 5
BACKOFF_S = 1.0
MAX_RETRY_AFTER_S = 600.0  # the longest Retry-After a fetch waits out; beyond it, it stops and says so


class FetchError(DataError):
    """The exchange, symbol or timeframe is wrong, or the exchange kept failing."""


@dataclass(frozen=True)
class FetchResult:
    """What a fetch did: pages requested, closed candles received, and how the store changed."""

    exchange: str
    symbol: str
    timeframe: str
    pages: int
    candles: int
    inserted: int
    replaced: int
    last: pd.Timestamp | None

    def __str__(self) -> str:
        last = self.last.isoformat() if self.last is not None else "none"
        return (
            f"{self.exchange} {self.symbol} {self.timeframe}: {self.pages} pages, {self.candles} closed candles, "
            f"{self.inserted} new, {self.replaced} replaced; newest stored candle opens {last}"
        )


def make_client(exchange: str, **config) -> ccxt.Exchange:
    """A ccxt client for `exchange` with rate limiting on (public endpoints only, no keys)."""
    name = exchange.lower()
    if name not in ccxt.exchanges:
        near = difflib.get_close_matches(name, ccxt.exchanges, n=3)
        hint = f"did you mean {', '.join(near)}?" if near else "see `python -c 'import ccxt; print(ccxt.exchanges)'`"
        raise FetchError(f"unknown exchange '{exchange}': ccxt does not support it; {hint}")
    return getattr(ccxt, name)({"enableRateLimit": True, **config})


def fetch(
    exchange: str | ccxt.Exchange,
    symbol: str,
    timeframe: str,
    since: str | pd.Timestamp | None = None,
    store: str | Path | None = None,
    limit: int | None = None,
    retries: int = RETRIES,
    backoff_s: float = BACKOFF_S,
    progress: bool = True,
) -> FetchResult:
    """Fetch closed candles into the store, from `since` or else after the newest stored one.

    `exchange` is a ccxt id ('binance') or a ready ccxt client (tests point one at a
    local server). With no `since` and nothing stored, it starts at the exchange's
    earliest candle.
    """
    client = make_client(exchange) if isinstance(exchange, str) else exchange
    step_ms = timeframe_seconds(timeframe) * 1000
    pages = candles = inserted = replaced = 0
    with Store(store) as db:  # a bad or locked store fails before any request
        call = _retrying(client, retries, backoff_s)
        call(client.load_markets)
        symbol = _check_symbol(client, symbol)
        _check_timeframe(client, timeframe)
        last = db.last_open_time(client.id, symbol, timeframe)
        if since is not None:
            cursor = _to_ms(since)
        else:
            cursor = 0 if last is None else _to_ms(last) + step_ms
        now = client.milliseconds()
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, disable=not progress, transient=True) as bar:
            task = bar.add_task(f"{client.id} {symbol} {timeframe} pages", total=None)
            while cursor + step_ms <= now:  # at least one closed candle left to ask for
                page = call(lambda: client.fetch_ohlcv(symbol, timeframe, since=cursor, limit=limit))
                pages += 1
                frame = _page_frame(page)
                closed = frame[frame.index.as_unit("ms").asi8 + step_ms <= now]
                if len(closed):
                    result = db.upsert_candles(closed, client.id, symbol, timeframe, source=f"{client.id} page {pages}")
                    candles += len(closed)
                    inserted += result.inserted
                    replaced += result.replaced
                if bar.tasks[task].total is None and len(frame) > 1:
                    bar.update(task, total=pages + math.ceil((now - cursor) / (step_ms * len(frame))))
                bar.update(task, completed=pages)
                newest = int(frame.index.as_unit("ms").asi8.max()) if len(frame) else None
                if newest is None or newest < cursor or len(closed) < len(frame):
                    break  # empty page, no progress, or we reached the live candle: done
                cursor = newest + step_ms
        last = db.last_open_time(client.id, symbol, timeframe)
    return FetchResult(client.id, symbol, timeframe, pages, candles, inserted, replaced, last)


def _page_frame(page: list[list]) -> pd.DataFrame:
    """ccxt's [[ms, o, h, l, c, v], ...] as a frame; a candle sent twice is kept once (the later)."""
    frame = pd.DataFrame([row[:6] for row in page], columns=["ms", *OHLCV], dtype="float64")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("ms").astype("int64"), unit="ms", utc=True), name="date")
    return frame[~frame.index.duplicated(keep="last")].sort_index()


def _retrying(client: ccxt.Exchange, retries: int, backoff_s: float) -> Callable:
    """Wrap a ccxt call: retry transient errors with exponential backoff (or a 429's Retry-After),
    turn the rest into FetchError."""
    exchange = client.id

    def call(fn: Callable):
        for attempt in range(retries + 1):
            try:
                return fn()
            except ccxt.OperationFailed as exc:  # timeouts, 429, 5xx: ccxt marks them all as transient
                if attempt == retries:
                    raise FetchError(
                        f"{exchange} kept failing after {retries} retries ({type(exc).__name__}: {_first_line(exc)}); "
                        "check your connection and run the same command again: stored pages are kept and it resumes"
                    ) from None
                wait = _retry_after(client) if isinstance(exc, ccxt.DDoSProtection) else None
                if wait is not None and wait > MAX_RETRY_AFTER_S:
                    raise FetchError(
                        f"{exchange} asks to wait {wait:.0f} s before the next request (HTTP 429 Retry-After); "
                        "run the same command again after that: stored pages are kept and it resumes"
                    ) from None
                time.sleep(backoff_s * 2**attempt if wait is None else wait)
            except ccxt.BaseError as exc:
                raise FetchError(f"{exchange} refused the request ({type(exc).__name__}: {_first_line(exc)})") from None

    return call


def _retry_after(client: ccxt.Exchange) -> float | None:
    """Seconds the last answer's Retry-After asks to wait (a number, or an HTTP date), if it has one."""
    headers = getattr(client, "last_response_headers", None) or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)  # HTTP dates are GMT
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _check_symbol(client: ccxt.Exchange, symbol: str) -> str:
    if symbol in client.markets:
        return symbol
    if symbol.upper() in client.markets:
        return symbol.upper()
    near = difflib.get_close_matches(symbol.upper(), list(client.markets), n=3)
    hint = f"did you mean {', '.join(near)}?" if near else "write it as BASE/QUOTE, e.g. BTC/USDT"
    raise FetchError(f"{client.id} has no market '{symbol}'; {hint}")


def _check_timeframe(client: ccxt.Exchange, timeframe: str) -> None:
    offered = list(client.timeframes or {})
    if timeframe not in offered:
        raise FetchError(
            f"{client.id} does not offer timeframe '{timeframe}'; use one of {', '.join(offered) or 'none (no OHLCV)'}"
        )


def _to_ms(when: str | pd.Timestamp) -> int:
    try:
        stamp = pd.Timestamp(when)
    except (ValueError, TypeError):
        raise FetchError(f"--since '{when}' is not a date; write it as YYYY-MM-DD") from None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 10**6)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no details"
