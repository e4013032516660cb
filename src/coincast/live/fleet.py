"""The `[[fleet]]` table: many markets of one exchange in one table, one Stream per (symbol, timeframe).

    [[fleet]]
    exchange = "binance"
    symbols = ["BTC/USDT", "ETH/USDT"]
    timeframes = ["1d", "1h"]
    prefix = ""                        # optional: put before every stream name (two fleets, same symbols)
    since = "2023-01-01"               # and any other [[stream]] key but name and data: shared
    retrain_every = 7
    [fleet.settings.model]             # shared settings, as [stream.settings.*]
    hidden = [16, 16]
    [fleet.timeframe.1h]               # keys for one timeframe's streams, over the shared ones
    retrain_every = 168
    [fleet.timeframe.1h.settings.data]
    window = 48

Names: the prefix, the symbol in lower case with each run of characters other than letters and
digits turned into one '-', then '-' and the timeframe: BTC/USDT on 1d is `btc-usdt-1d`. A name
keys the stream's models and records in the store, so it must not change while the store lives.
Streams come symbol by symbol, each symbol's timeframes in the order listed. Every [[stream]]
key passes through as it is (a new Stream setting needs no change here), and each expanded
stream is checked as a [[stream]] is, its error prefixed with the fleet it came from.
"""

from __future__ import annotations

import re

from coincast.data.exchange import make_client
from coincast.errors import CoincastError, ConfigError
from coincast.live.config import STREAM_KEYS, Stream, check_stream, stream_from

SHARED_KEYS = STREAM_KEYS - {"name", "data"}  # what a fleet passes to each of its streams
FLEET_KEYS = SHARED_KEYS | {"exchange", "symbols", "timeframes", "prefix", "timeframe"}


def stream_name(prefix: str, symbol: str, timeframe: str) -> str:
    """'BTC/USDT', '1d' -> 'btc-usdt-1d' (after the prefix)."""
    return f"{prefix}{re.sub(r'[^a-z0-9]+', '-', symbol.lower()).strip('-')}-{timeframe}"


def fleet_streams(tables: list, streams: list[Stream]) -> list[Stream]:
    """Every [[fleet]] table's streams, after the [[stream]] tables' `streams` (ConfigError when a
    name is taken twice, naming the tables it comes from)."""
    taken = {s.name: f"[[stream]] {s.name!r}" for s in streams}
    out = []
    for k, table in enumerate(tables, start=1):
        exchange = table.get("exchange") if isinstance(table, dict) else None
        where = f"fleet {k}" + (f" ({exchange})" if isinstance(exchange, str) and exchange else "")
        for s, origin in expand(table, where):
            if s.name in taken:
                raise ConfigError(f"{where}: its stream {s.name!r} ({origin}) has the name of {taken[s.name]}; every stream "
                                  "needs its own name: list each market once, rename the [[stream]], or give one fleet "
                                  "prefix = \"...\"")
            taken[s.name] = f"{where}'s {origin}"
            out.append(s)
    return out


def expand(table, where: str) -> list[tuple[Stream, str]]:
    """One [[fleet]] table's streams, each with the symbol and timeframe it comes from."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table: write [[fleet]] then one key per line")
    unknown = set(table) - FLEET_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known are {', '.join(sorted(FLEET_KEYS))} "
                          "(a fleet names its streams itself: name and data belong to [[stream]])")
    exchange, prefix = table.get("exchange"), table.get("prefix", "")
    if not isinstance(exchange, str) or not exchange:
        raise ConfigError(f"{where} needs exchange = \"...\", a ccxt exchange id (e.g. exchange = \"binance\")")
    if not isinstance(prefix, str):
        raise ConfigError(f"{where}: prefix must be text put before every stream name, e.g. prefix = \"kraken-\"")
    symbols = _listed(table, "symbols", where, 'symbols = ["BTC/USDT", "ETH/USDT"]')
    timeframes = _listed(table, "timeframes", where, 'timeframes = ["1d", "1h"]')
    _check_timeframes(exchange, timeframes, where)
    own = _timeframe_tables(table.get("timeframe", {}), timeframes, where)
    shared = {key: value for key, value in table.items() if key in SHARED_KEYS}
    out, checked = [], set()
    for symbol in symbols:
        for timeframe in timeframes:
            mine = own.get(timeframe, {})
            keys = {**shared, **mine, "settings": _merged(shared.get("settings", {}), mine.get("settings", {})),
                    "name": stream_name(prefix, symbol, timeframe), "data": f"store:{exchange}/{symbol}/{timeframe}"}
            try:
                s = stream_from(keys, len(out) + 1)
                if timeframe not in checked:  # the streams of one timeframe differ only in name and market
                    check_stream(s)
                    checked.add(timeframe)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            out.append((s, f"{symbol} {timeframe}"))
    return out


def _listed(table: dict, key: str, where: str, example: str) -> list[str]:
    values = table.get(key)
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        got = "it is missing" if values is None else f"got {values!r}"
        raise ConfigError(f"{where}: {key} must be a non-empty list of names, e.g. {example} ({got})")
    return values


def _check_timeframes(exchange: str, timeframes: list[str], where: str) -> None:
    try:
        client = make_client(exchange)
    except CoincastError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    offered = list(getattr(client, "timeframes", None) or {})
    wrong = [t for t in timeframes if t not in offered]
    if wrong:
        raise ConfigError(f"{where}: {exchange} does not offer timeframe(s) {', '.join(wrong)}; "
                          f"list some of {', '.join(offered)} in timeframes")


def _timeframe_tables(tables, timeframes: list[str], where: str) -> dict[str, dict]:
    """[fleet.timeframe.TF] tables: the keys over the shared ones for that timeframe's streams."""
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise ConfigError(f"{where}: timeframe holds one table per timeframe, "
                          "e.g. [fleet.timeframe.1h] then retrain_every = 168")
    for timeframe, keys in tables.items():
        if timeframe not in timeframes:
            raise ConfigError(f"{where}: [fleet.timeframe.{timeframe}] is for a timeframe the fleet does not list; "
                              f"add '{timeframe}' to timeframes or remove the table")
        unknown = set(keys) - SHARED_KEYS
        if unknown:
            raise ConfigError(f"{where}: [fleet.timeframe.{timeframe}] has unknown key(s) {', '.join(sorted(unknown))}; "
                              f"known are {', '.join(sorted(SHARED_KEYS))}")
    return tables


def _merged(shared, own):
    """Shared settings tables with one timeframe's over them, section by section."""
    if not isinstance(shared, dict) or not isinstance(own, dict):
        return own or shared  # not tables: the stream's check says how to write them
    merged = dict(shared)
    for section, values in own.items():
        base = shared.get(section)
        merged[section] = {**base, **values} if isinstance(base, dict) and isinstance(values, dict) else values
    return merged
