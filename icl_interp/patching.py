"""Activation patching for continuous ICL prompts.

Run the *corrupted* prompt with one activation (a site at a layer, position or
head) replaced by its value on the *clean* prompt, and score the predictions.
A patch at layer ``l`` restarts from the corrupted run's residual stream
entering block ``l``, so nothing below ``l`` is recomputed. A residual-stream
patch at position ``p`` (native 4.x blocks, no hook set) also skips positions
before ``p``: they keep their corrupted values, and enter through their cached
keys and values (``backend.fused_forward`` with a key/value cache).
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import Tensor

from . import backend
from ._checks import check_choice, check_int
from .hooks import HookFn, scoped_hooks
from .runner import Metric, as_model, call_metric, check_batch, default_metric, layer_inputs, residual_input, run_from
from .tasks import ICLBatch, SparseLinearRegression, Task

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

    def to_dict(self) -> dict:
        return {
            "site": self.site,
            "axes": list(self.axes),
            "scores": self.scores.tolist(),
            "clean_value": self.clean_value,
            "corrupted_value": self.corrupted_value,
            "metric": self.metric_name,
        }


def _slice_index(site: str, index: Sequence[int]) -> tuple:
    """The activation slice a patch replaces: ``[:, pos]`` or ``[:, :, head]`` or ``[:, pos, head]``."""
    if site in ("head", "head_pos"):
        head = index[1]
        return (slice(None), slice(None), head) if site == "head" or len(index) < 3 else (slice(None), index[2], head)
    return (slice(None), index[1]) if len(index) > 1 else (slice(None),)


def _patch_hook(clean_act: Tensor, sl: tuple) -> HookFn:
    def fn(x: Tensor) -> Tensor:
        x = x.clone()
        x[sl] = clean_act[sl].to(x.dtype)
        return x

    return fn


def _check_index(site: str, index: Any, n_layers: int, n_heads: int) -> tuple[int, ...]:
    if isinstance(index, int):
        index = (index,)
    if not isinstance(index, (tuple, list)) or not index:
        raise TypeError(f"index must be an int or a tuple like (layer, pos) / (layer, head), got {index!r}")
    need = {"head": (2,), "head_pos": (3,)}.get(site, (1, 2))
    if len(index) not in need:
        raise ValueError(f"index for site {site!r} must have {' or '.join(map(str, need))} entries, got {tuple(index)}")
    check_int("index[0] (layer)", index[0], min_value=0, max_value=n_layers - 1)
    if site in ("head", "head_pos"):
        check_int("index[1] (head)", index[1], min_value=0, max_value=n_heads - 1)
    return tuple(int(i) for i in index)


def _grab_all(model: Any, batch: ICLBatch, names: Sequence[str]) -> dict[str, Tensor]:
    store: dict[str, Tensor] = {}

    def grab(name: str) -> HookFn:
        def fn(x: Tensor) -> None:
            store[name] = x.detach()

        return fn

    run_from(model, residual_input(model, batch), 0, batch, [(n, grab(n)) for n in names])
    return store


@contextlib.contextmanager
def patched(model: Any, clean_cache: Any, site: str, index: Any) -> Iterator[Any]:
    """Inside the block, ``model`` runs with the activation at ``site``/``index`` taken from ``clean_cache``.

    ``clean_cache`` maps hook names to clean activations (``model.run_with_cache(clean)[1]``
    works); ``index`` is ``(layer[, pos])`` for residual/attn_out/mlp_out sites,
    ``(layer, head)`` for ``"head"``, ``(layer, head, pos)`` for ``"head_pos"``.
    """
    model = as_model(model)
    check_choice("site", site, list(SITES))
    idx = _check_index(site, index, model.hooked.cfg.n_layers, model.hooked.cfg.n_heads)
    name = SITES[site][0].format(idx[0])
    try:
        clean_act = clean_cache[name]
    except KeyError:
        raise ValueError(f"clean_cache has no activation {name!r}") from None
    with scoped_hooks(model.hooked, [(name, _patch_hook(clean_act, _slice_index(site, idx)))]):
        yield model


def patch_activations(
    model: Any,
    clean: ICLBatch,
    corrupted: ICLBatch,
    site: str = "resid_pre",
    metric: Optional[Metric] = None,
    *,
    layers: Optional[Sequence[int]] = None,
    per_position: bool = True,
) -> PatchResult:
    """Patch every index of ``site`` from ``clean`` into ``corrupted`` and score each run.

    Default score: the fraction of the clean-vs-corrupted error difference
    recovered, ``(E_corrupted - E_patched) / (E_corrupted - E_clean)``, with E the
    normalised error against the clean targets (1: fully restored, 0: no effect).
    With a custom ``metric(preds, clean)`` the scores are its raw values.
    ``per_position=False`` patches all positions at once for residual/attn/mlp sites.
    """
    model = as_model(model)
    clean = check_batch("clean", clean, model)
    corrupted = check_batch("corrupted", corrupted, model)
    if clean.xs.shape != corrupted.xs.shape:
        raise ValueError(f"clean and corrupted must have the same shape, got {tuple(clean.xs.shape)} and {tuple(corrupted.xs.shape)}")
    check_choice("site", site, list(SITES))
    n_layers, n_heads = model.hooked.cfg.n_layers, model.hooked.cfg.n_heads
    layer_list = list(range(n_layers)) if layers is None else [check_int("layers[i]", l, min_value=0, max_value=n_layers - 1) for l in layers]
    template, axes = SITES[site]
    user_metric = metric is not None
    metric = default_metric(model) if metric is None else metric

    with torch.no_grad():
        clean_preds = run_from(model, residual_input(model, clean), 0, clean)
        corr_resids = layer_inputs(model, residual_input(model, corrupted))
        corr_out = backend.unembed(model.hooked, corr_resids[-1])
        corr_preds = model.readout(corr_out, corrupted)
        names = [template.format(l) for l in layer_list]
        clean_acts = _grab_all(model, clean, names)
        missing = [n for n in names if n not in clean_acts]
        if missing:
            raise ValueError(f"site {site!r} has no activation {missing[0]!r} in this model (attn-only models have no resid_mid/mlp_out)")
        n_pos = clean_acts[names[0]].shape[1]
        if site == "head":
            grid = [range(n_heads)]
        elif site == "head_pos":
            grid = [range(n_heads), range(n_pos)]
        else:
            grid = [range(n_pos)] if per_position else []
        if not grid:
            axes = ("layer",)
        scores = torch.zeros(len(layer_list), *[len(g) for g in grid])
        # a residual patch at one position: earlier positions keep their corrupted values, so only the suffix runs
        kv = backend.keys_values(model.hooked, corr_resids[:-1]) if site in ("resid_pre", "resid_post") and grid else None
        for li, layer in enumerate(layer_list):
            name = names[li]
            for rest in itertools.product(*grid):
                if kv is not None:
                    pos, start = rest[0], layer + (site == "resid_post")
                    suffix = corr_resids[start][:, pos:].clone()
                    suffix[:, 0] = clean_acts[name][:, pos]
                    out = backend.fused_forward(model.hooked, suffix, start, kv, pos)
                    preds = model.readout(torch.cat([corr_out[:, :pos], out], 1), corrupted)
                else:
                    sl = _slice_index(site, (layer, *rest))
                    preds = run_from(model, corr_resids[layer], layer, corrupted, [(name, _patch_hook(clean_acts[name], sl))])
                scores[(li, *rest)] = call_metric(metric, preds, clean)
    clean_value = call_metric(metric, clean_preds, clean)
    corrupted_value = call_metric(metric, corr_preds, clean)
    if not user_metric:
        gap = corrupted_value - clean_value
        scores = (corrupted_value - scores) / gap if gap != 0 else torch.full_like(scores, float("nan"))
    return PatchResult(scores, axes, site, clean_value, corrupted_value, "custom" if user_metric else "fraction_recovered")


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
        w = task.sample(batch.batch_size, 1, generator=gen).w
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
