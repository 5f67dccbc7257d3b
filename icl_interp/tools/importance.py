"""Head importance (exact ablation or Michel et al.'s gradient score) and pruning by it."""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from jaxtyping import Float
from torch import Tensor

from ..core.checks import check_choice, check_int, check_tensor
from ..core.protocol import ToolModel, as_model
from ..core.tasks import ICLBatch
from .masking import AblationStats, mask_heads, mask_hooks
from .runner import CleanRun, Metric, call_metric, default_metric, model_norm, normalised_error, prepare, run_from

__all__ = ["head_importance", "prune_heads"]


def head_importance(
    model: ToolModel,
    data: Union[ICLBatch, CleanRun],
    method: str = "ablation",
    *,
    ablation: str = "zero",
    reference: Optional[ICLBatch] = None,
    metric: Optional[Metric] = None,
) -> Float[Tensor, "layer head"]:
    """Importance of every head, ``[n_layers, n_heads]`` (on the CPU, wherever the model runs).

    ``"ablation"``: increase of the metric (default: normalised error over all
    predicted positions) when the head alone is ablated. ``"gradient"``: Michel
    et al.'s score, the mean over prompts of |d loss_prompt / d mask_head| at
    mask = 1 (with a custom ``metric``: |d metric / d mask| on the whole batch).
    """
    model = as_model(model)
    check_choice("method", method, ("ablation", "gradient"))
    run = prepare(model, data)
    n_layers, n_heads = model.hooked.cfg.n_layers, model.hooked.cfg.n_heads
    if method == "ablation":
        metric = default_metric(model) if metric is None else metric
        masks = torch.ones(n_layers * n_heads, n_layers, n_heads)
        for i in range(n_layers * n_heads):
            masks[i, i // n_heads, i % n_heads] = 0.0
        preds = mask_heads(model, run, masks, ablation=ablation, reference=reference, tool="head_importance")
        scores = torch.tensor([call_metric(metric, p, run.batch, f"head_importance ({ablation}-ablating L{i // n_heads}H{i % n_heads})")
                               for i, p in enumerate(preds)])
        return (scores - call_metric(metric, run.preds, run.batch, "head_importance (the clean run)")).reshape(n_layers, n_heads)
    return _gradient_importance(run, ablation, reference, metric).cpu()


def _gradient_importance(run: CleanRun, ablation: str, reference: Union[ICLBatch, CleanRun, None], metric: Optional[Metric]) -> Tensor:
    score = mask_gradients(run, ablation, reference, metric).abs().mean(0)
    bad = (~torch.isfinite(score)).nonzero().tolist()
    if bad:
        raise ValueError("head_importance (method='gradient'): the gradient score is NaN or Inf at heads "
                         f"{', '.join(f'L{l}H{h}' for l, h in bad)} where the model's own output is finite")
    return score


def mask_gradients(run: CleanRun, ablation: str = "zero", reference: Union[ICLBatch, CleanRun, None] = None,
                   metric: Optional[Metric] = None) -> Tensor:
    """d error / d mask at mask = 1 for every head, per prompt ``[B, n_layers, n_heads]`` (one forward and one backward).

    The error is the normalised error of each prompt (with a custom ``metric``: the batch's, one row ``[1, L, H]``);
    the mask interpolates each head's z towards its ``ablation`` replacement. To first order, ablating a head alone
    changes prompt i's error by ``-grad[i, layer, head]`` (attribution patching of the ablation)."""
    model, data = run.model, run.batch
    n_layers, n_heads = model.hooked.cfg.n_layers, model.hooked.cfg.n_heads
    stats = AblationStats(model, ablation, run if reference is None else reference)
    per_prompt = metric is None
    rows = data.batch_size if per_prompt else 1
    mask = torch.ones(rows, n_layers, n_heads, requires_grad=True, device=run.resids[0].device)
    with torch.enable_grad():
        preds = run_from(model, run.resids[0].detach(), 0, data, mask_hooks(mask.permute(1, 0, 2), stats, every_layer=True),
                         tool="head_importance (method='gradient')")
        if per_prompt:
            loss = normalised_error(preds, data, model_norm(model), per_prompt=True).sum()
        else:
            loss = metric(preds, data)
            if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
                raise ValueError("metric must return a differentiable scalar tensor for method='gradient'")
        (grad,) = torch.autograd.grad(loss.reshape(()), mask)
    return grad


KeepSpec = Union[int, list, tuple, dict, None]


def _per_layer_keep(keep: KeepSpec, n_layers: int, n_heads: int) -> list[int]:
    def one(name: str, v: Any) -> int:
        if v == "all":
            return n_heads
        return check_int(name, v, min_value=0, max_value=n_heads)

    if isinstance(keep, bool):
        raise TypeError(f"keep must be an int, list or dict, got {keep!r}")
    if isinstance(keep, int):
        return [one("keep", keep)] * n_layers
    if isinstance(keep, (list, tuple)):
        if len(keep) != n_layers:
            raise ValueError(f"keep as a list must have one entry per layer ({n_layers}), got {len(keep)}")
        return [one(f"keep[{i}]", v) for i, v in enumerate(keep)]
    if isinstance(keep, dict):
        unknown = [k for k in keep if k != "rest" and not (isinstance(k, int) and 0 <= k < n_layers)]
        if unknown:
            raise ValueError(f"keep dict keys must be layer indices in [0, {n_layers - 1}] or 'rest', got {unknown}")
        missing = [l for l in range(n_layers) if l not in keep]
        if missing and "rest" not in keep:
            raise ValueError(f"keep dict gives no value for layers {missing}; add them or a 'rest' entry")
        return [one(f"keep[{l}]", keep.get(l, keep.get("rest"))) for l in range(n_layers)]
    raise TypeError(f"keep must be an int, list, or dict like {{0: 'all', 'rest': 1}}, got {type(keep).__name__}")


def prune_heads(
    importance: Float[Tensor, "layer head"],
    keep: KeepSpec = None,
    *,
    keep_total: Optional[int] = None,
) -> Float[Tensor, "layer head"]:
    """A 0/1 mask keeping the most important heads.

    ``keep``: an int k (top-k per layer), a list with an int or ``"all"`` per
    layer, or a dict such as ``{0: "all", "rest": 1}`` (the seed paper's policy);
    or ``keep_total``: a global budget of heads. Pruning is masking only.
    """
    check_tensor("importance", importance, ndim=2)
    n_layers, n_heads = importance.shape
    if (keep is None) == (keep_total is None):
        raise ValueError("give exactly one of keep (per layer) or keep_total (global budget)")
    mask = torch.zeros(n_layers, n_heads)
    if keep_total is not None:
        keep_total = check_int("keep_total", keep_total, min_value=0, max_value=n_layers * n_heads)
        order = torch.argsort(importance.reshape(-1), descending=True, stable=True)[:keep_total]
        mask.view(-1)[order] = 1.0
        return mask
    for layer, k in enumerate(_per_layer_keep(keep, n_layers, n_heads)):
        order = torch.argsort(importance[layer], descending=True, stable=True)[:k]
        mask[layer, order] = 1.0
    return mask
