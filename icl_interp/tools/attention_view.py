"""Where heads attend: per-head profiles over the in-context examples, per-prompt patterns, an HTML view.

The pattern is read at each layer's ``hook_pattern`` from the shared clean run
(``runner.prepare``), so a hook you have on the model is seen as in any tool, and
tokens are placed with the model's ``layout``: for an interleaved prompt the x and
y tokens of example i are told apart (x_i is the token whose output predicts y_i);
for a concatenated prompt each token holds one whole example.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from ..core.checks import check_choice, check_int, check_layer
from ..core.protocol import ToolModel, as_model
from ..core.tasks import ICLBatch
from .runner import CleanRun, prepare

__all__ = ["AttentionProfile", "attention_profile", "plot_attention", "attention_html"]


@dataclass
class AttentionProfile:
    """Mean attention of the query token, by example, over prompts: ``x[l, h, i]`` to example i's x (or whole) token,
    ``y[l, h, i]`` to its y token (None when examples have one token each). ``layers`` lists the layers kept."""

    layers: list[int]
    x: Float[Tensor, "layer head example"]
    y: Optional[Float[Tensor, "layer head example"]]
    query: int

    def to_dict(self) -> dict:
        return {"layers": self.layers, "query_token": self.query, "to_x": self.x.tolist(),
                "to_y": None if self.y is None else self.y.tolist()}


def _layers(model: ToolModel, layer: Union[None, int, Sequence[int]]) -> list[int]:
    n_layers = int(model.hooked.cfg.n_layers)
    if layer is None:
        return list(range(n_layers))
    if isinstance(layer, int) and not isinstance(layer, bool):
        return [check_layer("layer", layer, n_layers)]
    if isinstance(layer, (list, tuple)) and layer:
        return [check_layer("layer[i]", l, n_layers) for l in layer]
    raise TypeError(f"layer must be None, an int or a non-empty list of ints in [0, {n_layers - 1}], got {layer!r}")


def _patterns(run: CleanRun, layers: list[int]) -> Tensor:
    """``[L, B, H, q, k]`` patterns of the clean run."""
    names = [f"blocks.{l}.attn.hook_pattern" for l in layers]
    acts = run.acts(names)
    return torch.stack([acts[n] for n in names]).float()


def attention_profile(
    model: ToolModel, data: Union[ICLBatch, CleanRun], layer: Union[None, int, Sequence[int]] = None
) -> AttentionProfile:
    """Where the query token attends, averaged over prompts, by example index (x and y tokens apart)."""
    model = as_model(model)
    layers = _layers(model, layer)
    run = prepare(model, data)
    lay = run.layout()
    if lay.token_example is None:
        raise ValueError("attention_profile needs the model's token layout (an ICLTransformer, or attach(..., layout=...))")
    at_query = _patterns(run, layers)[:, :, :, lay.query].mean(1).cpu()  # [L, H, k]
    n = run.batch.n_points
    example_of = lay.token_example.cpu()
    is_x = torch.zeros(lay.n_tokens, dtype=torch.bool)
    is_x[lay.example_tokens.cpu()] = True
    x = torch.zeros(*at_query.shape[:2], n)
    x.index_add_(2, example_of[is_x], at_query[..., is_x])
    y = None
    if bool((~is_x).any()):
        y = torch.zeros_like(x)
        y.index_add_(2, example_of[~is_x], at_query[..., ~is_x])
    return AttentionProfile(layers, x, y, lay.query)


def plot_attention(
    model: ToolModel,
    data: Union[ICLBatch, CleanRun],
    layer: Union[None, int, Sequence[int]] = None,
    *,
    kind: str = "examples",
    prompt: int = 0,
) -> Any:
    """A figure, one panel per head, a row per layer.

    ``kind="examples"``: the query token's attention by example index, averaged over
    prompts (x tokens and y tokens as two lines). ``kind="pattern"``: the full
    query-by-key pattern of one ``prompt``, as heatmaps.
    """
    from .plotting import _figure

    model = as_model(model)
    check_choice("kind", kind, ("examples", "pattern"))
    layers = _layers(model, layer)
    run = prepare(model, data)
    prompt = check_int("prompt", prompt, min_value=0, max_value=run.batch.batch_size - 1)
    n_heads = int(model.hooked.cfg.n_heads)
    fig, _ = _figure(None, (2.4 * n_heads, 2.1 * len(layers)))
    fig.clf()
    axes = fig.subplots(len(layers), n_heads, squeeze=False, sharex=True, sharey=kind == "examples")
    if kind == "examples":
        prof = attention_profile(model, run, layers)
        for li, l in enumerate(layers):
            for h in range(n_heads):
                ax = axes[li][h]
                ax.plot(prof.x[li, h].numpy(), marker=".", label="x tokens" if prof.y is not None else "tokens")
                if prof.y is not None:
                    ax.plot(prof.y[li, h].numpy(), marker=".", label="y tokens")
                ax.set_title(f"layer {l}, head {h}", fontsize=8)
        axes[-1][0].set_xlabel("example index")
        axes[0][0].set_ylabel("mean attention of the query")
        axes[0][-1].legend(fontsize=7)
    else:
        pats = _patterns(run, layers)[:, prompt].cpu()  # [L, H, q, k]
        for li, l in enumerate(layers):
            for h in range(n_heads):
                ax = axes[li][h]
                ax.imshow(pats[li, h].numpy(), cmap="Blues", vmin=0)
                ax.set_title(f"layer {l}, head {h}", fontsize=8)
        axes[-1][0].set_xlabel("key token")
        axes[0][0].set_ylabel("query token")
    fig.tight_layout()
    return fig


def _token_labels(run: CleanRun) -> list[str]:
    lay = run.layout()
    if lay.token_example is None:
        return [f"t{t}" for t in range(lay.n_tokens)]
    is_x = set(lay.example_tokens.tolist())
    if len(is_x) == lay.n_tokens:
        return [f"[x{int(e)};y{int(e)}]" for e in lay.token_example]
    return [f"{'x' if t in is_x else 'y'}{int(e)}" for t, e in enumerate(lay.token_example)]


def attention_html(
    model: ToolModel, data: Union[ICLBatch, CleanRun], layer: int = 0, *, prompt: int = 0, path: Union[str, Path, None] = None
) -> str:
    """An interactive CircuitsVis view of one prompt's patterns at ``layer`` (``pip install circuitsvis``); the HTML,
    also written to ``path`` when given."""
    try:
        from circuitsvis.attention import attention_heads
    except ImportError:
        raise ImportError("attention_html needs CircuitsVis: pip install 'icl-interp[viz]' (or circuitsvis)") from None
    model = as_model(model)
    (l,) = _layers(model, layer)
    run = prepare(model, data)
    prompt = check_int("prompt", prompt, min_value=0, max_value=run.batch.batch_size - 1)
    pattern = _patterns(run, [l])[0, prompt].cpu()
    causal = getattr(getattr(model, "cfg", None), "attention_dir", "causal") == "causal"
    html = str(attention_heads(attention=pattern, tokens=_token_labels(run), mask_upper_tri=causal))
    if path is not None:
        from ..core.atomic import atomic_write_bytes

        atomic_write_bytes(path, html.encode())
    return html
