"""coincast: honest next-step crypto price forecasts with a fast bidirectional LSTM.

    import coincast
    frame = coincast.load("btc-usd")               # a validated DataFrame
    result = coincast.run("btc-usd")               # the whole pipeline, writes runs/<id>/
    model = coincast.Forecaster().fit(frame)       # or step by step
    model.forecast_next(frame)
"""

from coincast.config import Settings, preset
from coincast.data import load
from coincast.errors import CoincastError
from coincast.models.forecaster import Forecaster
from coincast.pipeline import RunResult, run

__all__ = ["CoincastError", "Forecaster", "RunResult", "Settings", "load", "preset", "run"]
__version__ = "0.1.0"
