"""The only module that knows transformer-lens 3.x from 4.x (the adapter).

It builds the hooked core (``HookedTransformer`` on 3.x,
``TransformerBridge.boot_native`` on 4.x), embeds token input, runs a range of its
blocks from a residual stream, applies its final norm and unembedding, names the
features the tools cannot run block by block, and maps weights to and from one
canonical on-disk layout: HookedTransformer's parameter names and shapes
(``blocks.{l}.attn.W_Q [head, d_model, d_head]`` ...), which both lines can load.
The hook-free fast paths live apart, in :mod:`icl_interp.core.fast_paths`.

TransformerLens itself is imported lazily, so tasks, baselines and probes on
given activations do not pay its 5-7 s import.
"""

from __future__ import annotations

import contextlib
import re
from functools import lru_cache
from importlib import metadata
from typing import Any, Iterator

import torch
from einops import rearrange
from torch import Tensor

__all__ = [
    "tl_major",
    "is_bridge",
    "build_core",
    "run_blocks",
    "embed",
    "unembed",
    "canonical_state_dict",
    "load_canonical_state_dict",
    "unsupported_features",
    "attn_scale",
]


@lru_cache(maxsize=1)
def tl_major() -> int:
    """Major version of the installed transformer-lens (3 or 4)."""
    return int(metadata.version("transformer-lens").split(".")[0])


def is_bridge(hooked: Any) -> bool:
    """True for a 4.x ``TransformerBridge`` (blocks return tuples, weights are nn.Linear)."""
    return type(hooked).__name__ == "TransformerBridge" or hasattr(hooked, "original_model")


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
        attention_dir=getattr(cfg, "attention_dir", "causal"),
        seed=cfg.seed,
    )


def build_core(cfg: Any) -> torch.nn.Module:
    """A randomly initialised hooked transformer for ``cfg`` (a ModelConfig), in eval mode.

    Never calls ``enable_compatibility_mode``: with one output its weight
    processing centres W_U to zero (REFERENCE.md section 6). The attention is
    TransformerLens' softmax; ``ICLTransformer`` adds ``cfg.attention == "linear"``
    with :func:`icl_interp.core.linear_attention.linear_attention`.
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


def embed(hooked: Any, tokens: Tensor) -> Tensor:
    """The residual stream entering block 0 for integer ``tokens`` (TransformerLens' ``stop_at_layer=0``).

    The value *before* any hook on ``blocks.0.hook_resid_pre``: the tools run block 0
    from it, and that hook then applies once. (The 4.x bridge stops inside block 0,
    after its ``hook_in``: the value is read by a torch pre-hook on the block, so a
    user's hook there is called in this pass too, its result unused.)
    """
    if not is_bridge(hooked):
        return hooked(tokens, stop_at_layer=0)
    seen: list[Tensor] = []

    def grab(module: Any, args: tuple, kwargs: dict) -> None:
        seen.append(args[0] if args else kwargs["hidden_states"])

    handle = hooked.blocks[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        hooked(tokens, stop_at_layer=0)
    finally:
        handle.remove()
    return seen[0]


def attn_scale(hooked: Any, layer: int) -> float:
    """What layer ``layer`` divides ``q . k`` by (sqrt(d_head) unless the config sets ``attn_scale``)."""
    attn = hooked.blocks[layer].attn
    if is_bridge(hooked):
        return float(getattr(attn, "original_component", attn).scale)
    return float(attn.attn_scale)


def unsupported_features(hooked: Any) -> list[str]:
    """Features of ``hooked`` that make a block-by-block run from the residual stream differ from its forward.

    Shortformer positions (3.x) are fed to every block's queries and keys rather
    than added to the residual stream, so the residual alone does not determine
    the rest of the forward. The tools refuse such a model by name.
    """
    c = hooked.cfg
    found = []
    if getattr(c, "positional_embedding_type", "standard") == "shortformer":
        found.append("shortformer positional embeddings (fed to every block's queries and keys, not carried by the residual stream)")
    return found


def unembed(hooked: Any, resid: Tensor) -> Tensor:
    """Final norm and unembedding: the residual after the last block to the output."""
    ln = getattr(hooked, "ln_final", None)
    if ln is not None:
        resid = ln(resid)
    return hooked.unembed(resid)


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
