"""Several assets in one run: the pooled forecast table and scores per asset and pooled.

Each asset is scored in its own price units. Pooled scores divide every price by the row's
previous price first (`compare.relative`), so an asset at $60,000 and one at $0.50 weigh
alike: pooled RMSE and MAE are in percent of the last price.
"""

from __future__ import annotations

import pandas as pd

from coincast.evaluation.compare import relative
from coincast.evaluation.metrics import score


def pool(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One forecast table for all assets, with an `asset` column first (dates repeat)."""
    parts = [t.assign(asset=a)[["asset", *t.columns]] for a, t in tables.items()]
    return pd.concat(parts)


def scores(tables: dict[str, pd.DataFrame], models: list[str]) -> tuple[dict, dict]:
    """(pooled metrics on relative prices, {asset: metrics in its own units})."""
    per_asset = {a: score(t, models) for a, t in tables.items()}
    return score(relative(pool(tables)), models), per_asset
