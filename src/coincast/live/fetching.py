"""Phase 1 of a stream's step: fetch the new closed candles into the store.

ccxt, with the retries and backoff of `coincast fetch` (a 429's Retry-After honoured), one
client per exchange so markets load once and rate limits hold. The last REREAD stored candles
are fetched again, so a candle the exchange revised after close replaces its row (the registry
keeps the realised value a forecast was first scored on). A fetch that keeps failing is logged
and shown in the stream's state; the step goes on with what is stored (and the stream turns
stale once its newest candle is two bars old).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from coincast.data.exchange import FetchError, fetch

if TYPE_CHECKING:
    from coincast.live.service import Service, StreamState

REREAD = 2  # stored candles fetched again at each tick, so a revision after close is picked up


def fetch_new(service: Service, st: StreamState) -> None:
    s = st.stream
    exchange, symbol, timeframe = s.market
    if exchange not in service.clients:  # one client per exchange: markets load once, rate limits hold
        service.clients[exchange] = service.client_for(exchange)
    client = service.clients[exchange]
    newest = service.store.last_open_time(exchange, symbol, timeframe)
    since = s.since if newest is None else newest - REREAD * s.bar
    try:
        got = fetch(client, symbol, timeframe, since=since, store=service.store.path,
                    retries=service.fetch_retries, backoff_s=service.fetch_backoff_s, progress=False)
    except FetchError as exc:
        st.last_error = f"fetch failed: {exc}"
        service.log(st, st.last_error, logging.WARNING)
        return
    st.last_error = None
    if got.inserted or got.replaced:
        service.log(st, f"fetched {got.inserted} new candle(s){f', {got.replaced} revised' if got.replaced else ''}; "
                        f"newest opens {got.last:%Y-%m-%d %H:%M}")
