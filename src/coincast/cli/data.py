"""Data commands: `coincast store import|ls|gaps`, `coincast fetch`, `coincast sentiment build`.

Register them in cli.py (user mistakes raise CoincastError, which `main` turns into one
line and exit 2):

    from coincast.cli.data import fetch, sentiment_app, store_app

    app.add_typer(store_app, name="store")
    app.add_typer(sentiment_app, name="sentiment")
    app.command("fetch")(fetch)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

out = Console(soft_wrap=True)  # long paths and messages stay on one line

STORE_HELP = "Store file (default: $COINCAST_STORE, else ~/.local/share/coincast/store.duckdb)."

store_app = typer.Typer(no_args_is_help=True, help="The local candle store (DuckDB): import files, list holdings and gaps.")
sentiment_app = typer.Typer(no_args_is_help=True, help="Daily sentiment series from dated texts (VADER, offline).")


@store_app.command("import")
def store_import(
    file: Path = typer.Argument(..., help="CSV or Parquet with a timestamp/date column and open, high, low, close, volume."),
    symbol: str = typer.Option(..., help="Market the candles belong to, e.g. BTC/USDT."),
    timeframe: str = typer.Option(..., help="Candle length: 1m, 5m, 15m, 1h, 4h, 1d, 1w..."),
    exchange: str = typer.Option("binance", help="Exchange the candles come from."),
    store: Optional[Path] = typer.Option(None, help=STORE_HELP),
    timestamps: str = typer.Option("open", help="What the file's timestamps mark: open (each candle's open time) or close."),
):
    """Upsert a file of candles in one transaction: same candles twice change nothing, newer ones win."""
    from coincast.data.store import default_path, import_file

    result = import_file(file, symbol, timeframe, exchange, store, timestamps)
    where = store or default_path()
    out.print(f"{file} -> {where} ({exchange.lower()}/{symbol.upper()}/{timeframe}): {result}")
    if result.replaced:
        out.print(f"note: {result.replaced} stored candles had different values and were replaced by this file's")


@store_app.command("ls")
def store_ls(store: Optional[Path] = typer.Option(None, help=STORE_HELP)):
    """What the store holds: one row per exchange/symbol/timeframe with first/last candle and gaps."""
    from coincast.data.store import Store

    with Store(store, read_only=True) as db:
        held = db.ls()
        path = db.path
    if held.empty:
        out.print(f"{path} is empty: fill it with `coincast store import` or `coincast fetch`")
        return
    table = Table(title=str(path), box=None, collapse_padding=True, pad_edge=False, title_justify="left")
    for col in ["data", "rows", "first", "last", "gaps", "missing"]:
        table.add_column(col, justify="right" if col in ("rows", "gaps", "missing") else "left", no_wrap=True)
    for row in held.itertuples(index=False):
        when = "%Y-%m-%d" if row.timeframe[-1] in "dwM" else "%Y-%m-%d %H:%M"
        table.add_row(f"store:{row.exchange}/{row.symbol}/{row.timeframe}", str(row.rows),
                      row.first.strftime(when), row.last.strftime(when), str(row.gaps), str(row.missing))
    out.print(table)
    out.print("give a `data` value to --data to run on those candles")


@store_app.command("gaps")
def store_gaps(
    symbol: Optional[str] = typer.Option(None, help="Only this market (default: all held)."),
    timeframe: Optional[str] = typer.Option(None, help="Only this timeframe."),
    exchange: Optional[str] = typer.Option(None, help="Only this exchange."),
    store: Optional[Path] = typer.Option(None, help=STORE_HELP),
):
    """List every run of missing candles: last candle before it, first after it, how many are missing."""
    from coincast.data.store import Store

    with Store(store, read_only=True) as db:
        held = db.ls()
        keep = (
            (held.symbol == symbol.upper() if symbol else True)
            & (held.timeframe == timeframe if timeframe else True)
            & (held.exchange == exchange.lower() if exchange else True)
        )
        if not keep.any():
            from coincast.errors import DataError

            raise DataError("the store holds no candles that match; `coincast store ls` shows what it holds")
        for e, s, t in held.loc[keep, ["exchange", "symbol", "timeframe"]].itertuples(index=False):
            gaps = db.gaps(e, s, t)
            out.print(f"{e}/{s}/{t}: {len(gaps)} gaps, {int(gaps['missing'].sum())} missing candles")
            for g in gaps.itertuples(index=False):
                out.print(f"  after {g.after}  next {g.before}  missing {g.missing}")


def fetch(
    exchange: str = typer.Option("binance", help="ccxt exchange id, e.g. binance, kraken, coinbase."),
    symbol: str = typer.Option("BTC/USDT", help="Market, e.g. BTC/USDT."),
    timeframe: str = typer.Option("1d", help="Candle length the exchange offers, e.g. 1m, 1h, 1d."),
    since: Optional[str] = typer.Option(None, help="First day to fetch (YYYY-MM-DD); default: after the newest stored candle."),
    store: Optional[Path] = typer.Option(None, help=STORE_HELP),
    quiet: bool = typer.Option(False, help="No progress bar."),
):
    """Fetch closed candles from an exchange into the store; rerun any time to bring it up to date."""
    from coincast.data.exchange import fetch as fetch_candles

    result = fetch_candles(exchange, symbol, timeframe, since=since, store=store, progress=not quiet)
    out.print(str(result))
    market = f"store:{result.exchange}/{result.symbol}"
    if result.timeframe == "1h":  # the hourly companion of the same market's daily candles (data/intraday.py)
        out.print(f"daily work on `--data {market}/1d` uses them by default (or `--intraday {market}/1h`); "
                  "rerun this command to keep them current")
    else:
        out.print(f"use `--data {market}/{result.timeframe}` to run on them")


@sentiment_app.command("build")
def sentiment_build(
    texts: Path = typer.Argument(..., help="CSV/Parquet of dated texts (news, posts) with a date and a text column."),
    out_file: Path = typer.Option(..., "--out", help="Where to write the daily series CSV."),
    text_column: Optional[str] = typer.Option(None, help="Column holding the text (default: text, content, title...)."),
    date_column: Optional[str] = typer.Option(None, help="Column holding the date (default: date, timestamp...)."),
):
    """Score each text with VADER and write a daily series: mean compound, share positive/negative, count."""
    from coincast.data.sentiment import build_sentiment

    series = build_sentiment(texts, out_file, text_column, date_column)
    out.print(
        f"{out_file}: {len(series)} days ({series.index[0].date()} to {series.index[-1].date()}), "
        f"{int(series['count'].sum())} texts; each day's value counts as known at the end of that day"
    )
