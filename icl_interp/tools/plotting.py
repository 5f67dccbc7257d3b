"""Plots: risk curves (:class:`~icl_interp.tools.evaluation.EvalResult`) and head-importance heatmaps.

matplotlib is imported only when a plot is made; with no backend chosen by the
user, the non-interactive Agg backend is used so plotting works headless.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence, Union

from jaxtyping import Float
from torch import Tensor

from ..core.checks import check_choice, check_tensor
from .evaluation import EvalResult

__all__ = ["plot_risk_curves", "plot_head_importance"]

_LABELS = {"error": "error (squared error / norm)", "excess_risk": "excess risk ((MSE - sigma^2) / norm)"}


def _figure(ax: Any, size: tuple[float, float]) -> tuple[Any, Any]:
    """``ax``'s figure, or a new figure and axes (Agg backend if the user chose none)."""
    if ax is not None:
        return ax.figure, ax
    import matplotlib

    chosen = getattr(matplotlib.rcParams, "_get_backend_or_none", lambda: os.environ.get("MPLBACKEND"))
    if chosen() is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def plot_risk_curves(
    results: Union[Sequence[EvalResult], Mapping[str, EvalResult]],
    ax: Optional[Any] = None,
    quantity: str = "error",
    log: bool = True,
    title: Optional[str] = None,
) -> Any:
    """Plot ``quantity`` against the number of in-context examples, one line per result.

    Shaded bands are the bootstrap 5-95% intervals. A dict's keys are used as labels
    (else each result's ``name``). Returns the matplotlib Figure (``ax``'s, if given).
    """
    check_choice("quantity", quantity, list(_LABELS))
    items = list(results.items()) if isinstance(results, Mapping) else [(None, r) for r in results]
    if not items:
        raise ValueError("results must contain at least one EvalResult, got none")
    for label, res in items:
        if not isinstance(res, EvalResult):
            raise TypeError(f"results must hold EvalResult objects, got {type(res).__name__} for {label!r}")
    fig, ax = _figure(ax, (6, 4))
    low_key, high_key = ("error_low", "error_high") if quantity == "error" else ("excess_low", "excess_high")
    for label, res in items:
        x = res.n_context.numpy()
        line = ax.plot(x, getattr(res, quantity).numpy(), label=label or res.name)[0]
        low, high = getattr(res, low_key).numpy(), getattr(res, high_key).numpy()
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("in-context examples")
    ax.set_ylabel(_LABELS[quantity])
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def plot_head_importance(
    importance: Float[Tensor, "layer head"],
    ax: Optional[Any] = None,
    title: Optional[str] = None,
    annotate: bool = True,
) -> Any:
    """Heatmap of a ``[layer, head]`` importance table (layers counted from 0, as in the API)."""
    importance = check_tensor("importance", importance, ndim=2).detach().double().cpu()
    n_layers, n_heads = importance.shape
    fig, ax = _figure(ax, (1.2 + 0.6 * n_heads, 1.0 + 0.5 * n_layers))
    image = ax.imshow(importance.numpy(), cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(n_heads))
    ax.set_yticks(range(n_layers))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    if annotate:
        mid = float(importance.min() + importance.max()) / 2
        for layer, row in enumerate(importance.tolist()):
            for head, value in enumerate(row):
                color = "black" if value > mid else "white"
                ax.text(head, layer, f"{value:.2g}", ha="center", va="center", fontsize=7, color=color)
    if title:
        ax.set_title(title)
    return fig
