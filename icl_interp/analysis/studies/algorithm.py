"""The algorithm alone (no model): t-step preprocess-then-optimize against GD, ridge, Lasso and the oracle."""

from __future__ import annotations

from ...baselines.preprocess import power, rank_one
from ...core.checks import check_int
from ...core.tasks import SparseLinearRegression
from ...tools.evaluation import evaluate
from ._common import PathLike
from .risk import baseline_suite

#: the preprocessings PtO is tuned over, here and in the GD-step study (REFERENCE.md section 5's candidates)
PTO_CANDIDATES = ("reweight", power(0.5), power(2.0), rank_one(1.0))


def algorithm_study(
    *,
    dims: tuple = (8, 16),
    noises: tuple = (0.0, 0.5),
    s: int = 2,
    steps: int = 3,
    n_prompts: int = 1000,
    quick: bool = False,
    out: PathLike = None,
) -> dict:
    """Excess risk over n of t-step GD, t-step PtO, ridge, Lasso and the oracle, across d and noise (no model).

    PtO is tuned per n over :data:`PTO_CANDIDATES` and the step size; ``pto_choice``
    records which one won at each n. ``quick``: one setting, 100 test prompts.
    """
    if not isinstance(dims, (tuple, list)) or not dims or not isinstance(noises, (tuple, list)) or not noises:
        raise ValueError(f"dims and noises must be non-empty tuples, got dims={dims!r}, noises={noises!r}")
    s, steps = check_int("s", s, min_value=1), check_int("steps", steps, min_value=1)
    n_prompts = check_int("n_prompts", n_prompts, min_value=1)
    if quick:
        dims, noises, n_prompts = dims[:1], noises[-1:], 100
    settings = []
    for d in dims:
        for noise in noises:
            task = SparseLinearRegression(d=d, s=s, noise_std=noise)
            n_points = 2 * d + 1
            suite = baseline_suite(task, n_points, steps, quick=quick, pto_preprocessings=PTO_CANDIDATES)
            suite.pop("averaging")
            curves = {k: evaluate(est, task, n_points=n_points, n_prompts=n_prompts, seed=3).to_dict(per_prompt=False)
                      for k, est in suite.items()}
            pto = suite[f"PtO {steps} steps (best lr)"]
            settings.append({"d": d, "noise_std": noise, "s": s, "n_points": n_points, "curves": curves,
                             "pto_choice": [pto.chosen(k) for k in range(n_points)]})
    result = {"steps": steps, "settings": settings}
    if out is not None:
        from ..study_plots import plot_algorithm_study, save_figure

        result["figure"] = save_figure(plot_algorithm_study(result), out, "algorithm.png")
    return result
