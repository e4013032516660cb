"""The replay exchange: a local Binance-compatible HTTP server over the bundled candles (every
bundled coin as <COIN>USDT, daily and hourly).

It serves `/api/v3/exchangeInfo` and `/api/v3/klines` on 127.0.0.1 in Binance's own JSON
format, so the real ccxt binance client fetches from it exactly as from Binance. A clock
decides what exists: a candle is served once it has opened (the still-open one as a partial
candle, as Binance does), and ccxt's clients made here read the same clock, so a simulated
clock (`SimClock`, e.g. one day per second) replays history as if it were live.

Faults are injected by klines request number (1-based), for the tests and for demos of
resilience: "429" (with Retry-After), "500", "timeout" (answers after 2.5 s), "empty" (an
empty page), "duplicate" (the first candle twice), "shuffled" (candles out of order) and
"revised" (the first candle's close 1% higher, as if revised after close); `fault_every`
injects FAULT_CYCLE's faults in turn into every n-th request (a long soak). `outage` freezes
the candle feed for a span of clock time; `down` answers every request 500; `stalled` holds one
market's klines answers back until its event is set (a slow market, released by a test).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import ccxt
import pandas as pd

from coincast.data import load
from coincast.data.exchange import make_client
from coincast.data.store import timeframe_seconds
from coincast.live.clock import SimClock, WallClock

COINS = ("btc", "eth", "ltc", "xrp", "ada", "bnb")  # every bundled coin, daily and hourly
# (Binance symbol id, interval) -> bundled dataset
MARKETS = {(f"{coin.upper()}USDT", interval): f"{coin}-usd{suffix}"
           for coin in COINS for interval, suffix in (("1d", ""), ("1h", "-1h"))}
FAULT_CYCLE = ("500", "empty", "duplicate", "shuffled")  # what `fault_every` injects, in turn
TIMEOUT_FAULT_S = 2.5


def market(symbol_id: str) -> dict:
    """One spot market in Binance's exchangeInfo format."""
    base, quote = symbol_id[:-4], symbol_id[-4:]
    return {
        "symbol": symbol_id, "status": "TRADING", "baseAsset": base, "quoteAsset": quote,
        "baseAssetPrecision": 8, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "MARKET"], "isSpotTradingAllowed": True, "isMarginTradingAllowed": True,
        "permissions": ["SPOT"],
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.0", "stepSize": "0.00001"},
        ],
    }


class Replay:
    """What the replay exchange serves and what it saw: candles per market, faults, a request log.

    `clock`: what "now" is (default the wall clock). `days_before_today`: shift every market's
    candles so that the daily BTC candles end that many days before today (fetch tests against
    the wall clock); None serves the candles at their real dates (live demos on a SimClock).
    """

    def __init__(self, clock: WallClock | SimClock | None = None, days_before_today: int | None = 0):
        self.clock = clock or WallClock()
        self.shift = pd.Timedelta(0)
        if days_before_today is not None:
            today = pd.Timestamp.now(tz="UTC").normalize()
            self.shift = today - pd.Timedelta(days=days_before_today) - load("btc-usd").index[-1]
        self._frames: dict[tuple[str, str], pd.DataFrame] = {}
        self._lock = threading.Lock()
        self.counting = threading.Lock()  # held while a klines request is numbered
        self.faults: dict[int, str] = {}
        self.down = False  # True: every request is answered 500 (an exchange that is down)
        self.retry_after = "1"  # the Retry-After header of an injected 429, in seconds
        self.fault_every = 0  # > 0: every n-th klines request also gets the next fault of FAULT_CYCLE
        # (start, end) of clock time during which the exchange publishes nothing new: it answers
        # as it did at `start` (an outage of its candle feed; the service must see stale data)
        self.outage: tuple[pd.Timestamp, pd.Timestamp] | None = None
        # (symbol id, interval) -> an event: that market's klines requests are answered once it is set
        self.stalled: dict[tuple[str, str], threading.Event] = {}
        self.klines: list[dict] = []  # query of every klines request, in order
        self.times: list[float] = []  # monotonic time of every klines request

    def frame(self, symbol_id: str, interval: str) -> pd.DataFrame:
        """The market's candles at their served dates (loaded once, on first use)."""
        with self._lock:
            if (symbol_id, interval) not in self._frames:
                candles = load(MARKETS[(symbol_id, interval)])
                self._frames[(symbol_id, interval)] = candles.set_index(candles.index + self.shift)
            return self._frames[(symbol_id, interval)]

    def fault(self, n: int) -> str | None:
        """The fault injected into the n-th klines request, if any."""
        if n in self.faults:
            return self.faults[n]
        if self.fault_every and n % self.fault_every == 0:
            return FAULT_CYCLE[(n // self.fault_every - 1) % len(FAULT_CYCLE)]
        return None

    @property
    def candles(self) -> pd.DataFrame:
        """The daily BTC/USDT candles as served."""
        return self.frame("BTCUSDT", "1d")

    def page(self, query: dict) -> list[list]:
        """The klines answer: up to `limit` candles from `startTime` that have opened by now."""
        symbol_id, interval = query.get("symbol", "BTCUSDT"), query.get("interval", "1d")
        frame = self.frame(symbol_id, interval)
        bar_ms = timeframe_seconds(interval) * 1000
        now_ms = self.clock.ms()
        ms = frame.index.as_unit("ms").asi8
        published = ms <= now_ms  # every candle that has opened (the newest one still open)
        if self.outage is not None:
            stop, end = (int(t.value // 1_000_000) for t in self.outage)
            if stop <= now_ms < end:
                published = ms + bar_ms <= stop  # only what had closed when the feed stopped
        start = int(query.get("startTime", 0))
        limit = min(int(query.get("limit", 500)), 1000)
        rows = frame[(ms >= start) & published].iloc[:limit]
        out = []
        for t, r in zip(rows.index.as_unit("ms").asi8, rows.itertuples()):
            o, h, l, c, v = r.open, r.high, r.low, r.close, r.volume
            if t + bar_ms > now_ms:  # still open: what has traded so far (here: flat at the open)
                h = l = c = o
                v = v * (now_ms - t) / bar_ms
            out.append([int(t), f"{o:.8f}", f"{h:.8f}", f"{l:.8f}", f"{c:.8f}", f"{v:.8f}",
                        int(t) + bar_ms - 1, "0", 100, "0", "0", "0"])
        return out


def make_handler(replay: Replay):
    """The request handler class serving `replay`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send(self, status: int, body, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (the timeout case)

        def do_GET(self):
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if replay.down:
                return self.send(500, {"code": -1001, "msg": "Internal error; unable to process your request."})
            if url.path.endswith("/exchangeInfo"):
                spot = url.path.startswith("/api/v3")
                symbols = sorted({s for s, _ in MARKETS}) if spot else []
                return self.send(200, {"timezone": "UTC", "serverTime": replay.clock.ms(),
                                       "rateLimits": [], "symbols": [market(s) for s in symbols]})
            if url.path != "/api/v3/klines":
                return self.send(404, {"code": -1, "msg": f"no route {url.path}"})
            if (query.get("symbol", "BTCUSDT"), query.get("interval", "1d")) not in MARKETS:
                return self.send(400, {"code": -1121, "msg": "Invalid symbol or interval."})
            with replay.counting:  # requests from several threads: each its own number
                replay.klines.append(query)
                replay.times.append(time.monotonic())
                n = len(replay.klines)
            stalled = replay.stalled.get((query.get("symbol", "BTCUSDT"), query.get("interval", "1d")))
            if stalled is not None:
                stalled.wait()
            return self.klines(query, replay.fault(n))

        def klines(self, query: dict, fault: str | None):
            if fault == "429":
                return self.send(429, {"code": -1003, "msg": "Too many requests; current limit is 6000 weight."},
                                 {"Retry-After": replay.retry_after})
            if fault == "500":
                return self.send(500, {"code": -1001, "msg": "Internal error; unable to process your request."})
            if fault == "timeout":
                time.sleep(TIMEOUT_FAULT_S)
            page = [] if fault == "empty" else replay.page(query)
            if fault == "duplicate" and page:
                page.insert(1, list(page[0]))
            if fault == "shuffled":
                page = page[::-1]
            if fault == "revised" and page:
                page[0][4] = f"{float(page[0][4]) * 1.01:.8f}"
                page[0][2] = f"{max(float(page[0][2]), float(page[0][4])):.8f}"
            return self.send(200, page)

    return Handler


def replay_client(url: str, clock: WallClock | SimClock, timeout_ms: int = 2000, rate_limit_ms: int = 1) -> ccxt.Exchange:
    """The real ccxt binance client, pointed at a replay exchange at `url` and reading `clock`
    (the replay's own, or one that reads the same time in another process)."""
    client = make_client("binance", timeout=timeout_ms, rateLimit=rate_limit_ms)
    client.urls["api"] = {k: url + urlparse(v).path for k, v in client.urls["api"].items()}
    client.milliseconds = clock.ms  # the exchange's time is the replay's
    return client


class ReplayExchange:
    """The replay exchange running on 127.0.0.1 (threads of this process); a context manager."""

    def __init__(self, replay: Replay, port: int = 0):
        self.replay = replay
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), make_handler(replay))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def client(self, timeout_ms: int = 2000, rate_limit_ms: int = 1) -> ccxt.Exchange:
        """The real ccxt binance client, pointed at this server and reading the replay's clock."""
        return replay_client(self.url, self.replay.clock, timeout_ms, rate_limit_ms)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ReplayExchange:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
