"""Head masking: zero-, mean- or resample-ablate attention heads through ``hook_z``.

A mask is ``[n_layers, n_heads]`` with 1 = keep, 0 = ablate (fractions
interpolate). Masking a head replaces its slice of ``blocks.{l}.attn.hook_z``;
the output bias ``b_O`` is still added, as in TransformerLens.

A stack of K masks is evaluated without K full forwards: the clean run
(``runner.prepare``: the residual entering every layer and every layer's z) is
computed once, and each mask runs only the blocks from its first masked layer on.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional, Union

import torch
from jaxtyping import Float
from torch import Tensor

from ..core.checks import check_choice, check_int, check_tensor
from ..core.protocol import ToolModel, as_model
from ..core.tasks import ICLBatch
from .interventions import HookFn, mix_heads, scoped
from .runner import CleanRun, prepare, run_from, run_layer_with_z

__all__ = ["mask_heads", "masked", "check_mask", "AblationStats"]

ABLATIONS = ("zero", "mean", "resample")


def check_mask(mask: Any, n_layers: int, n_heads: int, *, stack: bool = True) -> Tensor:
    """A float mask ``[L, H]`` (or ``[K, L, H]`` when ``stack``) with values in [0, 1]."""
    if isinstance(mask, (list, tuple)):
        mask = torch.tensor(mask, dtype=torch.float32)
    check_tensor("mask", mask, ndim=(2, 3) if stack else 2, floating=False)
    if mask.shape[-2:] != (n_layers, n_heads):
        raise ValueError(f"mask must have shape [..., {n_layers}, {n_heads}] (n_layers, n_heads), got {tuple(mask.shape)}")
    mask = mask.float()
    if not bool(torch.isfinite(mask).all()) or bool((mask < 0).any()) or bool((mask > 1).any()):
        raise ValueError("mask values must lie in [0, 1] (1 keep, 0 ablate)")
    return mask


class AblationStats:
    """What replaces an ablated head's ``z``: zeros, the reference mean, or a resampled prompt's z."""

    def __init__(self, model: ToolModel, ablation: str, reference: Union[ICLBatch, CleanRun, None], seed: int = 0):
        self.ablation = check_choice("ablation", ablation, ABLATIONS)
        self.z: dict[int, Tensor] = {}
        self.seed = check_int("seed", seed, min_value=0)
        if ablation == "zero":
            return
        if reference is None:
            raise ValueError(f"ablation={ablation!r} needs a reference batch (reference=ICLBatch)")
        ref = prepare(model, reference, "reference")
        names = [f"blocks.{l}.attn.hook_z" for l in range(int(model.hooked.cfg.n_layers))]
        zs = ref.acts(names)
        self.z = {l: (zs[n].mean(0) if ablation == "mean" else zs[n]) for l, n in enumerate(names)}

    def replacement(self, layer: int, z: Tensor) -> Optional[Tensor]:
        """What z ``[B, pos, H, d_head]`` becomes for a fully ablated head (None: zeros)."""
        if self.ablation == "zero":
            return None
        ref = self.z[layer]
        if self.ablation == "mean":
            if ref.shape[0] != z.shape[1]:
                raise ValueError(f"mean ablation: the reference batch has {ref.shape[0]} positions, the data {z.shape[1]}")
            return ref.unsqueeze(0)
        if ref.shape[1] != z.shape[1]:
            raise ValueError(f"resample ablation: the reference batch has {ref.shape[1]} positions, the data {z.shape[1]}")
        gen = torch.Generator().manual_seed(self.seed + layer)
        idx = torch.randint(0, ref.shape[0], (z.shape[0],), generator=gen)
        return ref[idx]


def mask_hook(keep: Tensor, stats: AblationStats, layer: int) -> HookFn:
    """The ``hook_z`` write of one layer: keep ``[head]`` or ``[B, head]``, ablated heads take the stats' replacement."""
    return mix_heads(keep, lambda z: stats.replacement(layer, z))


def mask_hooks(mask: Tensor, stats: AblationStats, *, every_layer: bool = False) -> list[tuple[str, HookFn]]:
    """``hook_z`` hooks applying ``mask`` ``[L, H]`` (or per prompt ``[L, B, H]``), for the layers that mask
    something (``every_layer``: all, as the gradient score needs)."""
    return [(f"blocks.{l}.attn.hook_z", mask_hook(mask[l], stats, l)) for l in range(mask.shape[0])
            if every_layer or bool((mask[l] < 1).any())]


def _first_masked_layer(mask: Tensor) -> int:
    rows = (mask < 1).any(-1).nonzero()
    return int(rows[0]) if len(rows) else mask.shape[0]


def mask_heads(
    model: ToolModel,
    data: Union[ICLBatch, CleanRun],
    mask: Float[Tensor, "... layer head"],
    ablation: str = "zero",
    reference: Optional[ICLBatch] = None,
    *,
    seed: int = 0,
    tool: str = "mask_heads",
) -> Tensor:
    """Predictions of ``model`` on ``data`` with heads masked.

    ``data`` is a batch or a shared clean run (``runner.prepare``). ``mask`` ``[L, H]``
    gives ``[B, n]`` (``[B]`` for a query-only read-out); a stack ``[K, L, H]`` gives
    ``[K, B, n]``. Mean and resample ablation take their statistics from
    ``reference`` (default: ``data``); ``seed`` fixes resampling. Predictions that are
    NaN or Inf (the model's own are finite) raise a ValueError naming ``tool`` and the heads.
    """
    model = as_model(model)
    n_layers, n_heads = model.hooked.cfg.n_layers, model.hooked.cfg.n_heads
    mask = check_mask(mask, n_layers, n_heads)
    run = prepare(model, data)
    stats = AblationStats(model, ablation, run if reference is None else reference, seed)
    single = mask.ndim == 2
    masks = mask.unsqueeze(0) if single else mask
    with torch.no_grad():
        out = torch.stack([_run_mask(run, m, stats, tool) for m in masks])
    return out[0] if single else out


def _run_mask(run: CleanRun, mask: Tensor, stats: AblationStats, tool: str = "mask_heads") -> Tensor:
    """Predictions with ``mask``, reusing the clean run below (and within) its first masked layer.

    A mask whose first masked layer is ``l`` starts there, from the clean residual and
    the clean z of that layer (``runner.run_layer_with_z``: on standard blocks the
    attention is not rerun), then runs the later blocks with their masks hooked.
    """
    n_layers = int(run.model.hooked.cfg.n_layers)
    start = _first_masked_layer(mask)
    if start == n_layers:
        return run.preds
    hooks = mask_hooks(mask, stats)
    z = run.acts([f"blocks.{start}.attn.hook_z"])[f"blocks.{start}.attn.hook_z"]
    resid = run_layer_with_z(run.model, start, run.resids[start], z, hooks[0][1])
    heads = ", ".join(f"L{l}H{h}" for l, h in (mask < 1).nonzero().tolist())
    where = f"{tool} ({stats.ablation}-ablating heads {heads})"
    if not bool(torch.isfinite(resid).all()):
        raise ValueError(f"{where}: the residual after layer {start} is NaN or Inf where the model's own output is finite")
    return run_from(run.model, resid, start + 1, run.batch, hooks[1:], tool=where)  # hooks[0] is layer start's, applied above


@contextlib.contextmanager
def masked(
    model: ToolModel,
    mask: Float[Tensor, "layer head"],
    ablation: str = "zero",
    reference: Optional[ICLBatch] = None,
    *,
    seed: int = 0,
) -> Iterator[Any]:
    """Inside the block, every forward of ``model`` runs with ``mask`` applied; removed on exit.

    Mean and resample ablation need ``reference`` (their statistics' batch).
    """
    model = as_model(model)
    mask = check_mask(mask, model.hooked.cfg.n_layers, model.hooked.cfg.n_heads, stack=False)
    stats = AblationStats(model, ablation, reference, seed)
    with scoped(model.hooked, mask_hooks(mask, stats)):
        yield model
