"""The studies behind the six single-model claims, on one model's fresh prompts (the report's and the dynamics')."""

from __future__ import annotations

from typing import Any, Optional

import torch

from ...core.checks import check_int
from ...core.protocol import sample_for
from ...tools.evaluation import evaluate
from ...tools.masking import ABLATIONS
from ...tools.runner import prepare
from .heads import importance_study, pruning_study
from .mechanism import gd_study, preprocessing_study

__all__ = ["single_model_studies"]


def single_model_studies(model: Any, *, n_prompts: int = 2000, seed: int = 7, name: Optional[str] = None, risk_seed: int = 1,
                         tuning_seed: int = 20_000, ablations: tuple = ABLATIONS, single_head: Optional[Any] = None) -> dict:
    """``{"model", "error" (the error curve over n, prompts of ``risk_seed``), "importance", "pruning", "preprocessing",
    "gd"}`` of an ICLTransformer that knows its task, on ``n_prompts`` prompts sampled with ``seed`` (the GD study's tuned
    algorithms on ``tuning_seed``'s), the head studies under each kind in ``ablations``; ``claims.decide`` gives the claims.
    ``single_head``: a trained single-head model of the same task, compared in the pruning study (``multihead_beats_single``)."""
    if getattr(model, "task", None) is None or not hasattr(model, "cfg"):
        raise ValueError(f"model must be an ICLTransformer that knows its task, got {type(model).__name__}")
    other = getattr(single_head, "task", None)
    if single_head is not None and (other is None or other.to_dict() != model.task.to_dict()):
        raise ValueError(f"single_head must be a model of model's task {model.task.to_dict()}, got one of task "
                         f"{None if other is None else other.to_dict()}")
    n_prompts, seed = check_int("n_prompts", n_prompts, min_value=8), check_int("seed", seed, min_value=0)
    risk_seed = check_int("risk_seed", risk_seed, min_value=0)
    data = prepare(model, sample_for(model, n_prompts, seed=seed))
    curve = evaluate(model, model.task, n_points=model.cfg.max_points, n_prompts=n_prompts, seed=risk_seed)
    imp = importance_study(model, data, ablations=ablations)
    return {"model": name, "error": curve.error.tolist(), "importance": imp,
            "pruning": pruning_study(model, data, single_head=single_head, importance=torch.tensor(imp["ablation"]), ablations=ablations),
            "preprocessing": preprocessing_study(model, data), "gd": gd_study(model, data, tuning_seed=tuning_seed)}
