"""Linear self-attention on a TransformerLens hooked transformer, through its own hook points.

TransformerLens has no linear attention, so :func:`linear_attention` gives a core
one with hooks of its own on each layer's hook points (both lines: a 3.x
``HookedTransformer``, a native 4.x ``TransformerBridge``):

- ``hook_q`` / ``hook_k``: the queries and keys are recorded as they leave the
  point, after any other hook there (a user's edit of q or k reaches the pattern);
- ``hook_pattern``: the softmax is replaced, before any other hook there, by the
  linear pattern (a user's hook sees and may edit it; both lines apply the
  value matrix to what leaves this point)::

      pattern[b, h, i, j] = score[b, h, i, j] * visible[i, j] / n_keys[i]
      score = q_i . k_j / attn_scale       (attn_scale: sqrt(d_head) unless the config sets it)

  ``visible[i, j]``: ``j <= i`` for causal attention, every j for bidirectional; with
  ``query_key=False`` the last token (the query of a concatenated prompt) is no key
  for anyone. ``n_keys[i]`` is the number of keys visible to i (``normalise="keys"``;
  at least 1) or 1 (``normalise="none"``).

``ICLTransformer`` with ``ModelConfig(attention="linear")`` uses ``normalise="keys"``
and, for the concatenated encoding, ``query_key=False``: every token then sees the
n context examples and divides by n, the linear self-attention of von Oswald et al.
(2023) and Ahn et al. (2023), under which one head runs one exact gradient step on
``1/(2n)||y - Xw||^2`` (:mod:`icl_interp.core.constructions`).

``hook_attn_scores`` is left as TransformerLens has it and plays no part in the
linear pattern: on 3.x it holds TL's scaled scores with ``-inf`` above the diagonal
(causal), on the 4.x native bridge TL fires it after the attention with the
pattern itself; edit ``hook_q``, ``hook_k`` or ``hook_pattern`` to intervene.

The hooks are plain torch hooks, so no hook reset (not even
``reset_hooks(including_permanent=True)``) removes them: linear attention is part of
the architecture. The core is marked ``_icl_linear_attention``; the fused fast paths
(:mod:`icl_interp.core.fast_paths`) step aside for it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from jaxtyping import Float
from torch import Tensor

from . import backend
from .checks import check_choice, check_float, check_tensor

__all__ = ["linear_attention", "linear_pattern", "has_linear_attention", "NORMALISATIONS"]

NORMALISATIONS = ("keys", "none")
MARK = "_icl_linear_attention"


def linear_pattern(
    q: Float[Tensor, "batch pos head d_head"],
    k: Float[Tensor, "batch pos head d_head"],
    *,
    scale: float,
    causal: bool,
    query_key: bool = True,
    normalise: str = "keys",
) -> Float[Tensor, "batch head query key"]:
    """The linear attention pattern from queries and keys (the formula in the module docstring)."""
    q = check_tensor("q", q, ndim=4)
    k = check_tensor("k", k, shape=tuple(q.shape))
    check_float("scale", scale, min_value=0.0, strict_min=True)
    check_choice("normalise", normalise, NORMALISATIONS)
    return _pattern(q, k, float(scale), bool(causal), bool(query_key), normalise)


def _pattern(q: Tensor, k: Tensor, scale: float, causal: bool, query_key: bool, normalise: str) -> Tensor:
    n = q.shape[1]
    scores = torch.einsum("bihe,bjhe->bhij", q, k) / scale
    visible = torch.ones(n, n, dtype=torch.bool, device=q.device)
    if causal:
        visible = visible.tril()
    if not query_key:
        visible[:, -1] = False
    pattern = scores * visible.to(scores.dtype)
    if normalise == "keys":
        pattern = pattern / visible.sum(-1).clamp_min(1).to(scores.dtype)[:, None]
    return pattern


def has_linear_attention(hooked: Any) -> bool:
    """True when ``hooked`` carries the linear-attention hooks of :func:`linear_attention`."""
    return bool(getattr(hooked, MARK, False))


def linear_attention(hooked: Any, *, normalise: str = "keys", query_key: bool = True) -> Any:
    """Give a TransformerLens hooked model linear self-attention in every layer; returns ``hooked``.

    ``normalise``: ``"keys"`` divides each query's row by the number of keys it sees,
    ``"none"`` leaves the scores as they are. ``query_key=False``: the last token is
    nobody's key (the query of concatenated ``[x; y]`` prompts). The attention direction
    is the model's own (``cfg.attention_dir``). Refuses a model that already has it and
    architectures whose scores are not ``q . k / attn_scale`` at ``hook_q``/``hook_k``.
    """
    if not hasattr(hooked, "hook_dict") or not hasattr(hooked, "blocks"):
        raise TypeError(f"hooked must be a TransformerLens HookedTransformer or TransformerBridge, got {type(hooked).__name__}")
    check_choice("normalise", normalise, NORMALISATIONS)
    if not isinstance(query_key, bool):
        raise TypeError(f"query_key must be a bool, got {type(query_key).__name__}")
    if has_linear_attention(hooked):
        raise ValueError(f"hooked already has linear attention ({getattr(hooked, MARK)}); it is installed once, at build time")
    problems = _unsupported(hooked)
    if problems:
        raise ValueError(f"linear attention is not supported on this model: {'; '.join(problems)}")
    causal = str(getattr(hooked.cfg, "attention_dir", "causal")) != "bidirectional"
    handles: list = []
    for layer in range(int(hooked.cfg.n_layers)):
        handles += _install(hooked, layer, backend.attn_scale(hooked, layer), causal, query_key, normalise)
    setattr(hooked, MARK, {"normalise": normalise, "query_key": query_key, "causal": causal})
    try:
        _verify(hooked)
    except BaseException:
        for handle in handles:
            handle.remove()
        delattr(hooked, MARK)
        raise
    return hooked


def _unsupported(hooked: Any) -> list[str]:
    """Features under which the pattern is not ``q . k / attn_scale`` at ``hook_q``/``hook_k``, applied at ``hook_pattern``."""
    c = hooked.cfg
    found = []
    pos = str(getattr(c, "positional_embedding_type", "standard"))
    if pos in ("rotary", "alibi"):
        found.append(f"{pos} positions (they change q and k after hook_q/hook_k)")
    kv = getattr(c, "n_key_value_heads", None)
    if kv is not None and int(kv) != int(c.n_heads):
        found.append(f"grouped key/value heads (n_key_value_heads={kv})")
    if (getattr(c, "attn_scores_soft_cap", -1.0) or -1.0) > 0:
        found.append("soft-capped attention scores")
    if any(t == "local" for t in (getattr(c, "attn_types", None) or [])):
        found.append("local attention windows")
    if backend.is_bridge(hooked):
        inner = getattr(hooked.blocks[0].attn, "original_component", None)
        if not getattr(inner, "accepts_pattern_fn", False):
            found.append("a bridge whose attention applies hook_pattern after the fact (only native 4.x bridges apply it inside)")
    return found


def _tl_hook(point: Any, fn: Callable[[Tensor], Any]) -> Callable:
    """A torch forward hook calling ``fn`` on the point's tensor in TransformerLens' layout (4.x hook conversions)."""
    conversion = getattr(point, "hook_conversion", None)

    def hook(module: Any, args: Any, output: Tensor) -> Any:
        result = fn(output if conversion is None else conversion.convert(output))
        if result is None or conversion is None:
            return result
        return conversion.revert(result)

    return hook


def _record_last(point: Any, state: dict, key: str) -> list:
    """Record the point's output into ``state[key]`` after every other hook on it (kept last by a pre-hook); the handles."""

    def record(t: Tensor) -> None:
        state[key] = t

    handle = point.register_forward_hook(_tl_hook(point, record))

    def keep_last(module: Any, args: Any) -> None:
        if handle.id in module._forward_hooks:
            module._forward_hooks.move_to_end(handle.id)

    return [handle, point.register_forward_pre_hook(keep_last)]


def _install(hooked: Any, layer: int, scale: float, causal: bool, query_key: bool, normalise: str) -> list:
    """The hooks of one layer (the module docstring); returns their handles."""
    points = hooked.blocks[layer].attn
    state: dict = {}
    handles = _record_last(points.hook_q, state, "q") + _record_last(points.hook_k, state, "k")

    def replace(pattern: Tensor) -> Tensor:
        if "q" not in state or "k" not in state:
            raise RuntimeError(f"linear attention in layer {layer}: hook_pattern fired without hook_q/hook_k in this forward")
        q, k = state.pop("q"), state.pop("k")
        out = _pattern(q, k, scale, causal, query_key, normalise)
        if out.shape != pattern.shape:
            raise RuntimeError(f"linear attention in layer {layer}: pattern shape {tuple(out.shape)}, TransformerLens has {tuple(pattern.shape)}")
        return out.to(pattern.dtype)

    return handles + [points.hook_pattern.register_forward_hook(_tl_hook(points.hook_pattern, replace), prepend=True)]


def _verify(hooked: Any) -> None:
    """One forward on a random residual: each layer's z must be the linear pattern applied to its values."""
    n, d_model = min(4, int(hooked.cfg.n_ctx)), int(hooked.cfg.d_model)
    names = [f"blocks.{l}.attn.hook_{p}" for l in range(int(hooked.cfg.n_layers)) for p in ("q", "k", "v", "z")]
    acts: dict = {}

    def grab(name: str) -> Callable:
        return lambda t, hook: acts.__setitem__(name, t.detach())

    info = getattr(hooked, MARK)
    resid = torch.randn(1, n, d_model, generator=torch.Generator().manual_seed(0)).to(next(hooked.parameters()))
    with torch.no_grad(), backend.quiet_tl():
        hooked.run_with_hooks(resid, start_at_layer=0, fwd_hooks=[(name, grab(name)) for name in names])
    for layer in range(int(hooked.cfg.n_layers)):
        a = {p: acts[f"blocks.{layer}.attn.hook_{p}"] for p in ("q", "k", "v", "z")}
        pattern = linear_pattern(a["q"], a["k"], scale=backend.attn_scale(hooked, layer), causal=info["causal"],
                                 query_key=info["query_key"], normalise=info["normalise"])
        want = torch.einsum("bhij,bjhe->bihe", pattern, a["v"])
        if not torch.allclose(a["z"], want, rtol=1e-4, atol=1e-5 * float(want.abs().max().clamp_min(1.0))):
            raise ValueError(f"linear attention did not take effect in layer {layer} of this {type(hooked).__name__}: "
                             "its attention does not apply hook_pattern to the values")
