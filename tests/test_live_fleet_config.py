"""`[[fleet]]` tables: many markets in one table, expanded into one stream per (symbol, timeframe)
with every [[stream]] key passed through; each mistake is one line naming the table, exit 2
through `coincast live --config`, nothing written."""

import dataclasses

import pytest

from coincast.live.config import STREAM_KEYS, Stream, load_config
from coincast.live.fleet import stream_name
from coincast.live.registry import models_dir
from tests.conftest import assert_user_error

FLEET = """
[[fleet]]
exchange = "binance"
symbols = ["BTC/USDT", "ETH/USDT"]
timeframes = ["1d", "1h"]
since = "2023-01-01"
retrain_every = 7
"""


def config(tmp_path, body: str) -> str:
    path = tmp_path / "live.toml"
    path.write_text(f'store = "{tmp_path / "live.duckdb"}"\n' + body)
    return str(path)


def test_a_fleet_is_one_stream_per_symbol_and_timeframe_with_its_timeframe_keys_over_the_shared(tmp_path):
    body = FLEET + """
[fleet.settings.model]
hidden = [8, 8]
[fleet.timeframe.1h]
retrain_every = 168
[fleet.timeframe.1h.settings.data]
window = 48

[[stream]]
name = "sol-1d"
data = "store:bybit/SOL/USDT/1d"
"""
    streams = load_config(config(tmp_path, body)).streams
    assert [(s.name, s.data) for s in streams] == [
        ("sol-1d", "store:bybit/SOL/USDT/1d"),
        ("btc-usdt-1d", "store:binance/BTC/USDT/1d"), ("btc-usdt-1h", "store:binance/BTC/USDT/1h"),
        ("eth-usdt-1d", "store:binance/ETH/USDT/1d"), ("eth-usdt-1h", "store:binance/ETH/USDT/1h")]
    fleet = streams[1:]
    assert [s.retrain_every for s in fleet] == [7, 168, 7, 168]
    assert [s.settings.data.window for s in fleet] == [streams[0].settings.data.window, 48] * 2
    assert all(s.settings.model.hidden == [8, 8] and s.since == "2023-01-01" for s in fleet)
    assert streams[0].settings.model.hidden != [8, 8]


def test_every_stream_key_passes_through_a_fleet(tmp_path):
    """A fleet's stream equals the [[stream]] written with the same keys, for every key a Stream has
    (a setting added to Stream later is covered without a change here)."""
    values = {"since": '"2024-02-03"', "retrain_every": "11", "refit": '"fresh"', "shadow": "5", "guard": "9",
              "train_timeout": '"3h"', "preset": '"default"'}
    missing = STREAM_KEYS - {"name", "data", "settings"} - set(values)
    fields = {f.name: f for f in dataclasses.fields(Stream)}
    for key in missing:  # a newer setting: its default written out is a value the loader accepts
        default = fields[key].default
        if default is None or default is dataclasses.MISSING:
            continue  # TOML has no None: nothing to write
        values[key] = "true" if default is True else "false" if default is False else repr(default).replace("'", '"')
    keys = "\n".join(f"{k} = {v}" for k, v in values.items()) + "\n[{table}.settings.train]\nepochs = 3\n"
    single = load_config(config(tmp_path, '[[stream]]\nname = "btc-usdt-1d"\ndata = "store:binance/BTC/USDT/1d"\n'
                                + keys.format(table="stream"))).streams[0]
    fleet = load_config(config(tmp_path, '[[fleet]]\nexchange = "binance"\nsymbols = ["BTC/USDT"]\ntimeframes = ["1d"]\n'
                               + keys.format(table="fleet"))).streams[0]
    assert fleet == single and fleet.settings.train.epochs == 3


def test_the_naming_rule():
    assert stream_name("", "BTC/USDT", "1d") == "btc-usdt-1d"
    assert stream_name("kraken-", "BTC/USDT:USDT", "4h") == "kraken-btc-usdt-usdt-4h"
    assert stream_name("", "1000SHIB/USDT", "1M") == "1000shib-usdt-1M"  # a month is not a minute


@pytest.mark.parametrize("body, message", [
    (FLEET + '[[stream]]\nname = "eth-usdt-1h"\ndata = "store:binance/ETH/USDT/1h"\n',
     "fleet 1 (binance): its stream 'eth-usdt-1h' (ETH/USDT 1h) has the name of [[stream]] 'eth-usdt-1h'; every stream "
     "needs its own name"),
    (FLEET + FLEET.replace('"ETH/USDT"', '"SOL/USDT"'),
     "fleet 2 (binance): its stream 'btc-usdt-1d' (BTC/USDT 1d) has the name of fleet 1 (binance)'s BTC/USDT 1d; "
     "every stream needs its own name: list each market once, rename the [[stream]], or give one fleet prefix"),
    (FLEET.replace("retrain_every", "retrain_evry"), "fleet 1 (binance): unknown key(s) retrain_evry; known are"),
    (FLEET + 'name = "btc"\n', "fleet 1 (binance): unknown key(s) name; known are"),
    (FLEET.replace('["BTC/USDT", "ETH/USDT"]', "[]"),
     'fleet 1 (binance): symbols must be a non-empty list of names, e.g. symbols = ["BTC/USDT", "ETH/USDT"] (got [])'),
    (FLEET.replace('"1h"', '"7m"'), "fleet 1 (binance): binance does not offer timeframe(s) 7m; list some of 1s, 1m"),
    (FLEET.replace('"binance"', '"binanse"'), "fleet 1 (binanse): unknown exchange 'binanse': ccxt does not support it"),
    (FLEET + "[fleet.timeframe.4h]\nretrain_every = 42\n",
     "fleet 1 (binance): [fleet.timeframe.4h] is for a timeframe the fleet does not list; add '4h' to timeframes"),
    (FLEET + "[fleet.timeframe.1h]\nretrain_every = 0\n",
     "fleet 1 (binance): stream 'btc-usdt-1h': retrain_every must be a whole number of candles, at least 1 (got 0)"),
    (FLEET + "[fleet.settings.model]\nhiden = [4]\n", "fleet 1 (binance): unknown setting 'model.hiden'"),
])
def test_a_bad_fleet_is_one_line_naming_the_table_exit_2_and_nothing_written(cli, tmp_path, body, message):
    done = cli("live", "--config", config(tmp_path, body), cwd=tmp_path)
    assert_user_error(done, message)
    assert not (tmp_path / "live.duckdb").exists() and not models_dir(tmp_path / "live.duckdb").exists()
