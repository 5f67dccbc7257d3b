"""The quality bar of a trained model on a risk study: not a seed claim, the condition for testing them (issue 14)."""

from __future__ import annotations

from ._core import BEST_LASSO, BEST_RIDGE, QUALITY_BAR_LASSO_RATIO, QUALITY_BAR_RIDGE_RATIO, check_result

__all__ = ["quality_bar", "NEAR_ZERO_ERROR"]

#: a baseline's error below this fraction of the error without context (at n = 0: the task's scale) is "about zero": on a
#: noiseless task ridge and OLS are exact once n >= d, and a ratio to their error of about 1e-10 says nothing
NEAR_ZERO_ERROR = 1e-3


def quality_bar(risk: dict, model_name: str, d: int) -> dict:
    """The bar on a risk study (tuned baselines on held-out prompts): at the largest n at most
    ``QUALITY_BAR_RIDGE_RATIO`` x the best ridge's error and ``QUALITY_BAR_LASSO_RATIO`` x the best Lasso's; below the best
    ridge at every n >= d / 2; below OLS wherever 1 <= n < d. ``meets_bar`` holds when all four do.

    A baseline whose error at the largest n is about zero (:data:`NEAR_ZERO_ERROR`; a noiseless task) gets no ratio
    (None) but a sentence in ``statements``, and that part of the bar holds only when the model's error is about zero too.
    ``excess_risk_at_largest_n``: the errors less the task's noise floor (``noise_floor``), where the risk study records it.

    Where ``risk`` carries the paired bootstrap intervals of the two ratios (``ratio_intervals``,
    from :func:`~icl_interp.analysis.studies.risk_study`), they are added, with ``*_ratio_settled``: the
    whole 5-95% interval is on one side of its bar (otherwise another draw of prompts could
    flip that part). The verdict stays on the ratios themselves."""
    curves = check_result("risk", risk, ("curves",))["curves"]
    if model_name not in curves:
        raise ValueError(f"model_name {model_name!r} has no curve in risk; got {sorted(curves)}")
    model, lasso = curves[model_name]["error"], curves[BEST_LASSO]["error"]
    ridge, ols = curves[BEST_RIDGE]["error"], curves["OLS"]["error"]
    n_last = len(model) - 1
    zero = NEAR_ZERO_ERROR * max(ridge[0], lasso[0], model[0])  # "about zero" on this task's scale
    floor = curves[model_name].get("meta", {}).get("noise_floor")
    statements = []

    def ratio(base: float, label: str) -> float | None:
        if base > zero:
            return model[-1] / base
        statements.append(f"the {label}'s error at n = {n_last} is about zero ({base:.2g}, below {NEAR_ZERO_ERROR:g} of the error "
                          f"without context): no ratio to it; the model's error there is {model[-1]:.3g}"
                          + (" (also about zero)" if model[-1] <= zero else ""))
        return None

    over_ridge, over_lasso = ratio(ridge[-1], BEST_RIDGE), ratio(lasso[-1], BEST_LASSO)
    within = {k: (r <= limit if r is not None else model[-1] <= zero)
              for k, r, limit in (("ridge", over_ridge, QUALITY_BAR_RIDGE_RATIO), ("lasso", over_lasso, QUALITY_BAR_LASSO_RATIO))}
    below_ridge = [k for k in range(len(model)) if 2 * k >= d and model[k] >= ridge[k]]
    above_ols = [k for k in range(1, min(d, len(model))) if model[k] >= ols[k]]
    bar = {"n_largest": n_last, "ratio_to_best_ridge_at_largest_n": over_ridge, "ratio_to_best_lasso_at_largest_n": over_lasso,
           "within_ridge_ratio": within["ridge"], "within_lasso_ratio": within["lasso"],
           "below_ridge_for_all_n_ge_d_half": not below_ridge, "n_not_below_ridge": below_ridge,
           "below_ols_for_all_n_lt_d": not above_ols, "n_not_below_ols": above_ols,
           "per_n": [{"n": k, "model": model[k], "ridge": ridge[k], "lasso": lasso[k], "ols": ols[k]} for k in range(len(model))],
           "statements": statements}
    if floor is not None:  # the excess risk over the noise floor (the error no estimator can go below)
        bar["noise_floor"] = floor
        bar["excess_risk_at_largest_n"] = {"model": model[-1] - floor, "ridge": ridge[-1] - floor, "lasso": lasso[-1] - floor}
    interval = risk.get("ratio_intervals", {}).get(model_name)
    if interval is not None:
        for key, base, limit in (("ridge", BEST_RIDGE, QUALITY_BAR_RIDGE_RATIO), ("lasso", BEST_LASSO, QUALITY_BAR_LASSO_RATIO)):
            low, high = interval[base]
            bar[f"ratio_to_best_{key}_interval"] = [low, high]
            bar[f"{key}_ratio_settled"] = high <= limit or low > limit
    bar["meets_bar"] = all(bar[k] for k in ("within_ridge_ratio", "within_lasso_ratio", "below_ridge_for_all_n_ge_d_half",
                                            "below_ols_for_all_n_lt_d"))
    return bar
