"""Which heads matter: ablation and gradient importance, pruning to the seed's mask, and the same across noise levels."""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..importance import head_importance, prune_heads
from ..masking import mask_heads, masked
from ..runner import default_metric, model_norm, normalised_error, prepare
from ..validation import check_int
from ._common import PathLike, layer_risk


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.flatten().argsort().argsort().double()
    rb = b.flatten().argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def context_free_error(model: Any, run: Any) -> float:
    """The error (the model's metric, same positions) of the best prediction without the context: ``x . E[w]``.

    E[w] is the task's ``w_mean`` (zero when it has none, as in every shipped task), so
    this is the error of predicting 0: what a model that learnt nothing in context gets.
    """
    data = run.batch
    mean = getattr(getattr(model, "task", None), "w_mean", None)
    free = torch.zeros_like(data.ys) if mean is None else data.xs @ torch.as_tensor(mean, dtype=data.xs.dtype, device=data.xs.device)
    return float(default_metric(model)(free if run.preds.ndim == 2 else free[:, -1], data))


def importance_study(model: Any, data: Any, *, out: PathLike = None) -> dict:
    """Ablation and gradient importance side by side, with the numbers the seed's two head claims are decided on.

    ``layer0_skill_share``: each layer-0 head's ablation importance over the model's
    *skill*, the context-free error (:func:`context_free_error`) minus the clean error:
    the share of what the model gained from the context that masking the head takes
    away (``layer0_relative_increase``: over the clean error, for reference);
    ``later_layers_top_head_share``: per later layer, the top head's share of the
    layer's positive ablation importance.
    """
    run = prepare(model, data)  # one validation and one clean forward for every tool below
    abl = head_importance(model, run, method="ablation")
    grad = head_importance(model, run, method="gradient")
    clean = float(default_metric(model)(run.preds, run.batch))
    free = context_free_error(model, run)
    later = abl[1:].clamp(min=0)
    shares = (later.max(1).values / later.sum(1).clamp(min=1e-12)).tolist() if abl.shape[0] > 1 else []
    result = {
        "clean_error": clean,
        "context_free_error": free,
        "skill": free - clean,
        "layer0_skill_share": [v / (free - clean) for v in abl[0].tolist()] if free > clean else None,
        "ablation": abl.tolist(),
        "gradient": grad.tolist(),
        "layer0_relative_increase": [v / clean for v in abl[0].tolist()],
        "layer0_min_increase": float(abl[0].min()),
        "later_layers_top_head_share": shares,
        "spearman_ablation_vs_gradient": _spearman(abl, grad),
    }
    if out is not None:
        from ..study_plots import plot_importance_study, save_figure

        result["figure"] = save_figure(plot_importance_study(result), out, "head_importance.png")
    return result


def pruning_study(
    model: Any,
    data: Any,
    *,
    single_head: Optional[Any] = None,
    importance: Optional[torch.Tensor] = None,
    out: PathLike = None,
) -> dict:
    """All heads vs pruned (all of layer 0, the top head of each later layer) vs a single-head model.

    Errors over every predicted position (normalised) and the per-layer P-probing
    risk of each; ``importance`` (ablation, ``[layers, heads]``) is computed when not given.
    """
    run = prepare(model, data)  # shared by every unmasked tool call below
    data = run.batch
    imp = head_importance(model, run) if importance is None else importance
    mask = prune_heads(imp, keep={0: "all", "rest": 1})
    norm = model_norm(model)
    full = normalised_error(run.preds, data, norm)
    pruned = normalised_error(mask_heads(model, run, mask), data, norm)
    result = {"mask": mask.tolist(), "error_full": float(full), "error_pruned": float(pruned),
              "error_context_free": context_free_error(model, run),
              "pruned_over_full": float(pruned / full), "probe_risk_full": layer_risk(model, run)[0]}
    with masked(model, mask):  # another function of the inputs: a fresh run, not the clean one
        result["probe_risk_pruned"] = layer_risk(model, data)[0]
    if single_head is not None:
        with torch.no_grad():
            result["error_single_head"] = float(normalised_error(single_head(data), data, norm))
        result["probe_risk_single_head"] = layer_risk(single_head, data)[0]
    if out is not None:
        from ..study_plots import plot_pruning_study, save_figure

        result["figure"] = save_figure(plot_pruning_study(result), out, "pruning_probing.png")
    return result


def _train_steps(model: Any) -> Optional[int]:
    """Training steps recorded in a loaded model's config (None if it does not say)."""
    return getattr(model, "saved_config", {}).get("training", {}).get("train_config", {}).get("steps")


def noise_pruning_study(
    pairs: dict[float, tuple[Any, Optional[Any]]],
    *,
    n_prompts: int = 2000,
    seed: int = 7,
    quick: bool = False,
    known: Optional[dict[float, dict]] = None,
    out: PathLike = None,
) -> dict:
    """The seed's Fig 5 across noise levels: all heads vs pruned vs a trained single-head model.

    ``pairs`` maps a noise level to (all-heads model, single-head model or None),
    each trained at that noise; each pair is tested on fresh prompts of its task
    (``n_prompts``, ``seed``). ``known``: :func:`pruning_study` results already
    computed on those same prompts, by noise level (not computed again).
    """
    if not isinstance(pairs, dict) or not pairs:
        raise ValueError(f"pairs must be a non-empty dict noise level -> (model, single-head model or None), got {pairs!r}")
    n_prompts = check_int("n_prompts", n_prompts, min_value=1)
    if quick:
        n_prompts = min(n_prompts, 256)
    keep = ("mask", "error_full", "error_pruned", "pruned_over_full", "error_single_head",
            "probe_risk_full", "probe_risk_pruned", "probe_risk_single_head")
    levels = {}
    for sigma, (model, single) in sorted(pairs.items()):
        r = (known or {}).get(sigma)
        if r is None:
            r = pruning_study(model, model.task.sample(n_prompts, model.cfg.max_points, seed=seed), single_head=single)
        row = {k: r[k] for k in keep if k in r}
        row["noise_floor"] = float(sigma) ** 2 / model_norm(model)
        row["train_steps"] = _train_steps(model)
        if "error_single_head" in r:
            row["single_over_full"] = r["error_single_head"] / r["error_full"]
        levels[f"{sigma:g}"] = row
    result = {"n_prompts": n_prompts, "seed": seed, "levels": levels}
    if out is not None:
        from ..study_plots import plot_noise_pruning_study, save_figure

        result["figure"] = save_figure(plot_noise_pruning_study(result), out, "pruning_noise.png")
    return result
