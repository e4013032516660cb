"""The local candle store: one DuckDB file of OHLCV candles and daily exogenous series.

Candles are keyed by (exchange, symbol, timeframe, open time, UTC). Every write runs in
one transaction, so a crash or a kill leaves the store exactly as it was before; loading
the same candles twice changes nothing, and a newer version of a candle replaces the old.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from coincast.data.files import read_file
from coincast.data.frame import validate_frame
from coincast.errors import DataError

OHLCV = ("open", "high", "low", "close", "volume")
ENV_VAR = "COINCAST_STORE"
# Rows per INSERT inside the one import transaction: bounds memory, never partial commits.
CHUNK_ROWS = 20_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS candles (
    exchange VARCHAR NOT NULL, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL,
    open_time TIMESTAMP NOT NULL,
    open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE,
    PRIMARY KEY (exchange, symbol, timeframe, open_time)
);
CREATE TABLE IF NOT EXISTS series (
    name VARCHAR NOT NULL, date DATE NOT NULL, column_name VARCHAR NOT NULL, value DOUBLE,
    PRIMARY KEY (name, date, column_name)
);
"""


class StoreError(DataError):
    """The store file cannot be opened or written."""


class StoreLockedError(StoreError):
    """Another process holds the store open for writing."""


class OHLCError(DataError):
    """Candles that break OHLC rules (high below low, negative volume...)."""


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert did: new candles, candles replaced by a newer version, unchanged ones."""

    inserted: int
    replaced: int
    unchanged: int

    def __str__(self) -> str:
        return f"{self.inserted} new, {self.replaced} replaced (conflicting values, newer wins), {self.unchanged} unchanged"


def default_path() -> Path:
    """`$COINCAST_STORE`, else the user's data folder (XDG on Linux, LOCALAPPDATA on Windows)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "coincast" / "store.duckdb"


def timeframe_seconds(timeframe: str) -> int:
    """Length of one candle: '1m', '15m', '1h', '4h', '1d', '1w' (ccxt spelling)."""
    m = re.fullmatch(r"(\d+)([smhdwM])", timeframe)
    if not m or int(m.group(1)) == 0:
        raise DataError(f"timeframe '{timeframe}' is not valid: use a number and a unit, e.g. 1m, 15m, 1h, 4h, 1d, 1w")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2_592_000}[m.group(2)]
    return int(m.group(1)) * unit


class Store:
    """An open store; use as a context manager. `read_only` lets several readers share it."""

    def __init__(self, path: str | Path | None = None, read_only: bool = False):
        self.path = Path(path).expanduser() if path else default_path()
        if read_only and not self.path.exists():
            raise StoreError(
                f"no store at {self.path}: fill it first with `coincast store import` or "
                f"`coincast fetch`, or point --store/${ENV_VAR} at an existing one"
            )
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = _connect(self.path, read_only)
        if not read_only:
            self.con.execute(SCHEMA)
        tables = {t for (t,) in self.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if not {"candles", "series"} <= tables:
            self.con.close()
            raise StoreError(
                f"{self.path} is a DuckDB database but not a coincast store (no candles table); "
                "give a store made by `coincast store import`/`fetch`, or a new path"
            )

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    # -- candles -------------------------------------------------------------------------

    def upsert_candles(self, frame: pd.DataFrame, exchange: str, symbol: str, timeframe: str,
                       source: str = "candles") -> UpsertResult:
        """Insert new candles and replace changed ones, all in one transaction."""
        rows = candle_rows(frame, source)
        check_spacing(rows["open_time"], timeframe, source)
        key = {"exchange": exchange.lower(), "symbol": symbol.upper(), "timeframe": timeframe}
        self.con.execute("BEGIN TRANSACTION")
        try:
            counts = np.zeros(3, dtype=int)
            for start in range(0, len(rows), CHUNK_ROWS):
                counts += self._upsert_chunk(rows.iloc[start:start + CHUNK_ROWS], key)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return UpsertResult(*(int(c) for c in counts))

    def _upsert_chunk(self, chunk: pd.DataFrame, key: dict) -> np.ndarray:
        incoming = chunk.assign(**key)[["exchange", "symbol", "timeframe", "open_time", *OHLCV]]
        self.con.register("incoming", incoming)
        try:
            join = """FROM incoming i LEFT JOIN candles c USING (exchange, symbol, timeframe, open_time)"""
            differs = " OR ".join(f"c.{col} IS DISTINCT FROM i.{col}" for col in OHLCV)
            new, replaced = self.con.execute(
                f"SELECT count(*) FILTER (c.open_time IS NULL),"
                f" count(*) FILTER (c.open_time IS NOT NULL AND ({differs})) {join}"
            ).fetchone()
            self.con.execute(
                f"INSERT INTO candles SELECT i.* {join} WHERE c.open_time IS NULL OR {differs} "
                "ON CONFLICT DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in OHLCV)
            )
        finally:
            self.con.unregister("incoming")
        return np.array([new, replaced, len(chunk) - new - replaced])

    def candles(self, exchange: str, symbol: str, timeframe: str) -> pd.DataFrame:
        """The stored candles as a validated frame (UTC index `date`, OHLCV columns)."""
        raw = self.con.execute(
            "SELECT open_time AS date, open, high, low, close, volume FROM candles "
            "WHERE exchange = ? AND symbol = ? AND timeframe = ? ORDER BY open_time",
            [exchange.lower(), symbol.upper(), timeframe],
        ).df()
        if raw.empty:
            held = ", ".join(f"{e}/{s}/{t}" for e, s, t, *_ in self.ls().itertuples(index=False)) or "nothing yet"
            raise DataError(
                f"store {self.path} has no candles for {exchange}/{symbol}/{timeframe} (it holds: {held}); "
                "import or fetch them first"
            )
        raw["date"] = pd.to_datetime(raw["date"]).dt.tz_localize("UTC")
        return validate_frame(raw.set_index("date"), f"store:{exchange}/{symbol}/{timeframe}")

    def last_open_time(self, exchange: str, symbol: str, timeframe: str) -> pd.Timestamp | None:
        """Open time of the newest stored candle, or None: where a fetch resumes."""
        (last,) = self.con.execute(
            "SELECT max(open_time) FROM candles WHERE exchange = ? AND symbol = ? AND timeframe = ?",
            [exchange.lower(), symbol.upper(), timeframe],
        ).fetchone()
        return None if last is None else pd.Timestamp(last).tz_localize("UTC")

    def ls(self) -> pd.DataFrame:
        """One row per (exchange, symbol, timeframe): rows, first/last open time, gaps, missing candles."""
        held = self.con.execute(
            "SELECT exchange, symbol, timeframe, count(*) AS rows, min(open_time) AS first,"
            " max(open_time) AS last FROM candles GROUP BY ALL ORDER BY ALL"
        ).df()
        gaps = [self.gaps(e, s, t) for e, s, t in held[["exchange", "symbol", "timeframe"]].itertuples(index=False)]
        held["gaps"] = [len(g) for g in gaps]
        held["missing"] = [int(g["missing"].sum()) for g in gaps]
        return held

    def gaps(self, exchange: str, symbol: str, timeframe: str) -> pd.DataFrame:
        """Each run of missing candles: the last candle before it, the next after, how many are missing."""
        step = timeframe_seconds(timeframe)
        gaps = self.con.execute(
            """
            SELECT * FROM (
                SELECT lag(open_time) OVER (ORDER BY open_time) AS after, open_time AS before,
                       epoch(open_time - lag(open_time) OVER (ORDER BY open_time)) AS seconds
                FROM candles WHERE exchange = ? AND symbol = ? AND timeframe = ?)
            WHERE seconds > ? ORDER BY after
            """,
            [exchange.lower(), symbol.upper(), timeframe, step],
        ).df()
        if timeframe.endswith("M"):  # months differ in length: no fixed step to measure gaps by
            gaps = gaps.iloc[0:0]
        gaps["missing"] = (gaps.pop("seconds") // step - 1).astype(int)
        return gaps

    # -- exogenous daily series -----------------------------------------------------------

    def put_series(self, name: str, frame: pd.DataFrame) -> int:
        """Store a daily series (date index, numeric columns) under `name`; returns rows written."""
        if not isinstance(frame.index, pd.DatetimeIndex):
            raise DataError(f"series '{name}' needs a date column; add one named 'date'")
        wide = frame.set_axis([str(c) for c in frame.columns], axis=1)
        long = wide.stack().rename_axis(["date", "column_name"]).reset_index(name="__value__")
        long["date"] = long["date"].dt.tz_convert("UTC").dt.date
        long.insert(0, "name", name)
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.register("incoming", long)
            self.con.execute("INSERT OR REPLACE INTO series SELECT name, date, column_name, __value__ FROM incoming")
            self.con.unregister("incoming")
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return len(frame)

    def series(self, name: str) -> pd.DataFrame:
        """A stored daily series back as a frame (UTC midnight index)."""
        long = self.con.execute("SELECT date, column_name, value FROM series WHERE name = ?", [name]).df()
        if long.empty:
            raise DataError(f"store {self.path} has no series '{name}'; add it with put_series first")
        wide = long.pivot(index="date", columns="column_name", values="value")
        wide.index = pd.DatetimeIndex(pd.to_datetime(wide.index), name="date").tz_localize("UTC")
        wide.columns.name = None
        return wide.sort_index()


def candle_rows(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Pick OHLCV columns (any case) from a dated frame and check the OHLC rules."""
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataError(f"{source} has no date column: candles need open times in a column named 'timestamp' or 'date'")
    lower = {str(c).lower(): c for c in frame.columns}
    missing = [c for c in OHLCV if c not in lower]
    if missing:
        raise DataError(f"{source} lacks column(s) {', '.join(missing)}: candles need open, high, low, close, volume")
    rows = frame[[lower[c] for c in OHLCV]].set_axis(list(OHLCV), axis=1)
    check_ohlc(rows, source)
    rows = rows.reset_index(names="open_time")
    rows["open_time"] = rows["open_time"].dt.tz_convert("UTC").dt.tz_localize(None)
    return rows


def check_ohlc(rows: pd.DataFrame, source: str) -> None:
    """Raise OHLCError on the first candle whose high/low/volume cannot be real."""
    o, h, l, c, v = (rows[col] for col in OHLCV)
    rules = [
        (h < l, "high {high} < low {low}"),
        (h < np.maximum(o, c), "high {high} below open {open} or close {close}"),
        (l > np.minimum(o, c), "low {low} above open {open} or close {close}"),
        (v < 0, "negative volume {volume}"),
        ((rows[["open", "high", "low", "close"]] <= 0).any(axis=1), "a price <= 0"),
    ]
    for broken, text in rules:
        if broken.any():
            first = rows[broken].iloc[0]
            raise OHLCError(
                f"{source}: {int(broken.sum())} candle(s) break OHLC rules, first at {first.name}: "
                f"{text.format(**first)}; fix or drop those rows (nothing was stored)"
            )


def check_spacing(open_times: pd.Series, timeframe: str, source: str) -> None:
    """Refuse candles closer together than the timeframe: the file is of another timeframe."""
    step = pd.Timedelta(seconds=timeframe_seconds(timeframe))
    if timeframe.endswith("M") or len(open_times) < 2:
        return
    closest = open_times.diff().min()
    if closest < step:
        raise DataError(
            f"{source}: candles only {_span(closest)} apart, shorter than timeframe {timeframe}; "
            "give the file's real timeframe (--timeframe)"
        )


def _span(delta: pd.Timedelta) -> str:
    """A time span the way timeframes are written: 1h, 15m, 2d, 30s."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            pid = re.search(r"PID (\d+)", text)
            who = f"process {pid.group(1)}" if pid else "another process"
            raise StoreLockedError(
                f"store {path} is in use by {who}; wait for it to finish or close it, "
                f"or use another file with --store/${ENV_VAR}"
            ) from None
        if "not a valid duckdb" in text.lower():
            raise StoreError(
                f"{path} is not a DuckDB database; give a store file made by coincast, "
                "or a path that does not exist yet to start a new store"
            ) from None
        raise StoreError(f"cannot open store {path} ({text.splitlines()[0]}); check the path and permissions") from None
    except duckdb.Error as exc:
        raise StoreError(f"cannot open store {path} ({str(exc).splitlines()[0]}); check the path") from None


def import_file(path: str | Path, symbol: str, timeframe: str, exchange: str = "binance",
                store: str | Path | None = None, timestamps: str = "open") -> UpsertResult:
    """Read any CSV/Parquet of candles and upsert it into the store in one transaction.

    `timestamps="close"`: the file's timestamps are close times (the store keeps open times).
    """
    frame = read_file(path, timestamps)
    with Store(store) as db:
        return db.upsert_candles(frame, exchange, symbol, timeframe, source=str(path))


def parse_ref(ref: str) -> tuple[str, str, str]:
    """'store:binance/BTC/USDT/1d' -> ('binance', 'BTC/USDT', '1d')."""
    body = ref.removeprefix("store:")
    parts = body.split("/")
    if len(parts) < 3 or not all(parts):
        raise DataError(f"store reference '{ref}' is not valid: write store:EXCHANGE/BASE/QUOTE/TIMEFRAME, e.g. store:binance/BTC/USDT/1d")
    return parts[0], "/".join(parts[1:-1]), parts[-1]


def load_ref(ref: str, store: str | Path | None = None) -> pd.DataFrame:
    """The frame behind a `store:EXCHANGE/SYMBOL/TIMEFRAME` reference."""
    exchange, symbol, timeframe = parse_ref(ref)
    with Store(store, read_only=True) as db:
        return db.candles(exchange, symbol, timeframe)
