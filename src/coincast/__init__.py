"""coincast: honest next-step crypto price forecasts with a fast bidirectional LSTM.

    import coincast
    frame = coincast.load("btc-usd")               # a validated DataFrame
    result = coincast.run("btc-usd")               # the whole pipeline, writes runs/<id>/
    model = coincast.Forecaster().fit(frame)       # or step by step
    model.forecast_next(frame)
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

from coincast.config import Settings, preset
from coincast.errors import CoincastError

# Imported on first use, so the command line starts without loading torch for commands
# that do not train (PEP 562).
_LAZY = {"load": "coincast.data", "Forecaster": "coincast.models.forecaster",
         "RunResult": "coincast.flows.run", "run": "coincast.flows.run"}

__all__ = ["CoincastError", "Forecaster", "RunResult", "Settings", "load", "preset", "run"]
try:  # one source: pyproject.toml's version, as installed
    __version__ = version("coincast")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'coincast' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
