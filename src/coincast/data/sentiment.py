"""A daily sentiment series from a file of dated texts (news, posts), scored offline with VADER.

Per UTC day: mean compound score, share of positive and of negative texts (VADER's own
thresholds, compound >= 0.05 / <= -0.05) and the number of texts. Days without texts get
no row (never a made-up zero); the result joins like any exogenous series, as known at
the end of its day (`coincast.data.exogenous`, known="end").
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from coincast.data.frame import DATE_COLUMNS
from coincast.errors import DataError

TEXT_COLUMNS = ("text", "content", "body", "short description", "description", "summary", "headline", "title", "tweet", "message")
TEXT_DATE_COLUMNS = (*DATE_COLUMNS, "timestamp_utc", "created_at", "published", "published_at")
POSITIVE, NEGATIVE = 0.05, -0.05  # VADER's recommended compound thresholds


def _pick(columns: pd.Index, names: tuple[str, ...], given: str | None, what: str, source: str) -> str:
    lowered = {str(c).lower(): c for c in columns}
    if given is not None:
        if given.lower() in lowered:
            return lowered[given.lower()]
        raise DataError(f"{source} has no column '{given}'; its columns are: {', '.join(map(str, columns))}")
    for name in names:
        if name in lowered:
            return lowered[name]
    raise DataError(
        f"{source} has no {what} column (looked for {', '.join(names[:6])}...); "
        f"rename one of its columns ({', '.join(map(str, columns))}) or name it with --{what}-column"
    )


def read_texts(path: str | Path, text_column: str | None = None, date_column: str | None = None) -> pd.DataFrame:
    """The file's dated texts as columns `date` (UTC) and `text`; exact duplicates dropped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"texts file not found: {path}; give a CSV with a date and a text column")
    try:
        raw = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path} is not a readable CSV/Parquet file ({str(exc).splitlines()[0]})") from None
    text = _pick(raw.columns, TEXT_COLUMNS, text_column, "text", str(path))
    date = _pick(raw.columns, TEXT_DATE_COLUMNS, date_column, "date", str(path))
    try:
        dates = pd.to_datetime(raw[date], utc=True, format="mixed")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: column '{date}' has values that are not dates ({exc}); fix them") from None
    texts = pd.DataFrame({"date": dates, "text": raw[text].fillna("").astype(str)})
    texts = texts[texts["text"].str.strip() != ""].drop_duplicates()
    if texts.empty:
        raise DataError(f"{path} has no non-empty texts in column '{text}'")
    return texts


def daily_sentiment(texts: pd.DataFrame) -> pd.DataFrame:
    """Score `texts` (columns date, text) with VADER and aggregate per UTC day."""
    from vaderSentiment.vaderSentiment import (
        SentimentIntensityAnalyzer,  # loads its lexicon: only when asked
    )

    analyzer = SentimentIntensityAnalyzer()
    unique = texts["text"].unique()  # repeated slogans and spam are scored once
    scores = dict(zip(unique, (analyzer.polarity_scores(t)["compound"] for t in unique)))
    compound = texts["text"].map(scores)
    day = texts["date"].dt.tz_convert("UTC").dt.normalize().rename("date")
    grouped = pd.DataFrame({"compound": compound, "pos": compound >= POSITIVE, "neg": compound <= NEGATIVE}).groupby(day)
    return pd.DataFrame({
        "compound_mean": grouped["compound"].mean(),
        "positive_share": grouped["pos"].mean(),
        "negative_share": grouped["neg"].mean(),
        "count": grouped.size().astype("float64"),
    }).sort_index()


def build_sentiment(path: str | Path, out: str | Path, text_column: str | None = None,
                    date_column: str | None = None) -> pd.DataFrame:
    """Read dated texts, write the daily series as CSV (`date` as YYYY-MM-DD) to `out`; returns it."""
    series = daily_sentiment(read_texts(path, text_column, date_column))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    series.set_axis(series.index.strftime("%Y-%m-%d"), axis=0).rename_axis("date").to_csv(tmp)
    tmp.replace(out)  # never a half-written series
    return series
