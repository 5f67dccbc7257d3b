"""The quality bar on a noiseless task: no ratio to a baseline whose error is about zero, a sentence instead."""

import pytest

from icl_interp.analysis.claims import quality_bar
from icl_interp.analysis.claims._core import BEST_LASSO, BEST_RIDGE
from icl_interp.analysis.claims.quality import NEAR_ZERO_ERROR


def _risk(model, ridge, lasso, ols, floor=0.0):
    def curve(e):
        return {"error": e, "meta": {"noise_floor": floor}}
    return {"curves": {"m": curve(model), BEST_RIDGE: curve(ridge), BEST_LASSO: curve(lasso), "OLS": curve(ols)}}


def test_a_baseline_at_about_zero_error_gets_a_statement_not_a_ratio():
    # d = 2, a noiseless task: ridge and OLS exact from n = 2 on (errors of 1e-10), the model not
    ridge, lasso, ols = [1.0, 0.5, 1e-10, 1e-10], [1.0, 0.6, 0.2, 0.1], [1.0, 2.0, 1e-10, 1e-10]
    bar = quality_bar(_risk([1.0, 0.4, 0.05, 0.02], ridge, lasso, ols), "m", d=2)
    assert bar["ratio_to_best_ridge_at_largest_n"] is None and bar["ratio_to_best_lasso_at_largest_n"] == pytest.approx(0.2)
    assert not bar["within_ridge_ratio"] and bar["within_lasso_ratio"] and not bar["meets_bar"]
    (line,) = bar["statements"]
    assert "ridge (best alpha)'s error at n = 3 is about zero (1e-10" in line and "the model's error there is 0.02" in line
    exact = quality_bar(_risk([1.0, 0.4, 1e-9, 1e-9], ridge, lasso, ols), "m", d=2)   # a model exact there too meets it
    assert exact["within_ridge_ratio"] and "also about zero" in exact["statements"][0]


def test_ratios_and_excess_risk_on_a_noisy_task_are_as_before():
    bar = quality_bar(_risk([1.2, 0.5, 0.3, 0.25], [1.2, 0.6, 0.35, 0.3], [1.2, 0.55, 0.3, 0.22], [1.2, 3.0, 0.4, 0.33], floor=0.125), "m", d=2)
    assert bar["ratio_to_best_ridge_at_largest_n"] == pytest.approx(0.25 / 0.3) and bar["statements"] == []
    assert bar["excess_risk_at_largest_n"] == pytest.approx({"model": 0.125, "ridge": 0.175, "lasso": 0.095})
    assert NEAR_ZERO_ERROR * 1.2 < 0.22   # the threshold is far below any noisy baseline's error
