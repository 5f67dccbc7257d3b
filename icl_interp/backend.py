"""The only module that knows transformer-lens 3.x from 4.x.

It builds the hooked core (``HookedTransformer`` on 3.x,
``TransformerBridge.boot_native`` on 4.x), runs a range of its blocks from a
residual stream, applies its final norm and unembedding, and maps weights to
and from one canonical on-disk layout: HookedTransformer's parameter names and
shapes (``blocks.{l}.attn.W_Q [head, d_model, d_head]`` ...), which both lines
can load.

TransformerLens itself is imported lazily, so tasks, baselines and probes on
given activations do not pay its 5-7 s import.
"""

from __future__ import annotations

import contextlib
import re
from functools import lru_cache
from importlib import metadata
from typing import Any, Iterator, Optional

import torch
from einops import rearrange
from torch import Tensor

__all__ = [
    "tl_major",
    "is_bridge",
    "build_core",
    "run_blocks",
    "unembed",
    "canonical_state_dict",
    "load_canonical_state_dict",
    "core_dims",
    "split_attention",
    "attn_out_from_z",
    "run_mlp_half",
    "has_user_hooks",
    "fused_forward",
    "keys_values",
]


@lru_cache(maxsize=1)
def tl_major() -> int:
    """Major version of the installed transformer-lens (3 or 4)."""
    return int(metadata.version("transformer-lens").split(".")[0])


def is_bridge(hooked: Any) -> bool:
    """True for a 4.x ``TransformerBridge`` (blocks return tuples, weights are nn.Linear)."""
    return type(hooked).__name__ == "TransformerBridge" or hasattr(hooked, "original_model")


def core_dims(hooked: Any) -> tuple[int, int, int, int]:
    """(n_layers, n_heads, d_model, d_head) of any TransformerLens hooked model."""
    c = hooked.cfg
    return int(c.n_layers), int(c.n_heads), int(c.d_model), int(c.d_head)


def _tl_kwargs(cfg: Any) -> dict:
    """TransformerLens config fields shared by both lines, from a ModelConfig."""
    return dict(
        d_model=cfg.d_model,
        d_head=cfg.d_head,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        n_ctx=cfg.n_ctx,
        d_vocab=1,
        d_vocab_out=1,
        d_mlp=None if cfg.attn_only else cfg.d_mlp,
        act_fn=cfg.act_fn,
        normalization_type=cfg.normalization,
        attn_only=cfg.attn_only,
        seed=cfg.seed,
    )


def build_core(cfg: Any) -> torch.nn.Module:
    """A randomly initialised hooked transformer for ``cfg`` (a ModelConfig), in eval mode.

    Never calls ``enable_compatibility_mode``: with one output its weight
    processing centres W_U to zero (REFERENCE.md section 6).
    """
    kwargs = _tl_kwargs(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if tl_major() >= 4:
            from transformer_lens.config import TransformerBridgeConfig
            from transformer_lens.model_bridge import TransformerBridge

            core = TransformerBridge.boot_native(TransformerBridgeConfig(**kwargs))
        else:
            import warnings

            from transformer_lens import HookedTransformer, HookedTransformerConfig

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                core = HookedTransformer(HookedTransformerConfig(**kwargs))
    return core.eval()


def run_blocks(hooked: Any, resid: Tensor, start: int, stop: int) -> Tensor:
    """Run blocks ``start .. stop-1`` on the residual stream entering block ``start``.

    Hook points inside those blocks fire as in a full forward; earlier blocks
    are not run at all (the bridge's ``start_at_layer`` would still run them).
    """
    for block in hooked.blocks[start:stop]:
        out = block(resid)
        resid = out[0] if isinstance(out, tuple) else out
    return resid


def unembed(hooked: Any, resid: Tensor) -> Tensor:
    """Final norm and unembedding: the residual after the last block to the output."""
    ln = getattr(hooked, "ln_final", None)
    if ln is not None:
        resid = ln(resid)
    return hooked.unembed(resid)


# -- a block in two halves: attention from hook_z, then the MLP half -----------------


def split_attention(hooked: Any) -> bool:
    """True when every block is ``resid_mid = resid_pre + z @ W_O + b_O`` then ``resid_mid + mlp(ln2(resid_mid))``.

    Then a tool that changes one layer's ``hook_z`` can rebuild that layer's
    attention output from z (:func:`attn_out_from_z`) and run only the MLP half
    (:func:`run_mlp_half`) instead of the whole block. Parallel attention/MLP
    (GPT-J), post-norm and extra-norm blocks, and bridges over Hugging Face
    modules answer False, and tools take the plain path.
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


def has_user_hooks(hooked: Any) -> bool:
    """True when any hook point of ``hooked`` carries a hook (a user's, or TransformerLens' own)."""
    return any(len(point._forward_hooks) or len(point._forward_pre_hooks) for point in hooked.hook_dict.values())


# -- training: the same function without the hook machinery -------------------------


def _plain(module: Any) -> Any:
    """The torch module a bridge component wraps (the module itself if it wraps none)."""
    inner = getattr(module, "original_component", None)
    return module if inner is None else inner


def _fusable(hooked: Any) -> bool:
    if not is_bridge(hooked) or type(_plain(hooked.blocks[0])).__name__ != "NativeBlock":
        return False
    attn = _plain(_plain(hooked.blocks[0]).attn)
    return (
        getattr(attn, "rotary", None) is None
        and getattr(attn, "kv_repeats", 1) == 1
        and getattr(attn, "causal", False)
        and not (getattr(attn, "attn_scores_soft_cap", -1.0) or -1.0) > 0
    )


def _native_ok(hooked: Any) -> bool:
    """A native 4.x bridge of a plain causal architecture with no hook set: the hook-free paths apply."""
    return _fusable(hooked) and not has_user_hooks(hooked)


def fused_forward(
    hooked: Any, resid: Tensor, start: int = 0, kv_cache: Optional[list] = None, offset: int = 0
) -> Optional[Tensor]:
    """The core's output from ``resid`` (entering block ``start``) through the native bridge's own torch modules, or None.

    The same parameters and the same function as the bridge's forward (to float
    rounding), but no hook points, no bridge wrappers, and fused attention
    (``F.scaled_dot_product_attention``): what training runs when no hook is set.
    With ``kv_cache`` (:func:`keys_values` of a run in which positions before
    ``offset`` are unchanged), ``resid`` holds only positions ``offset..`` and the
    earlier ones enter through their cached keys and values: how a patch at one
    position skips every earlier position (a causal model never lets later
    positions change them). None unless :func:`_native_ok` (then the caller runs
    the hooked blocks).
    """
    return _native_blocks(hooked, resid, start, kv_cache, offset) if _native_ok(hooked) else None


def keys_values(hooked: Any, resids: list[Tensor]) -> list | None:
    """``[(k, v)]`` per layer ``[B, head, pos, d_head]`` from the residual entering each block, or None (see fused_forward)."""
    if not _native_ok(hooked):
        return None
    n_heads = int(hooked.cfg.n_heads)
    out = []
    for layer, resid in zip(range(int(hooked.cfg.n_layers)), resids):
        block = _plain(hooked.blocks[layer])
        _, k, v = _attention_qkv(_plain(block.attn), _plain(block.ln1)(resid), n_heads)
        out.append((k, v))
    return out


def _attention_qkv(attn: Any, h: Tensor, n_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v ``[B, head, pos, d_head]`` from one matrix product (the three projections stacked)."""
    lins = [_plain(lin) for lin in (attn.q, attn.k, attn.v)]
    bias = None if any(lin.bias is None for lin in lins) else torch.cat([lin.bias for lin in lins])
    qkv = torch.nn.functional.linear(h, torch.cat([lin.weight for lin in lins]), bias)
    return tuple(rearrange(t, "b p (n e) -> b n p e", n=n_heads) for t in qkv.split([lin.out_features for lin in lins], -1))


def _native_blocks(hooked: Any, x: Tensor, start: int, kv_cache: Optional[list], offset: int) -> Tensor:
    """Blocks ``start..`` then the final norm and unembedding, on the native modules (no hooks).

    With ``kv_cache``, ``x`` holds positions ``offset..`` and attention also reads the
    cached keys and values of positions ``< offset``.
    """
    fn = torch.nn.functional
    n_heads = int(hooked.cfg.n_heads)
    if kv_cache is not None:  # suffix query i (absolute offset + i) sees keys 0 .. offset + i
        allowed = torch.ones(x.shape[1], offset + x.shape[1], dtype=torch.bool, device=x.device).tril(diagonal=offset)
    for layer in range(start, int(hooked.cfg.n_layers)):
        block = _plain(hooked.blocks[layer])
        attn = _plain(block.attn)
        q, k, v = _attention_qkv(attn, _plain(block.ln1)(x), n_heads)
        if kv_cache is None:
            z = fn.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0 / float(attn.scale))
        else:
            k_prev, v_prev = kv_cache[layer]
            k, v = torch.cat([k_prev[:, :, :offset], k], 2), torch.cat([v_prev[:, :, :offset], v], 2)
            z = fn.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=1.0 / float(attn.scale))
        x = x + _plain(attn.o)(rearrange(z, "b n p e -> b p (n e)"))
        if not block.cfg.attn_only:
            mlp = _plain(block.mlp)
            mid = mlp.act(_plain(mlp.fc_in)(_plain(block.ln2)(x)))
            if getattr(mlp, "ln", None) is not None:
                mid = _plain(mlp.ln)(mid)
            x = x + _plain(mlp.fc_out)(mid)
    ln_final = getattr(hooked, "ln_final", None)
    if ln_final is not None:
        x = _plain(ln_final)(x)
    return _plain(hooked.unembed)(x)


# -- weights: one canonical (HookedTransformer) layout ------------------------------

_BRIDGE_TO_CANON = [
    # (bridge regex, canonical template, to-canonical transform kind)
    (r"embed\.weight", "embed.W_E", "same"),
    (r"pos_embed\.weight", "pos_embed.W_pos", "same"),
    (r"blocks\.(\d+)\.(ln1|ln2)\.weight", "blocks.{0}.{1}.w", "same"),
    (r"blocks\.(\d+)\.(ln1|ln2)\.bias", "blocks.{0}.{1}.b", "same"),
    (r"ln_final\.weight", "ln_final.w", "same"),
    (r"ln_final\.bias", "ln_final.b", "same"),
    (r"blocks\.(\d+)\.attn\.([qkv])\.weight", "blocks.{0}.attn.W_{1}", "qkv_w"),
    (r"blocks\.(\d+)\.attn\.([qkv])\.bias", "blocks.{0}.attn.b_{1}", "qkv_b"),
    (r"blocks\.(\d+)\.attn\.o\.weight", "blocks.{0}.attn.W_O", "o_w"),
    (r"blocks\.(\d+)\.attn\.o\.bias", "blocks.{0}.attn.b_O", "same"),
    (r"blocks\.(\d+)\.mlp\.in\.weight", "blocks.{0}.mlp.W_in", "T"),
    (r"blocks\.(\d+)\.mlp\.in\.bias", "blocks.{0}.mlp.b_in", "same"),
    (r"blocks\.(\d+)\.mlp\.out\.weight", "blocks.{0}.mlp.W_out", "T"),
    (r"blocks\.(\d+)\.mlp\.out\.bias", "blocks.{0}.mlp.b_out", "same"),
    (r"unembed\.weight", "unembed.W_U", "T"),
    (r"unembed\.bias", "unembed.b_U", "same"),
]


def _bridge_keys(hooked: Any) -> Iterator[tuple[str, str, str]]:
    """(bridge key, canonical key, transform) for every tensor of a native bridge."""
    for key in hooked.state_dict().keys():
        for pattern, template, kind in _BRIDGE_TO_CANON:
            m = re.fullmatch(pattern, key)
            if m:
                groups = [g.upper() if g in "qkv" else g for g in m.groups()]
                yield key, template.format(*groups), kind
                break
        else:
            raise ValueError(f"unknown TransformerBridge weight {key!r}: cannot map it to the canonical layout")


def _to_canon(t: Tensor, kind: str, n_heads: int) -> Tensor:
    if kind == "qkv_w":
        return rearrange(t, "(h dh) dm -> h dm dh", h=n_heads)
    if kind == "qkv_b":
        return rearrange(t, "(h dh) -> h dh", h=n_heads)
    if kind == "o_w":
        return rearrange(t, "dm (h dh) -> h dh dm", h=n_heads)
    if kind == "T":
        return t.T
    return t


def _from_canon(t: Tensor, kind: str) -> Tensor:
    if kind == "qkv_w":
        return rearrange(t, "h dm dh -> (h dh) dm")
    if kind == "qkv_b":
        return rearrange(t, "h dh -> (h dh)")
    if kind == "o_w":
        return rearrange(t, "h dh dm -> dm (h dh)")
    if kind == "T":
        return t.T
    return t


def canonical_state_dict(hooked: Any) -> dict[str, Tensor]:
    """The core's parameters in HookedTransformer layout (contiguous copies)."""
    if is_bridge(hooked):
        sd = hooked.state_dict()
        n_heads = hooked.cfg.n_heads
        return {canon: _to_canon(sd[key], kind, n_heads).contiguous().clone() for key, canon, kind in _bridge_keys(hooked)}
    return {k: v.detach().contiguous().clone() for k, v in hooked.named_parameters()}


def load_canonical_state_dict(hooked: Any, state: dict[str, Tensor]) -> None:
    """Load a canonical (HookedTransformer-layout) dict; every parameter must be given, shapes must match."""
    expected = canonical_state_dict(hooked)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"weights do not match the model config: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f"weight {k!r} has shape {tuple(state[k].shape)}, the model config expects {tuple(v.shape)}")
    with torch.no_grad():
        if is_bridge(hooked):
            own = hooked.state_dict()
            for key, canon, kind in _bridge_keys(hooked):
                own[key].copy_(_from_canon(state[canon], kind))
        else:
            params = dict(hooked.named_parameters())
            for k, v in state.items():
                params[k].copy_(v)


@contextlib.contextmanager
def quiet_tl() -> Iterator[None]:
    """Silence TransformerLens' deprecation warnings (3.x) inside the block."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield
