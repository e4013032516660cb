"""Split-conformal quantiles by hand, and measured coverage on exchangeable residuals."""

import math

import numpy as np
import pandas as pd
import pytest

from coincast.evaluation import conformal


def test_quantile_rank_by_hand():
    s = np.array([0.5, 0.1, 0.4, 0.2, 0.3, 0.9, 0.7, 0.8, 0.6])  # n = 9
    assert conformal.quantile(s, 0.8) == pytest.approx(0.8)  # ceil(10 * 0.8) = 8th smallest
    assert conformal.quantile(s, 0.5) == pytest.approx(0.5)  # ceil(5) = 5th
    assert math.isinf(conformal.quantile(s, 0.95))  # ceil(9.5) = 10 > n: unbounded


def test_coverage_is_near_nominal_on_exchangeable_errors():
    rng = np.random.default_rng(0)
    prev = np.full(5000, 100.0)
    cal = conformal.scores(100 + rng.standard_t(3, 4000), 100.0, 100.0)
    q = pd.DataFrame({lv: [conformal.quantile(cal, lv)] * 5000 for lv in conformal.LEVELS})
    t = pd.DataFrame({"actual": prev + rng.standard_t(3, 5000), "model": prev, "previous": prev})
    t = conformal.add_intervals(t, q)
    cov = conformal.coverage(t)
    assert cov["80%"]["coverage"] == pytest.approx(0.8, abs=0.03)
    assert cov["95%"]["coverage"] == pytest.approx(0.95, abs=0.02)
    assert (t["hi95"] >= t["hi80"]).all() and (t["lo95"] <= t["lo80"]).all()
