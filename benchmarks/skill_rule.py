"""Choose the default's shrinkage rule on a tuning period that `make skill` never scores.

`make skill` scores the last 730 days of each bundled coin. This script runs the same warm
walk-forward of the default preset (weekly refits) on a tuning period *before* those, with the
rows after it cut off, and keeps the network's own forecast before shrinkage (`network`).
Two tuning periods: "2022", the 730 days just before the test period (2022-01-07 to
2024-01-06), and "2021", the 365 days before that (2021-01-07 to 2022-01-06).
Since shrinkage only rescales that forecast towards persistence, every candidate rule can
then be scored on the saved tables without training again:

    .venv/bin/python benchmarks/skill_rule.py collect [--period 2021] [--jobs 2]  # ~5 min a coin
    .venv/bin/python benchmarks/skill_rule.py compare [--period 2021]             # instant

Rules: "validation" (a fitted on the fold's own selection windows: the rule before issue 16)
and "record" (a fitted on the out-of-sample record of earlier folds, persistence until the
record holds `min_record` forecasts), with the record's length and a lower confidence bound
(a - z standard errors) as options. Nothing here looks at the last 730 days.

How the lowering z is chosen (stated before the 2021 period was run): the smallest z of 0.5,
1, 1.5, 2 that meets issue 16's point targets on *both* tuning periods: RMSE ratio <= 1.005
on every coin, <= 1.000 on at least three, and no coin where persistence is significantly
better (DM p > 0.95). None of them did on 2021 (z = 2: xrp 1.0034, p 0.96), so the grid was
extended by its next step: z = 2.5 is the smallest that does, and the default.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import coincast
from coincast.backtest.engine import BacktestSettings, walk_forward
from coincast.data.datasets import default_target
from coincast.evaluation.metrics import dm_vs_persistence
from coincast.flows.backtest import load_inputs
from coincast.models.shrinkage import record_shrinkage

COINS = ("btc-usd", "eth-usd", "ltc-usd", "xrp-usd", "ada-usd", "bnb-usd")
TEST_DAYS = 730  # what make skill scores: never used here
# period -> (rows cut off at the end, days scored before the cut)
PERIODS = {"2022": (TEST_DAYS, 730), "2021": (TEST_DAYS + 730, 365)}


def out_dir(period: str) -> Path:
    return Path("benchmarks/results/skill_rule" + ("" if period == "2022" else f"_{period}"))


def collect_one(coin: str, period: str) -> str:
    s = coincast.preset("default")
    s.data.target = default_target(coin)
    inputs, _ = load_inputs(coin, s)
    n = len(inputs.frame)
    cut, days = PERIODS[period]
    tune = inputs.rows(0, n - cut)  # cut before the test period: no fold sees it
    start = str(tune.frame.index[-days].date())
    bt = BacktestSettings(start=start, retrain_every=7, refit="warm", calib_pool=100, shrink_from="validation")
    t0 = time.perf_counter()
    r = walk_forward(tune, s, bt, network=True)
    cols = ["fold", "actual", "previous", "model", "network", "persistence"]
    out_dir(period).mkdir(parents=True, exist_ok=True)
    r.table[cols].to_csv(out_dir(period) / f"{coin}.csv")
    return f"{coin}: {len(r.table)} days from {start}, {time.perf_counter() - t0:.0f} s"


def collect(coins: list[str], period: str, jobs: int) -> None:
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=torch.set_num_threads,
                             initargs=(1,)) as ex:
        for line in ex.map(collect_one, coins, [period] * len(coins)):
            print(line, flush=True)


def apply_record(t: pd.DataFrame, **rule) -> pd.Series:
    """The forecasts a record rule gives: fold k's a from the folds before it."""
    out = []
    for k, part in t.groupby("fold", sort=True):
        earlier = t[t["fold"] < k]
        a = record_shrinkage(earlier["actual"].to_numpy(), earlier["network"].to_numpy(),
                             earlier["previous"].to_numpy(), **rule)
        out.append(part["previous"] + a * (part["network"] - part["previous"]))
    return pd.concat(out)


RULES = {
    "validation": None,
    "record (all)": {"z": 0.0},
    "record (last 365)": {"size": 365, "z": 0.0},
    "record, min 60": {"min_record": 60, "z": 0.0},
    "record, a - 0.5 se": {"z": 0.5},
    "record, a - 1 se": {"z": 1.0},  # the default until the 2021 period was run
    "record 365, a - 1 se": {"size": 365, "z": 1.0},
    "record, a - 1.5 se": {"z": 1.5},
    "record, a - 2 se": {"z": 2.0},
    "record, a - 2.5 se": {"z": 2.5},  # the default (coincast.models.shrinkage.RECORD_Z)
    "min 182, a - 1 se": {"min_record": 182, "z": 1.0},
    "min 182, a - 1.5 se": {"min_record": 182, "z": 1.5},
}


def compare(coins: list[str], period: str) -> None:
    print(f"{'rule':<20}" + "".join(f"{c:>18}" for c in coins))
    for name, rule in RULES.items():
        cells = []
        for coin in coins:
            t = pd.read_csv(out_dir(period) / f"{coin}.csv", index_col=0, parse_dates=True)
            pred = t["model"] if rule is None else apply_record(t, **rule)
            e, ep = pred - t["actual"], t["persistence"] - t["actual"]
            ratio = float(np.sqrt(np.mean(e**2) / np.mean(ep**2)))
            p = dm_vs_persistence(t.assign(model=pred))[1] if ratio != 1 else 0.5
            cells.append(f"{ratio:.4f} p={p:.2f}")
        print(f"{name:<20}" + "".join(f"{c:>18}" for c in cells))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["collect", "compare"])
    p.add_argument("--coins", default=",".join(COINS))
    p.add_argument("--period", choices=sorted(PERIODS), default="2022")
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args()
    coins = a.coins.split(",")
    collect(coins, a.period, a.jobs) if a.what == "collect" else compare(coins, a.period)


if __name__ == "__main__":
    main()
