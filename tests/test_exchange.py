"""ccxt ingestion: the real ccxt binance client against the replay exchange (coincast.live.replay).

The replay serves the bundled daily BTC candles in Binance's own JSON format, shifted in
time so that the newest candle opens today (still open, so it must never be stored), and
injects the failures the fetch must survive: 429, 500, a timeout, a duplicated candle.
"""

import pandas as pd
import pytest

from coincast.data.exchange import FetchError, fetch, make_client
from coincast.data.store import Store
from coincast.live.replay import Replay, ReplayExchange
from tests.conftest import assert_user_error

DAY_MS = 86_400_000


@pytest.fixture
def server():
    """Start a local replay exchange; yields a function that builds a client for a Replay."""
    servers = []

    def start(replay: Replay, rate_limit_ms: int = 1):
        exchange = ReplayExchange(replay)
        servers.append(exchange)
        # 2 s: a real page can take a few hundred ms on a loaded 2-core machine; only the
        # injected timeout (2.5 s) must trip it.
        return exchange.client(timeout_ms=2000, rate_limit_ms=rate_limit_ms)

    yield start
    for exchange in servers:
        exchange.close()


def stored(store):
    with Store(store, read_only=True) as db:
        return db.candles("binance", "BTC/USDT", "1d")


def test_fetch_survives_429_500_timeout_and_duplicate(server, tmp_path):
    replay = Replay()
    replay.faults = {2: "429", 3: "500", 4: "timeout", 5: "duplicate"}
    client = server(replay)
    since = replay.candles.index[-1200]
    result = fetch(client, "BTC/USDT", "1d", since=since, store=tmp_path / "s.duckdb",
                   limit=500, backoff_s=0.01, progress=False)
    got = stored(tmp_path / "s.duckdb")
    expected = replay.candles.loc[since:].iloc[:-1]  # all but today's still-open candle
    pd.testing.assert_frame_equal(got, expected[list(got.columns)], check_freq=False)
    assert got.index[-1] == pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=1)
    # 3 pages of 500/500/200; the 2nd page was asked 4 times (429, 500, timeout, then ok).
    starts = [int(q["startTime"]) for q in replay.klines]
    assert starts[1] == starts[2] == starts[3] == starts[4] == starts[0] + 500 * DAY_MS
    assert len(replay.klines) == 6 and result.pages == 3
    assert (result.inserted, result.replaced, result.candles) == (1199, 0, 1199)
    assert "1199 new" in str(result)


def test_interrupted_fetch_keeps_pages_and_resumes_after_last_stored(server, tmp_path):
    replay = Replay()
    replay.faults = {3: "500", 4: "500"}
    client = server(replay)
    store = tmp_path / "s.duckdb"
    since = replay.candles.index[-1200]
    with pytest.raises(FetchError, match="kept failing after 1 retries.*run the same command again"):
        fetch(client, "BTC/USDT", "1d", since=since, store=store, limit=500, retries=1,
              backoff_s=0.01, progress=False)
    assert len(stored(store)) == 1000  # pages 1 and 2 were committed before page 3 failed
    replay.klines.clear()
    replay.faults = {}
    result = fetch(client, "BTC/USDT", "1d", store=store, limit=500, backoff_s=0.01, progress=False)
    assert int(replay.klines[0]["startTime"]) == int(stored(store).index[999].value // 10**6) + DAY_MS
    assert result.inserted == 199 and len(stored(store)) == 1199


def test_empty_page_ends_fetch_and_refetch_changes_nothing(server, tmp_path):
    replay = Replay(days_before_today=3)  # the market stopped 3 days ago: the next page is empty
    client = server(replay)
    store = tmp_path / "s.duckdb"
    since = replay.candles.index[-300]
    first = fetch(client, "BTC/USDT", "1d", since=since, store=store, limit=1000, progress=False)
    assert first.inserted == 300 and first.pages == 2
    assert replay.page(replay.klines[-1]) == []
    again = fetch(client, "BTC/USDT", "1d", since=since, store=store, limit=1000, progress=False)
    assert (again.inserted, again.replaced, again.candles) == (0, 0, 300)


def test_requests_are_paced_by_the_rate_limit(server, tmp_path):
    replay = Replay()
    client = server(replay, rate_limit_ms=400)
    costs = []
    real_throttle = client.throttle
    client.throttle = lambda cost=None: (costs.append(cost), real_throttle(cost))
    fetch(client, "BTC/USDT", "1d", since=replay.candles.index[-500], store=tmp_path / "s.duckdb",
          limit=100, progress=False)
    # ccxt waits rateLimit * cost between requests; Binance weighs a 100-candle klines call 0.4,
    # so 5 calls span >= 4 * 160 ms (unpaced they take a few tens of ms each).
    assert len(replay.times) == 5 and costs[-5:] == [0.4] * 5
    assert replay.times[-1] - replay.times[0] >= 0.5


def test_bad_exchange_symbol_and_timeframe_are_one_line_errors(server, tmp_path):
    with pytest.raises(FetchError, match="unknown exchange 'binanse'.*did you mean binance"):
        make_client("binanse")
    client = server(Replay())
    with pytest.raises(FetchError, match="binance has no market 'BTC/USDX'; did you mean BTC/USDT"):
        fetch(client, "BTC/USDX", "1d", store=tmp_path / "s.duckdb", progress=False)
    with pytest.raises(FetchError, match="does not offer timeframe '7m'; use one of 1s, 1m"):
        fetch(client, "BTC/USDT", "7m", store=tmp_path / "s.duckdb", progress=False)
    with pytest.raises(FetchError, match="not a date"):
        fetch(client, "BTC/USDT", "1d", since="last tuesday", store=tmp_path / "s.duckdb", progress=False)


def test_fetch_command_shows_pages_and_resumes(cli, server, tmp_path, monkeypatch):
    import coincast.data.exchange as exchange

    replay = Replay()
    client = server(replay)  # the real ccxt binance client, pointed at the local replay server
    monkeypatch.setattr(exchange, "make_client", lambda name: client)
    store = str(tmp_path / "s.duckdb")
    since = str(replay.candles.index[-30].date())
    done = cli("fetch", "--since", since, "--store", store, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 pages, 29 closed candles, 29 new" in done.stdout
    assert "store:binance/BTC/USDT/1d" in done.stdout
    got = stored(store)
    expected = replay.candles.iloc[-30:-1]  # all but today's still-open candle
    pd.testing.assert_frame_equal(got, expected[list(got.columns)], check_freq=False)
    again = cli("fetch", "--store", store, "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 pages, 0 closed candles" in again.stdout  # nothing closed since the last candle
    bad = cli("fetch", "--symbol", "BTC/USDX", "--store", store, "--quiet", cwd=tmp_path)
    assert_user_error(bad, "binance has no market 'BTC/USDX'; did you mean BTC/USDT")
