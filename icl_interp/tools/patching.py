"""Activation patching for continuous ICL prompts.

Run the *corrupted* prompt with one activation (a site at a layer, position or
head) replaced by its value on the *clean* prompt, and score the predictions.
One sweep engine (:func:`patch_activations`) over small patch setters: the site
says *where* (a hook name per layer) and which slice an index selects; the
intervention is always ``interventions.replace_slice``. A patch at layer ``l``
restarts from the corrupted clean run's residual entering block ``l``, so nothing
below ``l`` is recomputed; a head patch reuses layer ``l``'s attention as well (its output is rebuilt
from the patched ``hook_z``, ``runner.run_layer_with_z``) and runs the later blocks on the fast path; a residual-stream patch at position ``p`` also skips
positions before ``p`` where the fast path applies (``runner.run_suffix``).
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence, Union

import torch
from einops import rearrange
from torch import Tensor

from ..core.checks import check_choice, check_int, check_layer
from ..core.protocol import ToolModel, as_model, check_batch
from ..core.tasks import ICLBatch, SparseLinearRegression, Task
from .interventions import capture, replace_slice, scoped
from .runner import CleanRun, Metric, call_metric, default_metric, keys_values, prepare, run_from, run_layer_with_z, run_suffix

__all__ = ["PatchResult", "patch_activations", "patched", "corrupt_batch", "SITES"]

# site -> (hook name template, axes of the scores)
SITES: dict[str, tuple[str, tuple[str, ...]]] = {
    "resid_pre": ("blocks.{}.hook_resid_pre", ("layer", "pos")),
    "resid_mid": ("blocks.{}.hook_resid_mid", ("layer", "pos")),
    "resid_post": ("blocks.{}.hook_resid_post", ("layer", "pos")),
    "attn_out": ("blocks.{}.hook_attn_out", ("layer", "pos")),
    "mlp_out": ("blocks.{}.hook_mlp_out", ("layer", "pos")),
    "head": ("blocks.{}.attn.hook_z", ("layer", "head")),
    "head_pos": ("blocks.{}.attn.hook_z", ("layer", "head", "pos")),
}


@dataclass
class PatchResult:
    """``scores`` indexed by ``axes`` (e.g. ``("layer", "pos")``); the metric on clean and corrupted runs."""

    scores: Tensor
    axes: tuple[str, ...]
    site: str
    clean_value: float
    corrupted_value: float
    metric_name: str
    method: str = "exact"

    def to_dict(self) -> dict:
        return {
            "site": self.site,
            "axes": list(self.axes),
            "scores": self.scores.tolist(),
            "clean_value": self.clean_value,
            "corrupted_value": self.corrupted_value,
            "metric": self.metric_name,
            "method": self.method,
        }


def _slice_index(site: str, index: Sequence[int]) -> tuple:
    """The activation slice a patch replaces: ``[:, pos]`` or ``[:, :, head]`` or ``[:, pos, head]``."""
    if site in ("head", "head_pos"):
        head = index[1]
        return (slice(None), slice(None), head) if site == "head" or len(index) < 3 else (slice(None), index[2], head)
    return (slice(None), index[1]) if len(index) > 1 else (slice(None),)


def _check_index(site: str, index: Any, n_layers: int, n_heads: int, n_pos: Optional[int] = None) -> tuple[int, ...]:
    """``index`` for ``site``, every entry range-checked (positions against ``n_pos`` when known) before any forward."""
    if isinstance(index, int) and not isinstance(index, bool):
        index = (index,)
    if not isinstance(index, (tuple, list)) or not index:
        raise TypeError(f"index must be an int or a tuple like (layer, pos) / (layer, head), got {index!r}")
    need = {"head": (2,), "head_pos": (3,)}.get(site, (1, 2))
    if len(index) not in need:
        raise ValueError(f"index for site {site!r} must have {' or '.join(map(str, need))} entries, got {tuple(index)}")
    check_layer("index[0] (layer)", index[0], n_layers)
    if site in ("head", "head_pos"):
        check_int("index[1] (head)", index[1], min_value=0, max_value=n_heads - 1)
    pos_at = 2 if site == "head_pos" else 1
    if len(index) > pos_at:
        top = None if n_pos is None else n_pos - 1
        check_int(f"index[{pos_at}] (pos)", index[pos_at], min_value=0, max_value=top)
    return tuple(int(i) for i in index)


@contextlib.contextmanager
def patched(model: ToolModel, clean_cache: Any, site: str, index: Any) -> Iterator[Any]:
    """Inside the block, ``model`` runs with the activation at ``site``/``index`` taken from ``clean_cache``.

    ``clean_cache`` maps hook names to clean activations (``model.run_with_cache(clean)[1]``
    works); ``index`` is ``(layer[, pos])`` for residual/attn_out/mlp_out sites,
    ``(layer, head)`` for ``"head"``, ``(layer, head, pos)`` for ``"head_pos"``.
    """
    model = as_model(model)
    check_choice("site", site, list(SITES))
    cfg = model.hooked.cfg
    idx = _check_index(site, index, cfg.n_layers, cfg.n_heads)
    name = SITES[site][0].format(idx[0])
    try:
        clean_act = clean_cache[name]
    except KeyError:
        raise ValueError(f"clean_cache has no activation {name!r}") from None
    idx = _check_index(site, idx, cfg.n_layers, cfg.n_heads, n_pos=int(clean_act.shape[1]))
    with scoped(model.hooked, [(name, replace_slice(clean_act, _slice_index(site, idx)))]):
        yield model


def patch_activations(
    model: ToolModel,
    clean: Union[ICLBatch, CleanRun],
    corrupted: Union[ICLBatch, CleanRun],
    site: str = "resid_pre",
    metric: Optional[Metric] = None,
    *,
    layers: Optional[Sequence[int]] = None,
    per_position: bool = True,
    method: str = "exact",
) -> PatchResult:
    """Patch every index of ``site`` from ``clean`` into ``corrupted`` and score each run.

    Default score: the fraction of the clean-vs-corrupted error difference
    recovered, ``(E_corrupted - E_patched) / (E_corrupted - E_clean)``, with E the
    normalised error against the clean targets (1: fully restored, 0: no effect);
    a ValueError when the two errors are equal (the fraction is undefined).
    With a custom ``metric(preds, clean)`` the scores are its raw values.
    ``per_position=False`` patches all positions at once for residual/attn/mlp sites.
    ``clean`` and ``corrupted`` may be shared clean runs (``runner.prepare``).

    ``method="attribution"`` estimates every patch at once to first order (attribution
    patching, Nanda 2023): ``metric(corrupted) + (clean_act - corrupted_act) . grad``,
    the gradient of the metric taken on the corrupted run, so one backward replaces
    one forward per index (a custom metric must then return a differentiable tensor).
    """
    model = as_model(model)
    check_choice("site", site, list(SITES))
    check_choice("method", method, ("exact", "attribution"))
    n_layers, n_heads = model.hooked.cfg.n_layers, model.hooked.cfg.n_heads
    layer_list = list(range(n_layers)) if layers is None else [check_layer("layers[i]", l, n_layers) for l in layers]
    template, axes = SITES[site]
    user_metric = metric is not None
    metric = default_metric(model) if metric is None else metric
    clean_run, corr_run = prepare(model, clean, "clean"), prepare(model, corrupted, "corrupted")
    if clean_run.batch.xs.shape != corr_run.batch.xs.shape:
        raise ValueError(f"clean and corrupted must have the same shape, got {tuple(clean_run.batch.xs.shape)} and {tuple(corr_run.batch.xs.shape)}")
    clean_value = call_metric(metric, clean_run.preds, clean_run.batch, "patch_activations (the clean run)")
    corrupted_value = call_metric(metric, corr_run.preds, clean_run.batch, "patch_activations (the corrupted run)")
    gap = corrupted_value - clean_value
    if not user_metric and not abs(gap) > 1e-12 * max(1.0, abs(clean_value)):
        raise ValueError(
            f"clean and corrupted give the same error ({clean_value:.6g}): the fraction recovered is undefined. "
            "Corrupt the prompts so the predictions change (corrupt_batch), or pass metric= to get raw scores"
        )
    names = [template.format(l) for l in layer_list]
    with torch.no_grad():
        clean_acts = clean_run.acts(names)
        n_pos = clean_run.n_tokens
        if site == "head":
            grid = [range(n_heads)]
        elif site == "head_pos":
            grid = [range(n_heads), range(n_pos)]
        else:
            grid = [range(n_pos)] if per_position else []
        if not grid:
            axes = ("layer",)
        scores = torch.zeros(len(layer_list), *[len(g) for g in grid])
        if method == "attribution":
            scores = corrupted_value + _attribution(clean_acts, corr_run, names, site, bool(grid), metric, clean_run.batch)
        kv = keys_values(corr_run) if site in ("resid_pre", "resid_post") and grid and method == "exact" else None
        for li, layer in enumerate(layer_list if method == "exact" else []):
            name = names[li]
            for rest in itertools.product(*grid):
                preds = None
                if kv is not None:  # a residual patch at one position: only the suffix runs
                    preds = run_suffix(corr_run, layer + (site == "resid_post"), rest[0], clean_acts[name][:, rest[0]], kv)
                if preds is None:
                    write = replace_slice(clean_acts[name], _slice_index(site, (layer, *rest)))
                    tool = f"patch_activations (site {site!r})"
                    if site in ("head", "head_pos"):  # the layer's attention is the corrupted run's: only its output is rebuilt
                        resid = run_layer_with_z(model, layer, corr_run.resids[layer], corr_run.acts([name])[name], write)
                        preds = run_from(model, resid, layer + 1, corr_run.batch, tool=tool)  # no hook after it: the fast path
                    else:
                        preds = run_from(model, corr_run.resids[layer], layer, corr_run.batch, [(name, write)], tool=tool)
                scores[(li, *rest)] = call_metric(metric, preds, clean_run.batch, f"patch_activations ({name} at {rest})")
    if not user_metric:
        scores = (corrupted_value - scores) / gap
    return PatchResult(scores, axes, site, clean_value, corrupted_value, "custom" if user_metric else "fraction_recovered", method)


def _attribution(
    clean_acts: dict, corr_run: CleanRun, names: list[str], site: str, per_position: bool, metric: Metric, clean: ICLBatch
) -> Tensor:
    """First-order change of the metric for every patch of ``site``: ``[layer, *grid]`` (same axes as the exact sweep).

    One forward of the corrupted prompts with autograd on (every site captured on the
    path) and one backward; then ``(clean - corrupted) * grad`` summed over what a patch
    replaces together (the batch and features; all positions, or all of a head's positions).
    """
    model = corr_run.model
    store: dict[str, Tensor] = {}
    with torch.enable_grad():
        resid0 = corr_run.resids[0].detach().requires_grad_(True)
        preds = run_from(model, resid0, 0, corr_run.batch, [(n, capture(store, n, detach=False)) for n in names],
                         tool="patch_activations (method='attribution')")
        value = metric(preds, clean)
        if not isinstance(value, Tensor) or value.numel() != 1 or not value.requires_grad:
            raise ValueError("metric must return a differentiable scalar tensor for method='attribution'")
        grads = torch.autograd.grad(value.reshape(()), [store[n] for n in names])
    rows = []
    for name, grad in zip(names, grads):
        contrib = (clean_acts[name] - store[name].detach()) * grad  # [B, pos, d] or [B, pos, head, d_head]
        if site == "head":
            rows.append(contrib.sum((0, 1, 3)))
        elif site == "head_pos":
            rows.append(rearrange(contrib.sum((0, 3)), "pos head -> head pos"))
        else:
            rows.append(contrib.sum((0, 2)) if per_position else contrib.sum())
    return torch.stack(rows).detach().float().cpu()


def corrupt_batch(batch: ICLBatch, kind: str = "new_w", task: Optional[Task] = None, *, seed: int = 0) -> ICLBatch:
    """A corrupted copy of ``batch`` for patching: same xs, other labels.

    ``"new_w"``: ys from a fresh w drawn from ``task`` (noise kept); ``"shuffle_y"``:
    ys permuted within each prompt; ``"new_support"``: the same non-zero values of
    w moved to another random support (sparse tasks), ys recomputed.
    """
    check_batch("batch", batch)
    check_choice("kind", kind, ("new_w", "shuffle_y", "new_support"))
    gen = torch.Generator().manual_seed(check_int("seed", seed, min_value=0))
    noise = batch.ys - torch.einsum("bnd,bd->bn", batch.xs, batch.w)
    if kind == "shuffle_y":
        perm = torch.argsort(torch.rand(batch.ys.shape, generator=gen), dim=1)
        return ICLBatch(batch.xs, torch.gather(batch.ys, 1, perm), batch.w)
    if kind == "new_w":
        if not isinstance(task, Task):
            raise TypeError(f"kind='new_w' needs task (a Task), got {type(task).__name__}")
        if task.d != batch.d:
            raise ValueError(f"task d ({task.d}) does not match the batch's d ({batch.d})")
        w = task.sample(batch.batch_size, 1, generator=gen).w.to(batch.xs)
    else:
        if not (task is None or isinstance(task, SparseLinearRegression)):
            raise ValueError("kind='new_support' needs a sparse task (or task=None)")
        # coordinates outside the old support come first, so the new support differs where it can
        order = torch.argsort(torch.rand(batch.w.shape, generator=gen) + (batch.w != 0).float(), dim=1)
        w = torch.zeros_like(batch.w)
        for b in range(batch.batch_size):
            values = batch.w[b][batch.w[b] != 0]
            w[b, order[b, : len(values)]] = values
    return ICLBatch(batch.xs, torch.einsum("bnd,bd->bn", batch.xs, w) + noise, w)
