"""The Python API in one script: train and score a model, walk it forward, forecast the next day.

    python examples/api.py                    # small settings: seconds, not minutes
    python examples/api.py --out /tmp/runs    # where the run folders go (default: runs/)

Every function here is what the `coincast` command calls; see the docs' Python API reference.
"""

from __future__ import annotations

import argparse

import coincast
from coincast.backtest.engine import BacktestSettings
from coincast.backtest.trading import TradingSettings
from coincast.flows.backtest import run_backtest
from coincast.flows.backtest_risk import served_move


def small_settings() -> coincast.Settings:
    """The default preset with a small network and few epochs, so the example runs quickly."""
    settings = coincast.preset("default")
    settings.data.window = 20
    settings.model.hidden = [8, 8]
    settings.model.risk_head = False  # the risk baselines still run; the network's head would train for seconds
    settings.train.epochs = 2
    return settings


def main(out: str) -> None:
    settings = small_settings()

    # 1. Train on the first 90% of windows, test on the rest, beside "tomorrow = today".
    result = coincast.run("btc-usd", settings, runs_dir=out)
    print(result.verdict)
    print(f"RMSE ratio to persistence: {result.metrics['model']['rmse_ratio']:.3f}; run folder {result.folder}")

    # 2. Walk forward over the last 8 weeks: every day forecast by a model trained only on the days before it.
    walk = BacktestSettings(start="2025-11-10", retrain_every=14, refit="warm", jobs=1)
    backtest = run_backtest("btc-usd", settings, walk, TradingSettings(fee_bps=10, slippage_bps=5), runs_dir=out)
    for line in backtest.verdict:
        print(line)
    risk = backtest.summary["risk"]  # the range forecasts of the same days: every risk model, with btc-usd-1h by default
    print(risk["verdict"] if risk["skipped"] is None else f"risk skipped: {risk['skipped']}")

    # 3. Forecast the day after the data with the run's model, step by step through a Forecaster.
    frame = coincast.load("btc-usd")
    nxt = result.forecaster.forecast_next(frame)
    print(f"next close ({nxt['date']}): {nxt['predicted_price']:,.2f} ({nxt['change_pct']:+.2f}%, {nxt['direction']})")
    # ... and its range: the served risk model's quantiles of the next percent log return, as `coincast predict`
    # prints them (with the hourly candles and the head off: the GARCH-t + HAR-RV average)
    hourly = coincast.load("btc-usd-1h")
    (low, median, high), n, label = served_move(frame, [0.1, 0.5, 0.9], hourly, head=settings.model.risk_head)
    print(f"80% range of the next move: {low:+.2f}% .. {high:+.2f}% (median {median:+.2f}%; {label} on {n:,} returns)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs", help="folder that receives the run folders")
    main(parser.parse_args().out)
