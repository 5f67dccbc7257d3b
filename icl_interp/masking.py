"""Head masking: zero-, mean- or resample-ablate attention heads through ``hook_z``.

A mask is ``[n_layers, n_heads]`` with 1 = keep, 0 = ablate (fractions
interpolate). Masking a head replaces its slice of ``blocks.{l}.attn.hook_z``;
the output bias ``b_O`` is still added, as in TransformerLens.

A stack of K masks is evaluated without K full forwards: the clean residual
stream entering every layer is computed once, and each mask runs only the
blocks from its first masked layer on.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from . import backend
from ._checks import check_choice, check_int, check_tensor
from .hooks import HookFn, scoped_hooks
from .runner import as_model, check_batch, layer_inputs, residual_input, run_from
from .tasks import ICLBatch

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

    def __init__(self, model: Any, ablation: str, reference: Optional[ICLBatch], seed: int = 0):
        self.ablation = check_choice("ablation", ablation, ABLATIONS)
        self.z: dict[int, Tensor] = {}
        self.seed = check_int("seed", seed, min_value=0)
        if ablation == "zero":
            return
        if reference is None:
            raise ValueError(f"ablation={ablation!r} needs a reference batch (reference=ICLBatch)")
        check_batch("reference", reference, model)
        n_layers = model.hooked.cfg.n_layers
        zs: dict[int, Tensor] = {}
        hooks = [(f"blocks.{l}.attn.hook_z", _grab(zs, l)) for l in range(n_layers)]
        with torch.no_grad(), scoped_hooks(model.hooked, hooks):
            run_from(model, residual_input(model, reference), 0, reference)
        self.z = {l: (z.mean(0) if ablation == "mean" else z) for l, z in zs.items()}

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


def _grab(store: dict, key: Any) -> HookFn:
    def fn(x: Tensor) -> None:
        store[key] = x.detach()

    return fn


def _mask_hook(layer_mask: Tensor, stats: AblationStats, layer: int) -> HookFn:
    keep = layer_mask[None, None, :, None]  # [1, 1, H, 1] over [B, pos, H, d_head]

    def fn(z: Tensor) -> Tensor:
        repl = stats.replacement(layer, z)
        out = z * keep.to(z.dtype)
        return out if repl is None else out + (1 - keep.to(z.dtype)) * repl.to(z.dtype)

    return fn


def mask_hooks(mask: Float[Tensor, "layer head"], stats: AblationStats) -> list[tuple[str, HookFn]]:
    """``hook_z`` hooks applying ``mask`` (only for layers that mask something)."""
    return [(f"blocks.{l}.attn.hook_z", _mask_hook(mask[l], stats, l)) for l in range(mask.shape[0]) if bool((mask[l] < 1).any())]


def _first_masked_layer(mask: Tensor) -> int:
    rows = (mask < 1).any(-1).nonzero()
    return int(rows[0]) if len(rows) else mask.shape[0]


def mask_heads(
    model: Any,
    data: ICLBatch,
    mask: Float[Tensor, "... layer head"],
    ablation: str = "zero",
    reference: Optional[ICLBatch] = None,
    *,
    seed: int = 0,
) -> Tensor:
    """Predictions of ``model`` on ``data`` with heads masked.

    ``mask`` ``[L, H]`` gives ``[B, n]`` (``[B]`` for a query-only read-out); a stack
    ``[K, L, H]`` gives ``[K, B, n]``. Mean and resample ablation take their
    statistics from ``reference`` (default: ``data``); ``seed`` fixes resampling.
    """
    model = as_model(model)
    data = check_batch("data", data, model)
    n_layers, n_heads = model.hooked.cfg.n_layers, model.hooked.cfg.n_heads
    mask = check_mask(mask, n_layers, n_heads)
    stats = AblationStats(model, ablation, data if reference is None else reference, seed)
    single = mask.ndim == 2
    masks = mask.unsqueeze(0) if single else mask
    with torch.no_grad():
        out = torch.stack(_run_masks(model, data, masks, stats))
    return out[0] if single else out


def _run_masks(model: Any, data: ICLBatch, masks: Tensor, stats: AblationStats) -> list[Tensor]:
    """Predictions for each mask of a ``[K, L, H]`` stack, reusing the clean run below (and within) its first masked layer.

    Every layer's clean input and ``hook_z`` come from one forward. A mask whose
    first masked layer is ``l`` starts there: when the blocks allow it
    (``backend.split_attention``) and no other hook is active, layer ``l``'s
    attention is not rerun, its output is rebuilt from the masked clean z, and
    only its MLP half runs; otherwise the whole block ``l`` runs with a hook.
    """
    hooked = model.hooked
    n_layers = hooked.cfg.n_layers
    reuse = backend.split_attention(hooked) and not backend.has_user_hooks(hooked)
    zs: dict[int, Tensor] = {}
    with scoped_hooks(hooked, [(f"blocks.{l}.attn.hook_z", _grab(zs, l)) for l in range(n_layers)] if reuse else []):
        resids = layer_inputs(model, residual_input(model, data))
    outs = []
    for m in masks:
        start = _first_masked_layer(m)
        hooks = mask_hooks(m, stats)
        if not reuse or start == n_layers:
            outs.append(run_from(model, resids[start], start, data, hooks))
            continue
        z = _mask_hook(m[start], stats, start)(zs[start])
        resid_mid = resids[start] + backend.attn_out_from_z(hooked, start, z)
        resid = backend.run_mlp_half(hooked, start, resid_mid)
        outs.append(run_from(model, resid, start + 1, data, hooks[1:]))  # hooks[0] is layer start's, applied above
    return outs


@contextlib.contextmanager
def masked(
    model: Any,
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
    with scoped_hooks(model.hooked, mask_hooks(mask, stats)):
        yield model
