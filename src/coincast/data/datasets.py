"""Real datasets bundled inside the package, and `load`, the one way in for any data spec.

Data notes. Sources, licences and checks of every file: ../shared/data/README.md. A bundled
candle dataset follows the rule `coincast fetch` follows: it keeps a candle only if the candle
had closed when its source was taken (open time + bar length <= snapshot time), so it ends on
the last complete candle; tests/test_bundled_data.py holds each file to that. The snapshot
times below are the earliest times the evidence allows, in UTC:

* Binance daily, the six coins (yanniedog/binance-historical-OHLCV-data, one commit for all
  six): taken on 2026-01-06 after 12:00, about 12:15-12:20. The files ended on that day's
  still-open candle (its volume was 0.35x the 30-day median for BTC and ETH, 0.43-0.61x for
  LTC, BNB and ADA; XRP, rallying, 1.5x), which was dropped here, so they end on 2026-01-05.
  Evidence for the time: BNB's row for 2026-01-06 holds 51,581 BNB, the same repository's
  hourly BNBUSDT candles for 00:00-12:00 of that day 50,776, so the daily file was taken 805
  BNB (at 2,800-4,200 BNB an hour that day, 10-20 minutes) into the 12:00 hour; BTC's row
  holds 5,042.6 BTC, 117 BTC (about 20 minutes at 340 BTC an hour) more than the repository's
  4-hour candles for 00:00-12:00 (4,925.6), whose 12:00 candle, taken later, had 292 BTC.
* Binance hourly, the six coins (`<coin>-usd-1h`; ../shared/data/hourly/README.md: LTC, XRP, ADA and
  BNB from yanniedog/binance-historical-OHLCV-data, BTC and ETH from two files each, the newest
  hours from finom/static-klines): each file was cut after the candle that opens 2026-01-05 23:00
  (no market data after 2026-01-05 here). That candle had closed when its source was taken:
  yanniedog's files ran on into 2026-01-06, and finom/static-klines stores only candles closed
  when it fetched them. The snapshot recorded is the cut, 2026-01-06 00:00: the earliest time
  at which every kept candle had closed and the next had not. Hours Binance did not trade
  (outages) have no row; each hour of a complete day aggregates to that day's daily candle
  (tests/test_bundled_data.py).
* `fear-greed` is no candle: one value a day, stamped 00:00 UTC of the day D it is dated and
  not revised afterwards, so a value dated the snapshot day is complete and is kept (last
  2026-02-24; the source, vipwzw/market-top-detector, added the file that day). Evidence: an
  independent copy (zcahkwn/crypto-indices) that ends on 2025-06-26 with 74 matches this
  series, taken eight months later, on that last day as on all 2,699 common days.
* `tutorial` ends on 2017-12-23 (inferred dates), four days before its source commit
  (2017-12-27), and that row is a full day: 139 blocks (its Block Height step; 132-188 in the
  30 days before), 307,343 transactions (a Saturday; the 30 days before: 307,443 and up) and
  1.12x the 30-day median miner revenue. It is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from coincast.data.files import read_file
from coincast.errors import DataError


@dataclass(frozen=True)
class Dataset:
    name: str
    file: str
    target: str
    description: str
    kind: str = "prices"  # "prices": candles to forecast; "exogenous": a daily series to join as features
    bar: str | None = None  # candle length ("1D", "1h") where the file is exchange candles
    snapshot: pd.Timestamp | None = None  # when its source was taken (see the data notes above)


# When the sources of the bundled candles were taken: the earliest time the evidence allows
# (data notes above). Each file ends on the last candle closed by then.
BINANCE_DAILY_SNAPSHOT = pd.Timestamp("2026-01-06 12:00", tz="UTC")
BINANCE_HOURLY_SNAPSHOT = pd.Timestamp("2026-01-06 00:00", tz="UTC")  # the cut (data notes above)
_DAILY = {"bar": "1D", "snapshot": BINANCE_DAILY_SNAPSHOT}
_HOURLY = {"bar": "1h", "snapshot": BINANCE_HOURLY_SNAPSHOT}
COINS = ("btc", "eth", "ltc", "xrp", "ada", "bnb")  # the bundled coins, daily `<coin>-usd`, hourly `<coin>-usd-1h`


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        *(Dataset(f"{c}-usd", f"{c}-usd.csv.gz", "close", f"Binance {c.upper()}/USDT daily candles", **_DAILY)
          for c in COINS),
        *(Dataset(f"{c}-usd-1h", f"{c}-usd-1h.csv.gz", "close",
                  f"Binance {c.upper()}/USDT hourly candles (real outages as gaps)", **_HOURLY) for c in COINS),
        Dataset(
            "fear-greed",
            "fear-greed.csv.gz",
            "value",
            "Crypto Fear & Greed Index (alternative.me), daily 0-100; value dated D known at 00:00 UTC of D",
            kind="exogenous",
        ),
        Dataset(
            "tutorial",
            "tutorial.csv.gz",
            "Bitcoin Price",
            "the tutorial's 35 blockchain/market columns (inferred daily dates)",
        ),
    ]
}


def bundled_path(name: str) -> Path:
    return Path(str(resources.files("coincast.data") / "bundled" / DATASETS[name].file))


def split_spec(spec: str | Path) -> list[str]:
    """'btc-usd, eth-usd' -> ['btc-usd', 'eth-usd'] (several assets); an existing path stays whole."""
    spec_s = str(spec)
    if "," not in spec_s or Path(spec_s).exists():
        return [spec_s]
    names = list(dict.fromkeys(s.strip() for s in spec_s.split(",") if s.strip()))
    if not names:
        raise DataError(f"no dataset in {spec_s!r}: give e.g. --data btc-usd,eth-usd")
    return names


def load(spec: str | Path, timestamps: str = "open") -> pd.DataFrame:
    """Load a bundled dataset by name, a CSV/Parquet file by path, or `store:EXCHANGE/SYMBOL/TF`.

    Rows are labelled by candle open time. `timestamps="close"`: a file's timestamps are
    close times, converted (bundled datasets and the store hold open times already).
    """
    spec_s = str(spec)
    if "," in spec_s and not Path(spec_s).exists():
        raise DataError(
            f"'{spec_s}' names several datasets: load them one at a time (load('btc-usd')), "
            "or train on all of them with coincast run --data " + spec_s
        )
    if spec_s.startswith("store:"):
        from coincast.data.store import (
            load_ref,  # DuckDB only when a store is asked for
        )

        return load_ref(spec_s)
    if spec_s in DATASETS:
        return read_file(bundled_path(spec_s))
    if not Path(spec_s).exists() and "/" not in spec_s and "." not in spec_s:
        names = ", ".join(DATASETS)
        raise DataError(f"unknown dataset '{spec_s}': use one of {names}, or a path to a CSV/Parquet file")
    return read_file(spec_s, timestamps)


def daily_coins(but: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """The bundled daily coins' candles by name, all but the dataset named `but`: the network's risk
    head trains on them beside the data's own (models/risk_network.py)."""
    return {d.name: load(d.name) for d in DATASETS.values() if d.bar == "1D" and d.name != str(but)}


def default_target(spec: str | Path) -> str | None:
    """The target a bundled dataset is made for (None for files: the caller decides)."""
    d = DATASETS.get(str(spec))
    return d.target if d else None


def dataset_info() -> pd.DataFrame:
    """One row per bundled dataset: name, rows, first/last candle (with the hour below daily bars), columns, ..."""
    rows = []
    for d in DATASETS.values():
        frame = load(d.name)
        hourly = d.bar is not None and pd.Timedelta(d.bar) < pd.Timedelta(days=1)
        fmt = "%Y-%m-%d %H:%M" if hourly else "%Y-%m-%d"
        rows.append(
            {
                "name": d.name,
                "rows": len(frame),
                "first": frame.index[0].strftime(fmt),
                "last": frame.index[-1].strftime(fmt),
                "columns": len(frame.columns),
                "target": d.target,
                "description": d.description,
            }
        )
    return pd.DataFrame(rows)
