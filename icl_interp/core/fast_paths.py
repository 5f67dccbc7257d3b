"""The fast paths: the same function as the hooked core, without the hook machinery.

Three of them, all on a native transformer-lens 4.x bridge of a plain causal
architecture (``usable``), and only while nothing is listening (no hook on any
hook point, no torch forward hook or pre-hook on any module of the core):

- :func:`fused_forward`: every block on the bridge's own torch modules with fused
  attention (``F.scaled_dot_product_attention``; on CPU at short contexts, batched
  matrix products, which are faster there); with a key/value cache it runs only the
  positions from ``offset`` on (a causal model never lets later positions change
  earlier ones); with ``read`` the last block runs only the positions the caller reads
  (training reads the x tokens, or the query).
- :func:`keys_values`: the cache that :func:`fused_forward` reads.
- :func:`attn_out_from_z` / :func:`run_mlp_half`: a block in two halves, so a tool
  that changed one layer's ``hook_z`` rebuilds that layer's attention output and
  runs only its MLP half (any standard block on either line: :func:`split_attention`).

Only :mod:`icl_interp.tools.runner` (the tools' one door), the model's ``fast=True``
forward and the training step call these. The model checks its fused forward against
the hooked one when it is built; the runner's self-check verifies every path the tools use.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Optional

import torch
from einops import rearrange
from torch import Tensor

from .backend import is_bridge

__all__ = [
    "SELF_CHECK_RTOL",
    "relative_gap",
    "nothing_listening",
    "usable",
    "fused_forward",
    "native_forward",
    "keys_values",
    "split_attention",
    "attn_out_from_z",
    "run_mlp_half",
]


#: the largest difference, relative to the reference's scale, that a fast path may show against the hooked forward
SELF_CHECK_RTOL = 1e-5


def relative_gap(a: Tensor, b: Tensor) -> float:
    """Largest difference of ``a`` from the reference ``b``, relative to ``b``'s scale (what :data:`SELF_CHECK_RTOL` bounds)."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-6))


def nothing_listening(hooked: Any) -> bool:
    """True when no hook point carries a hook and no module of the core has a torch forward (pre-)hook.

    The fast paths skip hook points and module calls, so they may run only then: a
    hook a user put anywhere in the core (``blocks[0].mlp.register_forward_hook``)
    must fire, so its presence sends every forward down the hooked path.
    """
    if torch.nn.modules.module._global_forward_hooks or torch.nn.modules.module._global_forward_pre_hooks:
        return False
    for m in hooked.modules():
        if m._forward_hooks or m._forward_pre_hooks:
            if type(m).__name__ == "HookPoint":  # any hook on a hook point is a listener (ours or a user's)
                return False
            fns = list(m._forward_hooks.values()) + list(m._forward_pre_hooks.values())
            if not all(_wiring(fn) for fn in fns):
                return False
    return True


def _wiring(fn: Any) -> bool:
    """TransformerLens' own internal wiring on bridge modules (feeding hook points that are checked themselves)."""
    return getattr(fn, "__module__", "").startswith("transformer_lens.")


def _plain(module: Any) -> Any:
    """The torch module a bridge component wraps (the module itself if it wraps none)."""
    inner = getattr(module, "original_component", None)
    return module if inner is None else inner


def usable(hooked: Any) -> bool:
    """A native 4.x bridge of a plain causal softmax architecture: the fused paths compute its function."""
    if not is_bridge(hooked) or type(_plain(hooked.blocks[0])).__name__ != "NativeBlock":
        return False
    attn = _plain(_plain(hooked.blocks[0]).attn)
    return (
        getattr(attn, "rotary", None) is None
        and getattr(attn, "kv_repeats", 1) == 1
        and getattr(attn, "causal", False)
        and not (getattr(attn, "attn_scores_soft_cap", -1.0) or -1.0) > 0
        and not getattr(hooked, "_icl_linear_attention", False)
    )


def fused_forward(
    hooked: Any, resid: Tensor, start: int = 0, kv_cache: Optional[list] = None, offset: int = 0, read: Optional[slice] = None
) -> Optional[Tensor]:
    """The core's output from ``resid`` (entering block ``start``) on the native modules, or None.

    None unless :func:`usable` and :func:`nothing_listening` (then the caller runs
    the hooked blocks). With ``kv_cache`` (:func:`keys_values` of a run in which
    positions before ``offset`` are unchanged), ``resid`` holds positions
    ``offset..`` and the earlier ones enter through their cached keys and values.
    With ``read`` (a slice of ``resid``'s positions) the output holds only those
    positions: the last block computes its attention queries, MLP, final norm and
    unembedding there alone (earlier blocks need every position for later keys).
    """
    if not (usable(hooked) and nothing_listening(hooked)):
        return None
    return native_forward(hooked, resid, start, kv_cache, offset, read)


def keys_values(hooked: Any, resids: list[Tensor]) -> Optional[list]:
    """``[(k, v)]`` per layer ``[B, head, pos, d_head]`` from the residual entering each block, or None."""
    if not (usable(hooked) and nothing_listening(hooked)):
        return None
    n_heads = int(hooked.cfg.n_heads)
    out = []
    for layer, resid in zip(range(int(hooked.cfg.n_layers)), resids):
        block = _plain(hooked.blocks[layer])
        _, k, v = _attention_qkv(_plain(block.attn), _plain(block.ln1)(resid), n_heads)
        out.append((k, v))
    return out


def _attention_qkv(attn: Any, h: Tensor, n_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v ``[B, head, pos, d_head]`` from one matrix product (the three projections stacked).

    q comes pre-multiplied by the attention scale (folded into its weights, a
    ``[d_head*head, d_model]`` product instead of a pass over every score), so
    :func:`_attend` takes scores as they are.
    """
    lins = [_plain(lin) for lin in (attn.q, attn.k, attn.v)]
    scale = 1.0 / float(attn.scale)
    weight = torch.cat([lins[0].weight * scale, lins[1].weight, lins[2].weight])
    bias = None if any(lin.bias is None for lin in lins) else torch.cat([lins[0].bias * scale, lins[1].bias, lins[2].bias])
    qkv = _linear(h, weight, bias)
    return tuple(rearrange(t, "b p (n e) -> b n p e", n=n_heads) for t in qkv.split([lin.out_features for lin in lins], -1))


def _linear(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``F.linear``; on CPU as a product then an in-place bias add.

    CPU ``addmm`` first copies the broadcast bias into the whole output and then
    accumulates the product onto it; the product alone then one add is about 2% of a
    training step faster here. GPUs keep ``F.linear`` (their bias add is fused).
    """
    if x.device.type != "cpu":
        return torch.nn.functional.linear(x, weight, bias)
    out = torch.mm(x.reshape(-1, x.shape[-1]), weight.t())
    if bias is not None:
        out = out.add_(bias)
    return out.view(*x.shape[:-1], weight.shape[0])


def _module_linear(module: Any, x: Tensor) -> Tensor:
    """A bridge ``LinearBridge``'s ``nn.Linear`` applied through :func:`_linear` (any other module: called)."""
    lin = _plain(module)
    if type(lin) is not torch.nn.Linear:
        return lin(x)
    return _linear(x, lin.weight, lin.bias)


# Up to this many keys, attention on CPU runs as batched matrix products: for short
# contexts they are faster there than the fused kernel (forward + backward, one thread,
# 512 heads of 16: 3.5 against 6.2 ms at 31 keys, 16.4 against 17.6 ms at 63; at 81 keys
# the fused kernel wins, 9.7 against 13.0 ms for 256 heads); elsewhere the fused kernel.
_BMM_MAX_KEYS = 64


def _causal_mask(n_q: int, offset: int, read: Optional[tuple], n_k: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Additive mask ``[queries, keys]``: query i (absolute position offset + i, then ``read``) sees keys 0 .. its position.

    Built once per shape (cached), or inside a compiled graph where it is a constant.
    """
    if torch.compiler.is_compiling():
        return _build_mask(n_q, offset, read, n_k, device, dtype)
    return _cached_mask(n_q, offset, read, n_k, device, dtype)


def _build_mask(n_q: int, offset: int, read: Optional[tuple], n_k: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    pos = offset + torch.arange(n_q, device=device)
    if read is not None:
        pos = pos[slice(*read)]
    allowed = pos[:, None] >= torch.arange(n_k, device=device)
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))


_cached_mask = lru_cache(maxsize=32)(_build_mask)


def _attend(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Softmax attention ``[B, head, q, d_head]`` of pre-scaled ``q``; ``mask`` additive ``[q, k]``, None for the causal square."""
    if q.device.type == "cpu" and k.shape[-2] <= _BMM_MAX_KEYS:
        b, n, n_q, e = q.shape
        if mask is None:
            mask = _causal_mask(n_q, 0, None, n_q, q.device, q.dtype)
        # in place on the product's own output (bmm's backward does not read it): no copy of the mask first
        scores = torch.bmm(q.reshape(b * n, n_q, e), k.reshape(b * n, -1, e).transpose(1, 2)).add_(mask)
        return torch.bmm(scores.softmax(-1), v.reshape(b * n, -1, e)).view(b, n, n_q, e)
    fn = torch.nn.functional
    if mask is None:
        return fn.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)
    return fn.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)


def native_forward(
    hooked: Any, x: Tensor, start: int = 0, kv_cache: Optional[list] = None, offset: int = 0, read: Optional[slice] = None
) -> Tensor:
    """:func:`fused_forward` without its checks: the caller has checked :func:`usable` and :func:`nothing_listening`.

    Blocks ``start..`` then the final norm and unembedding, on the native modules (no hooks).
    """
    n_heads, n_layers = int(hooked.cfg.n_heads), int(hooked.cfg.n_layers)
    n_q = x.shape[1]
    n_k = n_q + (offset if kv_cache is not None else 0)
    read_key = None if read is None else read.indices(n_q)
    for layer in range(start, n_layers):
        block = _plain(hooked.blocks[layer])
        attn = _plain(block.attn)
        q, k, v = _attention_qkv(attn, _plain(block.ln1)(x), n_heads)
        if kv_cache is not None:
            k_prev, v_prev = kv_cache[layer]
            k, v = torch.cat([k_prev[:, :, :offset], k], 2), torch.cat([v_prev[:, :, :offset], v], 2)
        reading = read is not None and layer == n_layers - 1
        if reading:
            q, x = q[:, :, read], x[:, read]
        plain = kv_cache is None and not reading
        mask = None if plain else _causal_mask(n_q, n_k - n_q, read_key if reading else None, n_k, x.device, q.dtype)
        z = _attend(q, k, v, mask)
        x = x + _module_linear(attn.o, rearrange(z, "b n p e -> b p (n e)"))
        if not block.cfg.attn_only:
            mlp = _plain(block.mlp)
            mid = mlp.act(_module_linear(mlp.fc_in, _plain(block.ln2)(x)))
            if getattr(mlp, "ln", None) is not None:
                mid = _plain(mlp.ln)(mid)
            x = x + _module_linear(mlp.fc_out, mid)
    if read is not None and start >= n_layers:
        x = x[:, read]
    ln_final = getattr(hooked, "ln_final", None)
    if ln_final is not None:
        x = _plain(ln_final)(x)
    return _module_linear(hooked.unembed, x)


# -- a block in two halves: attention from hook_z, then the MLP half -----------------


def split_attention(hooked: Any) -> bool:
    """True when every block is ``resid_mid = resid_pre + z @ W_O + b_O`` then ``resid_mid + mlp(ln2(resid_mid))``.

    Parallel attention/MLP (GPT-J), post-norm and extra-norm blocks, ``use_attn_result``
    and bridges over Hugging Face modules answer False, and tools run whole blocks.
    """
    block = hooked.blocks[0]
    if is_bridge(hooked):
        return type(getattr(block, "original_component", None)).__name__ == "NativeBlock"
    c = hooked.cfg
    return (
        type(block).__name__ == "TransformerBlock"
        and not getattr(c, "parallel_attn_mlp", False)
        and not getattr(c, "use_normalization_before_and_after", False)
        and not getattr(c, "use_attn_result", False)
        and "OLMo" not in str(getattr(c, "original_architecture", ""))
    )


def attn_out_from_z(hooked: Any, layer: int, z: Tensor) -> Tensor:
    """Layer ``layer``'s attention output ``[..., pos, d_model]`` from ``z`` ``[..., pos, head, d_head]``."""
    attn = hooked.blocks[layer].attn
    if is_bridge(hooked):  # o: nn.Linear over heads concatenated as (head d_head)
        return torch.nn.functional.linear(rearrange(z, "... h e -> ... (h e)"), attn.o.weight, attn.o.bias)
    return torch.einsum("...phe,hem->...pm", z, attn.W_O) + attn.b_O


def run_mlp_half(hooked: Any, layer: int, resid_mid: Tensor) -> Tensor:
    """The rest of block ``layer`` from ``resid_mid``: its hook points from resid_mid on fire as in a forward."""
    block = hooked.blocks[layer]
    attn_only = bool(hooked.cfg.attn_only)
    if is_bridge(hooked):
        out = resid_mid if attn_only else resid_mid + block.mlp(block.ln2(resid_mid))
        return block.hook_out(out)
    if attn_only:
        return block.hook_resid_post(resid_mid)
    resid_mid = block.hook_resid_mid(resid_mid)
    mlp_in = block.hook_mlp_in(resid_mid.clone()) if hooked.cfg.use_hook_mlp_in else resid_mid
    if hasattr(block, "apply_mlp"):  # 3.9+: the MLP, any extra norm, and hook_mlp_out
        return block.hook_resid_post(resid_mid + block.apply_mlp(block.ln2(mlp_in)))
    return block.hook_resid_post(resid_mid + block.hook_mlp_out(block.mlp(block.ln2(mlp_in))))
