"""The quality bar of a trained model on a risk study: not a seed claim, the condition for testing them (issue 14)."""

from __future__ import annotations

from ._core import BEST_LASSO, BEST_RIDGE, QUALITY_BAR_LASSO_RATIO, QUALITY_BAR_RIDGE_RATIO, check_result

__all__ = ["quality_bar"]


def quality_bar(risk: dict, model_name: str, d: int) -> dict:
    """The bar on a risk study (tuned baselines on held-out prompts): at the largest n at most
    ``QUALITY_BAR_RIDGE_RATIO`` x the best ridge's error and ``QUALITY_BAR_LASSO_RATIO`` x the best Lasso's; below the best
    ridge at every n >= d / 2; below OLS wherever 1 <= n < d. ``meets_bar`` holds when all four do.

    Where ``risk`` carries the paired bootstrap intervals of the two ratios (``ratio_intervals``,
    from :func:`~icl_interp.studies.risk_curves`), they are added, with ``*_ratio_settled``: the
    whole 5-95% interval is on one side of its bar (otherwise another draw of prompts could
    flip that part). The verdict stays on the ratios themselves."""
    curves = check_result("risk", risk, ("curves",))["curves"]
    if model_name not in curves:
        raise ValueError(f"model_name {model_name!r} has no curve in risk; got {sorted(curves)}")
    model, lasso = curves[model_name]["error"], curves[BEST_LASSO]["error"]
    ridge, ols = curves[BEST_RIDGE]["error"], curves["OLS"]["error"]
    n_last = len(model) - 1
    over_ridge, over_lasso = model[-1] / ridge[-1], model[-1] / lasso[-1]
    below_ridge = [k for k in range(len(model)) if 2 * k >= d and model[k] >= ridge[k]]
    above_ols = [k for k in range(1, min(d, len(model))) if model[k] >= ols[k]]
    bar = {"n_largest": n_last, "ratio_to_best_ridge_at_largest_n": over_ridge, "ratio_to_best_lasso_at_largest_n": over_lasso,
           "within_ridge_ratio": over_ridge <= QUALITY_BAR_RIDGE_RATIO, "within_lasso_ratio": over_lasso <= QUALITY_BAR_LASSO_RATIO,
           "below_ridge_for_all_n_ge_d_half": not below_ridge, "n_not_below_ridge": below_ridge,
           "below_ols_for_all_n_lt_d": not above_ols, "n_not_below_ols": above_ols,
           "per_n": [{"n": k, "model": model[k], "ridge": ridge[k], "lasso": lasso[k], "ols": ols[k]} for k in range(len(model))]}
    interval = risk.get("ratio_intervals", {}).get(model_name)
    if interval is not None:
        for key, base, limit in (("ridge", BEST_RIDGE, QUALITY_BAR_RIDGE_RATIO), ("lasso", BEST_LASSO, QUALITY_BAR_LASSO_RATIO)):
            low, high = interval[base]
            bar[f"ratio_to_best_{key}_interval"] = [low, high]
            bar[f"{key}_ratio_settled"] = high <= limit or low > limit
    bar["meets_bar"] = all(bar[k] for k in ("within_ridge_ratio", "within_lasso_ratio", "below_ridge_for_all_n_ge_d_half",
                                            "below_ols_for_all_n_lt_d"))
    return bar
