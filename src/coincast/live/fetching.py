"""Phase 1 of a stream's step: fetch the new closed candles into the store.

The fetches of a pass run side by side in the service's fetch threads, so a slow exchange or
market holds back only its own stream: `start` (on the service's thread) asks for the candles
after what is stored, the fetch runs in a fetch thread and writes them through its own
connection to the store (DuckDB takes writes from several connections; each fetch writes its own
market's rows), and `record` (on the service's thread, once that fetch is in) notes the outcome
in the stream's state. The registry is written by the service's thread only.

ccxt, with the retries and backoff of `coincast fetch` (a 429's Retry-After honoured). A ccxt
client is not safe to share between threads (its rate limiter, its last response), so each fetch
thread has its own client per exchange (`Service.client`): markets load once per thread, and
ccxt paces each client to the exchange's rate limit. The last REREAD stored candles are fetched
again, so a candle the exchange revised after close replaces its row (the registry keeps the
realised value a forecast was first scored on). A fetch that keeps failing is logged and shown
in the stream's state; the step goes on with what is stored (and the stream turns stale once
its newest candle is two bars old).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import TYPE_CHECKING, Callable

from coincast.data.exchange import FetchError, FetchResult, fetch

if TYPE_CHECKING:
    from coincast.live.service import Service, StreamState

REREAD = 2  # stored candles fetched again at each tick, so a revision after close is picked up


def start(service: Service, st: StreamState) -> Callable[[], FetchResult]:
    """On the service's thread: the fetch of the stream's new candles, for a fetch thread to run."""
    s = st.stream
    exchange, symbol, timeframe = s.market
    newest = service.store.last_open_time(exchange, symbol, timeframe)
    since = s.since if newest is None else newest - REREAD * s.bar
    path, retries, backoff_s = service.store.path, service.fetch_retries, service.fetch_backoff_s
    return lambda: fetch(service.client(exchange), symbol, timeframe, since=since, store=path,
                         retries=retries, backoff_s=backoff_s, progress=False)


def record(service: Service, st: StreamState, fetched: Future) -> None:
    """On the service's thread, once the fetch is in: its outcome in the stream's state and log.
    A FetchError is logged and the step goes on with what is stored; any other error fails the step."""
    try:
        got = fetched.result()
    except FetchError as exc:
        st.last_error = f"fetch failed: {exc}"
        service.log(st, st.last_error, logging.WARNING)
        return
    st.last_error = None
    if got.inserted or got.replaced:
        service.log(st, f"fetched {got.inserted} new candle(s){f', {got.replaced} revised' if got.replaced else ''}; "
                        f"newest opens {got.last:%Y-%m-%d %H:%M}")
