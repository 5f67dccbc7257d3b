"""Risk curves: the models' error over the number of in-context examples against the tuned baselines."""

from __future__ import annotations

from typing import Any

from ...baselines import estimators as bl
from ...baselines import tuning
from ...core.checks import check_int
from ...core.tasks import Task
from ...tools.evaluation import EvalResult, evaluate, ratio_interval
from ..claims._core import BEST_LASSO, BEST_RIDGE
from ._common import PathLike, per_prompt_list


def baseline_suite(
    task: Task, n_points: int, gd_steps: int, *, quick: bool = False, seed: int = 10_000, pto_preprocessings: tuple = ("reweight",)
) -> dict[str, Any]:
    """OLS, best ridge, best Lasso, best k-step GD and PtO, oracle OLS, averaging (tuned on held-out prompts).

    PtO is tuned over ``pto_preprocessings`` and the step size, per context length.
    """
    n_val = 200 if quick else 1000
    kw = dict(n_prompts=n_val, seed=seed)
    return {
        "OLS": bl.OLS(),
        BEST_RIDGE: tuning.best_ridge(task, n_points, **kw),
        BEST_LASSO: tuning.best_lasso(task, n_points, **kw),
        f"GD {gd_steps} steps (best lr)": tuning.best_gd(task, n_points, gd_steps, **kw),
        f"PtO {gd_steps} steps (best lr)": tuning.best_pto(task, n_points, gd_steps, pto_preprocessings, **kw),
        "oracle OLS": bl.OracleOLS(),
        "averaging": bl.Averaging(),
    }


def risk_study(
    models: dict[str, Any],
    task: Task,
    n_points: int,
    *,
    n_prompts: int = 2000,
    seed: int = 1,
    tuning_seed: int = 10_000,
    quick: bool = False,
    out: PathLike = None,
) -> dict:
    """Error and excess risk against the number of in-context examples, models and baselines.

    ``models`` maps a label to a model; the baselines' GD and PtO take as many steps
    as the deepest model has layers, tuned on prompts of ``tuning_seed``. ``per_prompt_last``: each model's per-prompt error at
    the largest n (every curve is on the same prompts, so paired). With ``out`` the figure is saved there too.
    """
    if not isinstance(models, dict):
        raise TypeError(f"models must be a dict label -> model, got {type(models).__name__}")
    if not isinstance(task, Task):
        raise TypeError(f"task must be a Task, got {type(task).__name__}")
    n_points, n_prompts = check_int("n_points", n_points, min_value=1), check_int("n_prompts", n_prompts, min_value=1)
    if quick:
        n_prompts = min(n_prompts, 200)
    gd_steps = max((m.cfg.n_layers for m in models.values() if hasattr(m, "cfg")), default=3)
    curves: dict[str, EvalResult] = {}
    for name, model in models.items():
        curves[name] = evaluate(model, task, n_points=n_points, n_prompts=n_prompts, seed=seed)
    for name, est in baseline_suite(task, n_points, gd_steps, quick=quick, seed=tuning_seed).items():
        curves[name] = evaluate(est, task, n_points=n_points, n_prompts=n_prompts, seed=seed)
    data = {"task": task.to_dict(), "n_points": n_points, "n_prompts": n_prompts, "seed": seed,
            "curves": {k: v.to_dict(per_prompt=False) for k, v in curves.items()},
            "ratio_intervals": _ratio_intervals(curves, list(models), seed),
            "per_prompt_last": {m: per_prompt_list(curves[m].per_prompt[:, -1]) for m in models}}
    if out is not None:
        from ..study_plots import plot_risk_study, save_figure

        data["figure"] = save_figure(plot_risk_study(data, highlight=list(models)), out, "risk_curves.png")
    return data


def _ratio_intervals(curves: dict[str, EvalResult], models: list[str], seed: int) -> dict[str, dict[str, list[float]]]:
    """Each model's error at the largest n over the best ridge's and the best Lasso's: 5-95% paired bootstrap intervals.

    The quality bar's ratios are means over a finite set of prompts; these say how far
    another draw of prompts could move them (the verdict itself stays on the ratio).
    """
    return {m: {b: list(ratio_interval(curves[m].per_prompt[:, -1], curves[b].per_prompt[:, -1], seed=seed))
                for b in (BEST_RIDGE, BEST_LASSO)} for m in models}


def head_count_summary(risk: dict, models: dict[str, Any]) -> dict[int, dict]:
    """Per head count (``model.cfg.n_heads``): the error at the largest n (``last``) and its mean over n = 1.. (``mean``),
    and, where ``risk`` has them, its per-prompt errors at the largest n (``per_prompt_last``).

    ``risk`` is a :func:`risk_study` result holding a curve for every label in ``models``.
    """
    curves = risk["curves"]
    missing = [k for k in models if k not in curves]
    if missing:
        raise ValueError(f"risk has no curves for models {missing}")
    summary = {}
    for name, model in models.items():
        error = curves[name]["error"]
        summary[model.cfg.n_heads] = {"last": error[-1], "mean": sum(error[1:]) / (len(error) - 1)}
        if name in risk.get("per_prompt_last", {}):
            summary[model.cfg.n_heads]["per_prompt_last"] = risk["per_prompt_last"][name]
    return summary
