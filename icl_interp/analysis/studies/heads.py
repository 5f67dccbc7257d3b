"""Which heads matter: ablation and gradient importance, pruning to the seed's mask, and the same across noise levels."""

from __future__ import annotations

from typing import Any, Optional

import torch

from ...core.checks import check_choice, check_int
from ...core.protocol import sample_for
from ...tools.importance import head_importance, mask_gradients, prune_heads
from ...tools.masking import ABLATIONS, mask_heads, masked
from ...tools.runner import model_norm, normalised_error, prepare
from ._common import PathLike, layer_risk, per_prompt_list

#: what mean and resample ablation draw on: the study's own prompts (their clean run), so no extra forward. Mean: a
#: head's z averaged over those prompts, per position; resample: its z on another of those prompts (seeded, per layer)
ABLATION_REFERENCE = "the study's own prompts (mean: per-position mean of the head's z over them; resample: its z on another of them)"


def _check_ablations(ablations: Any) -> tuple[str, ...]:
    if isinstance(ablations, str) or not isinstance(ablations, (tuple, list)) or not ablations:
        raise ValueError(f"ablations must be a non-empty tuple of ablation kinds from {ABLATIONS}, got {ablations!r}")
    return tuple(dict.fromkeys(check_choice("ablations[i]", a, ABLATIONS) for a in ablations))


def _headline(kinds: tuple[str, ...]) -> str:
    """The kind whose numbers the study's top-level keys hold: zero ablation where it ran (claims.HEADLINE_ABLATION)."""
    return "zero" if "zero" in kinds else kinds[0]


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.flatten().argsort().argsort().double()
    rb = b.flatten().argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def context_free_error(model: Any, run: Any, *, per_prompt: bool = False) -> Any:
    """The error (the model's metric, same positions) of the best prediction without the context: ``x . E[w]``.

    E[w] is the task's ``w_mean`` (zero when it has none, as in every shipped task), so
    this is the error of predicting 0: what a model that learnt nothing in context gets.
    ``per_prompt``: the ``[B]`` tensor of each prompt's error instead of their mean.
    """
    data = run.batch
    mean = getattr(getattr(model, "task", None), "w_mean", None)
    free = torch.zeros_like(data.ys) if mean is None else data.xs @ torch.as_tensor(mean, dtype=data.xs.dtype, device=data.xs.device)
    errs = normalised_error(free if run.preds.ndim == 2 else free[:, -1], data, model_norm(model), per_prompt=True)
    return errs if per_prompt else float(errs.mean())


#: ``importance_study``'s methods: exact single-head ablation, or its first-order estimate from the mask gradients
#: (one forward and one backward per kind) checked against exact ablation on sampled heads
IMPORTANCE_METHODS = ("exact", "gradient")


def importance_study(model: Any, data: Any, *, ablations: tuple = ABLATIONS, method: str = "exact", sample_heads: int = 8,
                     sample_seed: int = 0, out: PathLike = None) -> dict:
    """Ablation and gradient importance side by side, with the numbers the seed's two head claims are decided on.

    ``layer0_skill_share``: each layer-0 head's ablation importance over the model's
    *skill*, the context-free error (:func:`context_free_error`) minus the clean error:
    the share of what the model gained from the context that masking the head takes
    away (``layer0_relative_increase``: over the clean error, for reference);
    ``later_layers_top_head_share``: per later layer, the top head's share of the
    layer's positive ablation importance. These and ``ablation`` are zero ablation's.

    ``by_ablation``: per kind in ``ablations`` (zero, mean, resample; the reference of the
    last two: :data:`ABLATION_REFERENCE`) the importance ``[layers][heads]`` and each
    masked head's per-prompt errors (``per_prompt``, heads in layer-major order), from the
    one clean run; ``per_prompt`` holds the clean and context-free per-prompt errors. The
    claims bootstrap their intervals from these.

    ``method="gradient"`` (a model too large for the exact sweeps in its time, :mod:`icl_interp.analysis.report_plan`): each
    masked head's per-prompt error is its first-order estimate ``clean - d error / d mask`` (:func:`~icl_interp.tools.importance.mask_gradients`,
    one backward per kind), and each kind's ``agreement`` compares it with exact ablation on ``sample_heads`` heads drawn
    with ``sample_seed`` (Spearman rank correlation, the largest absolute difference, both importances).
    """
    kinds = _check_ablations(ablations)
    check_choice("method", method, IMPORTANCE_METHODS)
    sample_heads = check_int("sample_heads", sample_heads, min_value=2)
    sample_seed = check_int("sample_seed", sample_seed, min_value=0)
    run = prepare(model, data)  # one validation and one clean forward for every tool below
    batch, norm = run.batch, model_norm(model)
    n_layers, n_heads = int(run.model.hooked.cfg.n_layers), int(run.model.hooked.cfg.n_heads)
    masks = torch.ones(n_layers * n_heads, n_layers, n_heads)
    for i in range(n_layers * n_heads):
        masks[i, i // n_heads, i % n_heads] = 0.0
    clean_pp = normalised_error(run.preds, batch, norm, per_prompt=True)
    free_pp = context_free_error(model, run, per_prompt=True)
    per_prompt = {"clean": per_prompt_list(clean_pp), "context_free": per_prompt_list(free_pp)}
    clean, free = _mean(per_prompt["clean"]), _mean(per_prompt["context_free"])
    by = {}
    grads = {}
    sample = torch.randperm(n_layers * n_heads, generator=torch.Generator().manual_seed(sample_seed))[:sample_heads].sort().values
    for kind in kinds:  # every masked head from the clean run, the reference is that run too (no extra forward)
        if method == "exact":
            errs = [per_prompt_list(e) for e in normalised_error(mask_heads(model, run, masks, ablation=kind), batch, norm, per_prompt=True)]
        else:
            grads[kind] = mask_gradients(run, kind)
            estimate = clean_pp.double()[:, None] - grads[kind].reshape(batch.batch_size, -1).double()  # [B, L*H]
            errs = [per_prompt_list(e) for e in estimate.T]
        by[kind] = {"ablation": [[_mean(errs[l * n_heads + h]) - clean for h in range(n_heads)] for l in range(n_layers)],
                    "per_prompt": errs, "method": method}
        if method == "gradient":
            by[kind]["agreement"] = _agreement(model, run, masks[sample], kind, sample, [_mean(errs[i]) - clean for i in sample.tolist()],
                                               clean, n_heads)
    abl = torch.tensor(by[_headline(kinds)]["ablation"], dtype=torch.float64)
    # Michel et al.'s score: the mean |d error / d mask| under zero ablation (the exact run's own backward if it was taken)
    grad = grads["zero"].abs().mean(0) if "zero" in grads else head_importance(model, run, method="gradient")
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
        "spearman_ablation_vs_gradient": _spearman(abl, grad.double()),
        "n_prompts": batch.batch_size,
        "method": method,
        "headline_ablation": _headline(kinds),
        "ablation_reference": ABLATION_REFERENCE,
        "by_ablation": by,
        "per_prompt": per_prompt,
    }
    if out is not None:
        from ..study_plots import plot_importance_study, save_figure

        result["figure"] = save_figure(plot_importance_study(result), out, "head_importance.png")
    return result


def _agreement(model: Any, run: Any, masks: torch.Tensor, kind: str, heads: torch.Tensor, estimate: list, clean: float,
               n_heads: int) -> dict:
    """The first-order estimate against exact ablation on the sampled ``heads`` (flat indices; ``masks`` each ablates one)."""
    errs = normalised_error(mask_heads(model, run, masks, ablation=kind), run.batch, model_norm(model), per_prompt=True)
    exact = [_mean(per_prompt_list(e)) - clean for e in errs]
    est, ex = torch.tensor(estimate, dtype=torch.float64), torch.tensor(exact, dtype=torch.float64)
    return {"heads": [[i // n_heads, i % n_heads] for i in heads.tolist()], "exact": exact, "estimate": estimate,
            "spearman": _spearman(est, ex), "max_abs_diff": float((est - ex).abs().max()),
            "exact_range": float(ex.max() - ex.min())}


def _mean(values: list) -> float:
    return sum(values) / len(values)


def pruning_study(
    model: Any,
    data: Any,
    *,
    single_head: Optional[Any] = None,
    importance: Any = None,
    ablations: tuple = ABLATIONS,
    out: PathLike = None,
) -> dict:
    """All heads vs pruned (all of layer 0, the top head of each later layer) vs a single-head model.

    Errors over every predicted position (normalised) and the per-layer P-probing
    risk of each. The pruned model under each ablation kind in ``ablations``
    (``by_ablation``: its mask, by that kind's importance, its error and per-prompt
    errors); the top-level ``mask`` and ``error_pruned`` are zero ablation's.
    ``importance``: the ablation importance ``[layers, heads]`` (zero ablation's) or a
    dict kind -> importance (computed, zero ablation's, when not given); a kind without
    its own importance removes the heads the headline kind's importance prunes (no
    extra sweep: the noise levels' studies). ``per_prompt``: the full model's, the
    context-free and the single-head model's per-prompt errors.
    """
    kinds = _check_ablations(ablations)
    run = prepare(model, data)  # shared by every unmasked tool call below
    data = run.batch
    given = dict(importance) if isinstance(importance, dict) else ({} if importance is None else {"zero": importance})
    head_kind = _headline(kinds)
    if given.get(head_kind) is None:
        given[head_kind] = head_importance(model, run, ablation=head_kind)
    norm = model_norm(model)
    full_pp = per_prompt_list(normalised_error(run.preds, data, norm, per_prompt=True))
    full = _mean(full_pp)
    by = {}
    for kind in kinds:
        mask = prune_heads(torch.as_tensor(given.get(kind, given[head_kind])), keep={0: "all", "rest": 1})
        errs = per_prompt_list(normalised_error(mask_heads(model, run, mask, ablation=kind), data, norm, per_prompt=True))
        by[kind] = {"mask": mask.tolist(), "error_pruned": _mean(errs), "pruned_over_full": _mean(errs) / full, "per_prompt": errs}
    head = by[_headline(kinds)]
    result = {"mask": head["mask"], "error_full": full, "error_pruned": head["error_pruned"],
              "error_context_free": context_free_error(model, run),
              "pruned_over_full": head["pruned_over_full"], "probe_risk_full": layer_risk(model, run)[0],
              "n_prompts": data.batch_size, "headline_ablation": _headline(kinds), "ablation_reference": ABLATION_REFERENCE,
              "by_ablation": by, "per_prompt": {"full": full_pp, "context_free": per_prompt_list(context_free_error(model, run, per_prompt=True))}}
    with masked(model, torch.tensor(head["mask"])):  # another function of the inputs: a fresh run, not the clean one
        result["probe_risk_pruned"] = layer_risk(model, data)[0]
    if single_head is not None:
        with torch.no_grad():
            single_pp = per_prompt_list(normalised_error(single_head(data), data, norm, per_prompt=True))
        result["error_single_head"] = _mean(single_pp)
        result["per_prompt"]["single_head"] = single_pp
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
    ablations: tuple = ABLATIONS,
    out: PathLike = None,
) -> dict:
    """The seed's Fig 5 across noise levels: all heads vs pruned vs a trained single-head model.

    ``pairs`` maps a noise level to (all-heads model, single-head model or None),
    each trained at that noise; each pair is tested on fresh prompts of its task
    (``n_prompts``, ``seed``) under each kind in ``ablations``. ``known``: :func:`pruning_study`
    results already computed on those same prompts, by noise level (not computed again).
    """
    if not isinstance(pairs, dict) or not pairs:
        raise ValueError(f"pairs must be a non-empty dict noise level -> (model, single-head model or None), got {pairs!r}")
    n_prompts = check_int("n_prompts", n_prompts, min_value=1)
    if quick:
        n_prompts = min(n_prompts, 256)
    keep = ("mask", "error_full", "error_pruned", "pruned_over_full", "error_single_head",
            "probe_risk_full", "probe_risk_pruned", "probe_risk_single_head", "by_ablation", "per_prompt")
    levels = {}
    for sigma, (model, single) in sorted(pairs.items()):
        r = (known or {}).get(sigma)
        if r is None:
            r = pruning_study(model, sample_for(model, n_prompts, seed=seed), single_head=single, ablations=ablations)
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
