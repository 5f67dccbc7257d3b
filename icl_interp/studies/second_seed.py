"""The second seed (Cui et al. 2024): one-layer softmax attention, single- against multi-head, loss ~ c / D + e."""

from __future__ import annotations

from typing import Any

import torch

from ..evaluation import evaluate
from ..tasks import Task
from ..validation import check_int
from ._common import PathLike


def fit_inverse_d(ds: list[int], losses: list[float]) -> tuple[float, float]:
    """Least-squares fit ``loss(D) = c / D + e``; returns (c, e)."""
    if len(ds) != len(losses) or len(ds) < 2:
        raise ValueError(f"ds and losses must be two lists of the same length >= 2, got {len(ds)} and {len(losses)}")
    a = torch.tensor([[1.0 / d, 1.0] for d in ds], dtype=torch.float64)
    sol = torch.linalg.lstsq(a, torch.tensor(losses, dtype=torch.float64).unsqueeze(1)).solution
    return float(sol[0]), float(sol[1])


def multihead_study(
    models: dict[str, Any],
    task: Task,
    *,
    d_min: int = 8,
    n_prompts: int = 2000,
    quick: bool = False,
    out: PathLike = None,
) -> dict:
    """Excess risk of each query-only model against the number of examples D, with fitted ``c / D + e``.

    ``models`` maps a label to a one-layer softmax-attention model (concatenated
    encoding); its ``cfg`` gives the embedding size p and the head count h. Each
    multi-head model is compared with the single-head one of the same p
    (``comparisons``: c multi / c single, and whether p/h >= d).
    """
    if not isinstance(models, dict) or not models:
        raise ValueError(f"models must be a non-empty dict label -> model, got {models!r}")
    if not isinstance(task, Task):
        raise TypeError(f"task must be a Task, got {type(task).__name__}")
    d_min = check_int("d_min", d_min, min_value=1)
    if quick:
        n_prompts = 200
    rows = {}
    for name, model in models.items():
        n_points = model.cfg.max_points
        res = evaluate(model, task, n_points=n_points, n_prompts=n_prompts, seed=5)
        ds = [int(k) for k in res.n_context.tolist() if k >= d_min]
        losses = [float(res.excess_risk[k]) for k in ds]
        c, e = fit_inverse_d(ds, losses)
        rows[name] = {"p": model.cfg.d_model, "h": model.cfg.n_heads, "p_over_h": model.cfg.d_model / model.cfg.n_heads,
                      "D": ds, "excess_risk": losses, "c": c, "e": e}
    result = {"task": task.to_dict(), "d": task.d, "models": rows}
    by_p: dict[int, dict[int, dict]] = {}
    for row in rows.values():
        by_p.setdefault(row["p"], {})[row["h"]] = row
    comparisons = []
    for p_, heads in sorted(by_p.items()):
        if 1 in heads:
            for h, row in sorted(heads.items()):
                if h > 1:
                    comparisons.append({"p": p_, "h": h, "p_over_h_ge_d": p_ / h >= task.d, "c_single": heads[1]["c"],
                                        "c_multi": row["c"], "c_multi_over_single": row["c"] / heads[1]["c"],
                                        "risk_at_max_D_single": heads[1]["excess_risk"][-1], "risk_at_max_D_multi": row["excess_risk"][-1]})
    result["comparisons"] = comparisons
    if out is not None:
        from ..study_plots import plot_multihead_study, save_figure

        result["figure"] = save_figure(plot_multihead_study(result), out, "multihead.png")
    return result
