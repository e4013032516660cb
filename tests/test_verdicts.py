"""Every verdict sentence, branch by branch, on constructed numbers: "significantly" appears
only where the test behind it rejects, and a difference whose test does not is called so."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from coincast.backtest import trading
from coincast.evaluation import stats
from coincast.evaluation.compare import compare, sentence
from coincast.evaluation.metrics import verdict


# -- point forecast vs persistence (Diebold-Mariano) ------------------------------------------
@pytest.mark.parametrize("ratio, p, expected", [
    (0.95, 0.01, 'The model beat persistence ("tomorrow = today") significantly: RMSE 0.950x persistence\'s '
                 "(Diebold-Mariano one-sided p = 0.01)."),
    (0.99, 0.3, 'The model\'s RMSE is 0.990x persistence\'s ("tomorrow = today"), lower but not significantly '
                "(Diebold-Mariano one-sided p = 0.3): no evidence it beats persistence."),
    (1.016, 0.99, 'The model did NOT beat persistence ("tomorrow = today"): its RMSE is 1.016x persistence\'s, '
                  "significantly worse (Diebold-Mariano one-sided p = 0.01 for persistence being better)."),
    (1.01, 0.6, 'The model did NOT beat persistence ("tomorrow = today"): its RMSE is 1.010x persistence\'s, '
                "a difference that is not significant (Diebold-Mariano one-sided p = 0.4 for persistence "
                "being better)."),
])
def test_point_verdict(ratio, p, expected):
    assert verdict({"model": {"rmse_ratio": ratio, "dm_p_vs_persistence": p}}) == expected


# -- direction (binomial tests) ----------------------------------------------------------------
@pytest.mark.parametrize("tests, expected", [
    ({"n": 365, "accuracy": 0.58, "always_up_rate": 0.52, "p_vs_50": 0.001, "p_vs_always_up": 0.012},
     "The model called the direction significantly better than always-up and a coin: 58.0% of 365 moves right "
     "vs always-up's 52.0% and a coin's 50% (binomial one-sided p = 0.012 vs always-up, 0.001 vs 50%)."),
    ({"n": 365, "accuracy": 0.53, "always_up_rate": 0.52, "p_vs_50": 0.13, "p_vs_always_up": 0.38},
     "The model called the direction better than always-up and a coin, but not significantly: 53.0% of 365 "
     "moves right vs always-up's 52.0% and a coin's 50% (binomial one-sided p = 0.38 vs always-up, 0.13 vs 50%)."),
    # beats a coin significantly but not always-up in a rising market: not significant
    ({"n": 365, "accuracy": 0.56, "always_up_rate": 0.55, "p_vs_50": 0.012, "p_vs_always_up": 0.37},
     "The model called the direction better than always-up and a coin, but not significantly: 56.0% of 365 "
     "moves right vs always-up's 55.0% and a coin's 50% (binomial one-sided p = 0.37 vs always-up, 0.012 vs 50%)."),
    ({"n": 365, "accuracy": 0.51, "always_up_rate": 0.53, "p_vs_50": 0.35, "p_vs_always_up": 0.74},
     "The model did NOT call the direction better than always-up and a coin: 51.0% of 365 moves right vs "
     "always-up's 53.0% and a coin's 50% (binomial one-sided p = 0.74 vs always-up, 0.35 vs 50%)."),
])
def test_direction_verdict(tests, expected):
    assert stats.direction_verdict(tests) == expected


def test_direction_verdict_from_a_forecast_table():
    # 200 days, up on every other one; the model is right on the first 130 days and wrong after
    n, right = 200, 130
    previous = np.full(n, 100.0)
    actual = np.where(np.arange(n) % 2 == 0, 101.0, 99.0)
    called_up = np.where(np.arange(n) < right, actual > previous, actual <= previous)
    table = pd.DataFrame({"actual": actual, "previous": previous, "model": np.where(called_up, 100.5, 99.5)})
    p = scipy_stats.binomtest(right, n, 0.5, alternative="greater").pvalue  # always-up is also 50% here
    assert stats.direction_verdict(stats.binomial_tests(table)) == (
        "The model called the direction significantly better than always-up and a coin: 65.0% of 200 moves right "
        f"vs always-up's 50.0% and a coin's 50% (binomial one-sided p = {p:.3g} vs always-up, {p:.3g} vs 50%).")


# -- trading vs buy-and-hold (Sharpe difference, block bootstrap) -----------------------------
def _results(model_return, model_sharpe, hold_return=-0.104, hold_sharpe=-0.34):
    return {"model": {"total_return": model_return, "sharpe": model_sharpe, "max_drawdown": -0.12},
            "buy_and_hold": {"total_return": hold_return, "sharpe": hold_sharpe, "max_drawdown": -0.25}}


@pytest.mark.parametrize("results, ci, expected", [
    (_results(0.35, 1.9), {"lo": 0.41, "hi": 4.12},
     "After costs the model's strategy beat buy-and-hold significantly: total return +35.0% vs -10.4%, "
     "Sharpe 1.90 vs -0.34, max drawdown -12.0% vs -25.0%; Sharpe difference 95% block-bootstrap CI "
     "[0.41, 4.12] excludes 0."),
    # the case found by hand: better on both counts, but the interval includes 0
    (_results(-0.025, -0.05), {"lo": -1.87, "hi": 2.34},
     "After costs the model's strategy did better than buy-and-hold, but not significantly: total return -2.5% "
     "vs -10.4%, Sharpe -0.05 vs -0.34, max drawdown -12.0% vs -25.0%; Sharpe difference 95% block-bootstrap CI "
     "[-1.87, 2.34] includes 0."),
    (_results(-0.025, -0.05), {"lo": None, "hi": None},
     "After costs the model's strategy did better than buy-and-hold, but not significantly: total return -2.5% "
     "vs -10.4%, Sharpe -0.05 vs -0.34, max drawdown -12.0% vs -25.0%; Sharpe difference CI undefined."),
    # a strategy that never traded (persistence's forecast never says "up") has no returns to bootstrap
    ({"model": {"total_return": 0.0, "sharpe": 0.0, "max_drawdown": 0.0, "n_trades": 0},
      "buy_and_hold": {"total_return": 4.568, "sharpe": 1.46, "max_drawdown": -0.32}}, {"lo": None, "hi": None},
     "After costs the model's strategy did NOT beat buy-and-hold: total return +0.0% vs +456.8%, Sharpe 0.00 vs "
     "1.46, max drawdown 0.0% vs -32.0%; it never traded, so its Sharpe difference has no CI."),
    (_results(-0.2, -0.8), {"lo": -2.9, "hi": 0.3},
     "After costs the model's strategy did NOT beat buy-and-hold: total return -20.0% vs -10.4%, Sharpe -0.80 "
     "vs -0.34, max drawdown -12.0% vs -25.0%; Sharpe difference 95% block-bootstrap CI [-2.90, 0.30]."),
    # a higher return with a lower Sharpe ratio is no win, whatever the interval
    (_results(0.1, -0.4), {"lo": 0.2, "hi": 1.1},
     "After costs the model's strategy did NOT beat buy-and-hold: total return +10.0% vs -10.4%, Sharpe -0.40 "
     "vs -0.34, max drawdown -12.0% vs -25.0%; Sharpe difference 95% block-bootstrap CI [0.20, 1.10]."),
])
def test_trading_verdict(results, ci, expected):
    assert trading.verdict(results, ci) == expected


# -- extra inputs vs the price-only model (Diebold-Mariano) -----------------------------------
@pytest.mark.parametrize("ratio, p_better, expected", [
    (0.8, 0.001, "Adding rsi14 improved accuracy significantly: RMSE 0.800x the price-only model's "
                 "(Diebold-Mariano one-sided p = 0.001)."),
    (0.99, 0.3, "Adding rsi14 lowered the RMSE to 0.990x the price-only model's, but not significantly "
                "(Diebold-Mariano one-sided p = 0.3): no evidence the extra inputs help."),
    (1.3, 0.999, "Adding rsi14 did NOT improve accuracy: RMSE 1.300x the price-only model's, significantly worse "
                 "(Diebold-Mariano one-sided p = 0.001 for the price-only model being better)."),
    (1.01, 0.6, "Adding rsi14 did NOT improve accuracy: RMSE 1.010x the price-only model's, a difference that is "
                "not significant (Diebold-Mariano one-sided p = 0.4 for the price-only model being better)."),
])
def test_extra_inputs_sentence(ratio, p_better, expected):
    assert sentence(["rsi14"], ratio, p_better) == expected


def test_extra_inputs_sentence_from_a_forecast_table():
    # the model with extras errs by a quarter of the price-only model's error every day
    actual = 100 + np.sin(np.arange(200))
    table = pd.DataFrame({"actual": actual, "model": actual + 0.25 * np.cos(np.arange(200)),
                          "price_only": actual + np.cos(np.arange(200))})
    c = compare(table, ["rsi14"], ["close"])
    assert c["rmse_ratio"] == pytest.approx(0.25) and c["dm_p_extras_better"] < 1e-10
    assert c["sentence"] == (f"Adding rsi14 improved accuracy significantly: RMSE 0.250x the price-only model's "
                             f"(Diebold-Mariano one-sided p = {c['dm_p_extras_better']:.3g}).")
    swapped = table.rename(columns={"model": "price_only", "price_only": "model"})
    c = compare(swapped, ["rsi14"], ["close"])
    assert c["sentence"] == (f"Adding rsi14 did NOT improve accuracy: RMSE 4.000x the price-only model's, "
                             f"significantly worse (Diebold-Mariano one-sided p = {1 - c['dm_p_extras_better']:.3g} "
                             "for the price-only model being better).")
