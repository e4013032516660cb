"""The DuckDB candle store on the bundled Binance candles: upserts, ls/gaps, errors, crash safety."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from coincast.data import load
from coincast.data.store import (
    OHLCError,
    Store,
    StoreError,
    StoreLockedError,
    default_path,
    import_file,
    parse_ref,
)
from coincast.errors import DataError
from tests.conftest import assert_user_error

BTC = "BTC/USDT"


@pytest.fixture
def btc_csv(tmp_path):
    """The bundled daily BTC candles, first 400 days, as a plain CSV."""
    path = tmp_path / "btc.csv"
    load("btc-usd").iloc[:400].to_csv(path)
    return path


def test_import_twice_changes_nothing(tmp_path, btc_csv):
    store = tmp_path / "s.duckdb"
    first = import_file(btc_csv, BTC, "1d", store=store)
    second = import_file(btc_csv, BTC, "1d", store=store)
    assert (first.inserted, first.replaced, first.unchanged) == (400, 0, 0)
    assert (second.inserted, second.replaced, second.unchanged) == (0, 0, 400)
    with Store(store, read_only=True) as db:
        back = db.candles("binance", BTC, "1d")
    pd.testing.assert_frame_equal(back, load("btc-usd").iloc[:400][list(back.columns)])


def test_newer_candles_replace_older_and_are_counted(tmp_path, btc_csv):
    store = tmp_path / "s.duckdb"
    import_file(btc_csv, BTC, "1d", store=store)
    newer = load("btc-usd").iloc[390:420].copy()  # 10 overlap, 20 new
    newer.iloc[:3, newer.columns.get_loc("volume")] += 1.0  # 3 conflicting versions
    path = tmp_path / "newer.parquet"
    newer.to_parquet(path)
    result = import_file(path, BTC, "1d", store=store)
    assert (result.inserted, result.replaced, result.unchanged) == (20, 3, 7)
    assert "3 replaced" in str(result)
    with Store(store, read_only=True) as db:
        back = db.candles("binance", BTC, "1d")
    assert len(back) == 420
    assert back["volume"].iloc[390] == newer["volume"].iloc[0]


def test_ls_and_gaps_find_the_real_binance_outage(tmp_path):
    hourly = load("btc-usd-1h").loc[:"2017-10-31"]
    with Store(tmp_path / "s.duckdb") as db:
        db.upsert_candles(hourly, "Binance", "btc/usdt", "1h")
        listing = db.ls()
        gaps = db.gaps("binance", BTC, "1h")
    row = listing.iloc[0]
    assert (row["exchange"], row["symbol"], row["timeframe"], row["rows"]) == ("binance", BTC, "1h", len(hourly))
    # 2017-09-06: the README's 7-hour outage (15:00 is the last candle before it, 23:00 the next).
    outage = gaps[gaps["after"] == pd.Timestamp("2017-09-06 15:00")]
    assert outage["missing"].tolist() == [7]
    assert row["gaps"] == len(gaps) and row["missing"] == gaps["missing"].sum()
    expected = (hourly.index.to_series().diff() / pd.Timedelta("1h") - 1).clip(lower=0).sum()
    assert row["missing"] == expected


def test_store_reference_loads_through_load(tmp_path, btc_csv, monkeypatch):
    monkeypatch.setenv("COINCAST_STORE", str(tmp_path / "env.duckdb"))
    assert default_path() == tmp_path / "env.duckdb"
    import_file(btc_csv, BTC, "1d")
    frame = load("store:binance/BTC/USDT/1d")
    assert len(frame) == 400 and str(frame.index.tz) == "UTC"
    pd.testing.assert_frame_equal(frame, load("btc-usd").iloc[:400][list(frame.columns)], check_freq=False)
    assert parse_ref("store:kraken/ETH/USD:USD/4h") == ("kraken", "ETH/USD:USD", "4h")
    with pytest.raises(DataError, match="store:EXCHANGE/BASE/QUOTE/TIMEFRAME"):
        load("store:binance")
    with pytest.raises(DataError, match="no candles for binance/ETH/USDT/1d.*binance/BTC/USDT/1d"):
        load("store:binance/ETH/USDT/1d")


def test_missing_store_says_how_to_fill_it(tmp_path):
    with pytest.raises(StoreError, match="coincast store import"):
        Store(tmp_path / "nope.duckdb", read_only=True)


def test_ohlc_violations_are_refused_and_store_untouched(tmp_path, btc_csv):
    store = tmp_path / "s.duckdb"
    import_file(btc_csv, BTC, "1d", store=store)
    bad = load("btc-usd").iloc[:450].copy()
    bad.iloc[420, bad.columns.get_loc("high")] = bad["low"].iloc[420] - 1
    bad.to_csv(tmp_path / "bad.csv")
    with pytest.raises(OHLCError, match=r"1 candle\(s\) break OHLC rules.*high .* < low"):
        import_file(tmp_path / "bad.csv", BTC, "1d", store=store)
    bad = load("btc-usd").iloc[:450].copy()
    bad.iloc[5, bad.columns.get_loc("volume")] = -3.0
    bad.to_csv(tmp_path / "bad.csv")
    with pytest.raises(OHLCError, match="negative volume -3.0"):
        import_file(tmp_path / "bad.csv", BTC, "1d", store=store)
    with Store(store, read_only=True) as db:
        assert len(db.candles("binance", BTC, "1d")) == 400


def test_wrong_timeframe_is_refused(tmp_path):
    load("btc-usd-1h").iloc[:100].to_csv(tmp_path / "h.csv")
    with pytest.raises(DataError, match="candles only 1h apart, shorter than timeframe 1d"):
        import_file(tmp_path / "h.csv", BTC, "1d", store=tmp_path / "s.duckdb")
    with pytest.raises(DataError, match="timeframe '1x' is not valid"):
        import_file(tmp_path / "h.csv", BTC, "1x", store=tmp_path / "s.duckdb")


def test_file_without_ohlcv_columns_is_refused(tmp_path):
    load("fear-greed").to_csv(tmp_path / "fg.csv")
    with pytest.raises(DataError, match="lacks column.*open, high, low, close"):
        import_file(tmp_path / "fg.csv", BTC, "1d", store=tmp_path / "s.duckdb")


def test_not_a_duckdb_file(tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError, match="is not a DuckDB database"):
        Store(path)
    assert path.read_text().startswith("these are my notes")
    import duckdb

    duckdb.connect(str(tmp_path / "other.duckdb")).close()
    with pytest.raises(StoreError, match="a DuckDB database but not a coincast store"):
        Store(tmp_path / "other.duckdb", read_only=True)


def _spawn(script: str, marker) -> subprocess.Popen:
    """Run `script` in a fresh Python; wait until it creates `marker`."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)])
    deadline = time.time() + 60
    while not marker.exists():
        assert proc.poll() is None, "helper process died early"
        assert time.time() < deadline, "helper process never got ready"
        time.sleep(0.05)
    return proc


def test_locked_store_gives_one_line_error(tmp_path):
    store, marker = tmp_path / "s.duckdb", tmp_path / "ready"
    proc = _spawn(
        f"""
        import time, pathlib, duckdb
        con = duckdb.connect({str(store)!r})  # any process holding the file open for writing
        pathlib.Path({str(marker)!r}).touch()
        time.sleep(60)
        """,
        marker,
    )
    try:
        with pytest.raises(StoreLockedError) as err:
            Store(store)
        assert f"in use by process {proc.pid}" in str(err.value) and "\n" not in str(err.value)
    finally:
        proc.kill()
        proc.wait()


def test_killed_import_leaves_store_exactly_as_it_was(tmp_path, btc_csv):
    store, marker = tmp_path / "s.duckdb", tmp_path / "midway"
    import_file(btc_csv, BTC, "1d", store=store)
    with Store(store, read_only=True) as db:
        before = db.candles("binance", BTC, "1d")
    changed = load("btc-usd").copy()
    changed["close"] = changed["close"].clip(lower=changed["low"])  # same rows, but touch every chunk
    changed["volume"] += 1.0
    changed.to_csv(tmp_path / "all.csv")
    proc = _spawn(
        f"""
        import time, pathlib
        from coincast.data import store as s
        s.CHUNK_ROWS = 500
        real = s.Store._upsert_chunk
        def slow(self, chunk, key):
            out = real(self, chunk, key)  # this chunk is written, inside the open transaction
            pathlib.Path({str(marker)!r}).touch()
            time.sleep(60)
            return out
        s.Store._upsert_chunk = slow
        s.import_file({str(tmp_path / "all.csv")!r}, "BTC/USDT", "1d", store={str(store)!r})
        """,
        marker,
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Store(store, read_only=True) as db:
        after = db.candles("binance", BTC, "1d")
        assert db.ls()["rows"].tolist() == [400]
    pd.testing.assert_frame_equal(after, before)


def test_store_commands(cli, tmp_path, btc_csv):
    store = str(tmp_path / "s.duckdb")
    hourly = tmp_path / "h.csv"
    load("btc-usd-1h").loc[:"2017-09-30"].to_csv(hourly)
    args = ["store", "import", "--symbol", "BTC/USDT", "--store", store]
    done = cli(*args[:2], str(btc_csv), *args[2:], "--timeframe", "1d", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "400 new, 0 replaced" in done.stdout
    assert cli(*args[:2], str(hourly), *args[2:], "--timeframe", "1h", cwd=tmp_path).returncode == 0
    listing = cli("store", "ls", "--store", store, cwd=tmp_path)
    assert listing.returncode == 0 and "BTC/USDT" in listing.stdout and "store:binance/BTC/USDT/1d" in listing.stdout
    gaps = cli("store", "gaps", "--timeframe", "1h", "--store", store, cwd=tmp_path)
    assert gaps.returncode == 0, gaps.stderr
    assert "binance/BTC/USDT/1h: " in gaps.stdout and "2017-09-06 15:00:00" in gaps.stdout and "missing 7" in gaps.stdout
    assert "BTC/USDT/1d" not in gaps.stdout
    bad = cli("store", "import", str(tmp_path / "nope.csv"), "--symbol", "X/Y", "--timeframe", "1d", "--store", store,
              cwd=tmp_path)
    assert_user_error(bad, "file not found")
    assert_user_error(cli("store", "ls", "--store", str(tmp_path / "none.duckdb"), cwd=tmp_path), "coincast store import")


def test_console_script_lists_the_store(tmp_path, btc_csv):
    """The installed `coincast` script (pyproject: coincast.cli:main) in a fresh process."""
    script = Path(sys.executable).with_name("coincast")
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable}: the package is not installed in this environment")
    store = tmp_path / "s.duckdb"
    import_file(btc_csv, BTC, "1d", store=store)
    env = {**os.environ, "COLUMNS": "200"}
    p = subprocess.run([str(script), "store", "ls", "--store", str(store)], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "store:binance/BTC/USDT/1d" in p.stdout and " 400 " in p.stdout
    p = subprocess.run([str(script), "store", "ls", "--store", str(tmp_path / "none.duckdb")], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr


def test_exogenous_series_round_trip_and_upsert(tmp_path):
    fng = load("fear-greed")
    with Store(tmp_path / "s.duckdb") as db:
        assert db.put_series("fear-greed", fng) == len(fng)
        db.put_series("fear-greed", fng.iloc[-10:] + 1)  # a newer version of the last 10 days
        back = db.series("fear-greed")
        with pytest.raises(DataError, match="no series 'sentiment'"):
            db.series("sentiment")
    assert len(back) == len(fng) and list(back.columns) == ["value"]
    pd.testing.assert_series_equal(back["value"].iloc[:-10], fng["value"].iloc[:-10], check_freq=False)
    assert (back["value"].iloc[-10:] == fng["value"].iloc[-10:] + 1).all()
