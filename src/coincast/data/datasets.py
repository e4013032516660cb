"""Real datasets bundled inside the package, and `load`, the one way in for any data spec."""

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


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset("btc-usd", "btc-usd.csv.gz", "close", "Binance BTC/USDT daily candles"),
        Dataset("eth-usd", "eth-usd.csv.gz", "close", "Binance ETH/USDT daily candles"),
        Dataset("ltc-usd", "ltc-usd.csv.gz", "close", "Binance LTC/USDT daily candles"),
        Dataset("xrp-usd", "xrp-usd.csv.gz", "close", "Binance XRP/USDT daily candles"),
        Dataset("ada-usd", "ada-usd.csv.gz", "close", "Binance ADA/USDT daily candles"),
        Dataset("bnb-usd", "bnb-usd.csv.gz", "close", "Binance BNB/USDT daily candles"),
        Dataset("btc-usd-1h", "btc-usd-1h.csv.gz", "close", "Binance BTC/USDT hourly candles (real outages as gaps)"),
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


def default_target(spec: str | Path) -> str | None:
    """The target a bundled dataset is made for (None for files: the caller decides)."""
    d = DATASETS.get(str(spec))
    return d.target if d else None


def dataset_info() -> pd.DataFrame:
    """One row per bundled dataset: name, rows, first/last date, columns, description."""
    rows = []
    for d in DATASETS.values():
        frame = load(d.name)
        rows.append(
            {
                "name": d.name,
                "rows": len(frame),
                "first": frame.index[0].date().isoformat(),
                "last": frame.index[-1].date().isoformat(),
                "columns": len(frame.columns),
                "target": d.target,
                "description": d.description,
            }
        )
    return pd.DataFrame(rows)
