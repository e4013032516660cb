"""Read CSV and Parquet files into frames."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from coincast.data.frame import to_frame
from coincast.errors import DataError

SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


def read_file(path: str | Path, timestamps: str = "open") -> pd.DataFrame:
    """Read a CSV (optionally gzipped) or Parquet file with or without a date column.

    `timestamps`: whether the file's timestamps are candle "open" or "close" times
    (coincast.data.frame.open_times); the frame is always labelled by open times.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"file not found: {path}; check the path, or use a bundled dataset "
            "(`coincast datasets` lists them)"
        )
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a CSV or Parquet file")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            raw = pd.read_parquet(path)
        else:
            raw = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty: give a file with a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        kind = "Parquet" if name.endswith((".parquet", ".pq")) else "CSV"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path} is not a readable {kind} file ({first}); check its format") from None
    return to_frame(raw, str(path), timestamps)
