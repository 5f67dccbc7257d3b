"""The studies' figures, each drawn from a study's JSON-ready result dict (so a saved JSON can be re-plotted).

Each ``plot_*`` function returns a matplotlib Figure; :func:`save_figure` writes it
into the output folder and closes it. The general plots (risk curves, head
importance heatmaps) are in :mod:`icl_interp.tools.plotting`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..core.atomic import atomic_write_bytes
from ..tools.evaluation import EvalResult
from ..tools.plotting import _figure, plot_head_importance, plot_risk_curves
from .claims import check_result

__all__ = [
    "save_figure", "plot_risk_study", "plot_importance_study", "plot_pruning_study", "plot_noise_pruning_study",
    "plot_preprocessing_study", "plot_gd_study", "plot_algorithm_study", "plot_multihead_study",
    "plot_settings_study", "plot_dynamics_study",
]


def _subplots(size: tuple[float, float], **grid: Any) -> tuple[Any, Any]:
    """A new figure (Agg backend if the user chose none) with one axes, or the ``grid`` of ``Figure.subplots``."""
    fig, ax = _figure(None, size)
    if not grid:
        return fig, ax
    ax.remove()
    return fig, fig.subplots(**grid)


def save_figure(fig: Any, out: Union[str, Path, None], name: str) -> Optional[str]:
    """Save ``fig`` as ``out/name`` (110 dpi) and close it; returns ``name`` (None, and nothing saved, when ``out`` is None)."""
    if out is None:
        return None
    if not hasattr(fig, "savefig"):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    buf = io.BytesIO()  # rendered in memory, then replaced as one unit: a failed write keeps the previous figure
    fig.savefig(buf, format=Path(name).suffix[1:] or "png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(Path(out) / name, buf.getvalue())
    import matplotlib.pyplot as plt

    plt.close(fig)
    return name


def plot_risk_study(result: dict, highlight: Sequence[str] = ()) -> Any:
    """Error against n for every curve of :func:`~icl_interp.analysis.studies.risk_study`; ``highlight`` (the models) in black."""
    curves = check_result("result", result, ["curves"])["curves"]
    fig = plot_risk_curves({name: EvalResult.from_dict(c) for name, c in curves.items()}, quantity="error")
    ax = fig.axes[0]
    styles = dict(zip(highlight, ["-", "--", ":", "-."] * len(highlight)))
    for line in ax.get_lines():
        if line.get_label() in styles:  # the transformers: black, one dash style each
            line.set(color="black", linewidth=2.5, linestyle=styles[line.get_label()], zorder=5)
    ax.legend(fontsize=8)
    ax.set_ylim(0.05, 3.0)  # OLS near n = d and the oracle at n <= s + 1 blow up; the JSON has their values
    return fig


def plot_importance_study(result: dict) -> Any:
    """Ablation and gradient head importance side by side."""
    import torch

    check_result("result", result, ["ablation", "gradient"])
    fig, axes = _subplots((9, 3.2), ncols=2)
    plot_head_importance(torch.tensor(result["ablation"]), ax=axes[0], title="ablation (error increase)")
    plot_head_importance(torch.tensor(result["gradient"]), ax=axes[1], title="gradient |dL/dmask|")
    return fig


def plot_pruning_study(result: dict) -> Any:
    """P-probing risk per layer: all heads, pruned, and the single-head model when there is one."""
    check_result("result", result, ["probe_risk_full"])
    fig, ax = _subplots((5, 3.2))
    layers = list(range(-1, len(result["probe_risk_full"]) - 1))
    for key, label in (("probe_risk_full", "all heads"), ("probe_risk_pruned", "pruned"), ("probe_risk_single_head", "single-head model")):
        if key in result:
            ax.plot(layers, result[key], marker="o", label=label)
    ax.set_xticks(layers, ["input"] + [str(l) for l in layers[1:]])
    ax.set_xlabel("layer (output of)")
    ax.set_ylabel("P-probing risk (MSE / norm)")
    ax.legend()
    return fig


def plot_noise_pruning_study(result: dict) -> Any:
    """Error of all heads, pruned and single-head models against the noise level, with the noise floor."""
    levels = check_result("result", result, ["levels"])["levels"]
    fig, ax = _subplots((5, 3.2))
    xs = [float(k) for k in levels]
    for key, label, style in (("error_full", "all heads", "o-"), ("error_pruned", "pruned", "s--"),
                              ("error_single_head", "single-head model", "^:"), ("noise_floor", "noise floor", "k-")):
        pts = [(x, v[key]) for x, v in zip(xs, levels.values()) if key in v]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label, alpha=0.5 if key == "noise_floor" else 1.0)
    ax.set_xlabel("noise std (training and test)")
    ax.set_ylabel("error (MSE / s), all positions")
    ax.legend(fontsize=8)
    return fig


def plot_preprocessing_study(result: dict) -> Any:
    """Held-out R2 of each probe target at the input, after layer 0, and for a random model (two readings)."""
    rows, rows_all = (check_result("result", result, ["rows", "rows_all_positions"])[k] for k in ("rows", "rows_all_positions"))
    fig, axes = _subplots((11, 3.4), ncols=2, gridspec_kw={"width_ratios": [len(rows), len(rows_all)]})
    every = f"every token (r over {result.get('view_words', 'the examples before it')})"
    for ax, table, title in ((axes[0], rows, "query token"), (axes[1], rows_all, every)):
        names = list(table)
        x = list(range(len(names)))
        for off, key, label in ((-0.27, "input_r2", "input (embed)"), (0.0, "layer0_r2", "layer 0 output"),
                                (0.27, "control_r2", "random model, layer 0")):
            vals = [table[t][key] if table[t][key] is not None else float("nan") for t in names]
            ax.bar([i + off for i in x], vals, width=0.27, label=label)
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("held-out R2")
    axes[0].legend(fontsize=7)
    return fig


def plot_gd_study(result: dict) -> Any:
    """Per-layer P-probing risk (and a random model's) against the risk of t-step GD and PtO."""
    check_result("result", result, ["steps", "probe_risk_per_layer", "gd_risk", "pto_risk"])
    fig, ax = _subplots((5.5, 3.2))
    layers = list(range(len(result["probe_risk_per_layer"])))
    ax.plot(layers, result["probe_risk_per_layer"], marker="o", color="k", label="model: probe after layer (0 = input)")
    if result.get("probe_risk_per_layer_control") is not None:
        ax.plot(layers, result["probe_risk_per_layer_control"], marker="o", color="0.6", linestyle=":", label="random model of the same config")
    ax.plot(list(result["steps"]), result["gd_risk"], marker="s", label="GD, t steps (best lr)")
    ax.plot(list(result["steps"]), result["pto_risk"], marker="^", label="PtO, t steps (best preprocessing and lr)")
    ax.set_xlabel("layers used  /  GD steps t")
    ax.set_ylabel("risk (MSE / norm) at the query")
    ax.legend(fontsize=8)
    return fig


def plot_algorithm_study(result: dict) -> Any:
    """Excess risk over n of every method, one panel per (d, noise) setting."""
    settings = check_result("result", result, ["settings"])["settings"]
    fig, axes = _subplots((4.2 * len(settings), 3.2), ncols=len(settings), squeeze=False)
    for ax, st in zip(axes[0], settings):
        for name, cur in st["curves"].items():
            ax.plot(cur["n_context"][1:], [max(v, 1e-4) for v in cur["excess_risk"][1:]], label=name)
        ax.set_yscale("log")
        ax.set_title(f"d={st['d']}, s={st['s']}, noise={st['noise_std']}")
        ax.set_xlabel("in-context examples n")
    axes[0][0].set_ylabel("excess risk")
    axes[0][-1].legend(fontsize=7)
    return fig


def _draw_multihead(ax: Any, rows: dict, fontsize: int = 7) -> None:
    """Excess risk against D of each one-layer model on ``ax``, with its fitted ``c / D + e`` dashed."""
    for name, row in rows.items():
        (line,) = ax.plot(row["D"], row["excess_risk"], marker="o", ms=3, label=f"{name} (c={row['c']:.2f})")
        ax.plot(row["D"], [row["c"] / d + row["e"] for d in row["D"]], ls="--", color=line.get_color(), lw=1)
    ax.set_xlabel("in-context examples D")
    ax.set_ylabel("excess risk (query)")
    ax.set_yscale("log")
    ax.legend(fontsize=fontsize)


def plot_multihead_study(result: dict) -> Any:
    """Excess risk against D of each one-layer model, with its fitted ``c / D + e`` dashed."""
    rows = check_result("result", result, ["models"])["models"]
    fig, ax = _subplots((5.5, 3.4))
    _draw_multihead(ax, rows)
    return fig


def plot_settings_study(result: dict) -> Any:
    """One panel per setting of :func:`~icl_interp.analysis.studies.settings_study` (as :func:`plot_multihead_study`), and one
    with each prior model's |u - theta_0| / |theta_0| against D beside the references'."""
    settings = check_result("result", result, ["settings"])["settings"]
    priors = {s: r["prior"] for s, r in settings.items() if "prior" in r}
    n = len(settings) + bool(priors)
    cols = min(n, 3)
    fig, axes = _subplots((4.2 * cols, 3.2 * ((n + cols - 1) // cols)), nrows=(n + cols - 1) // cols, ncols=cols, squeeze=False)
    axes = list(axes.flat)
    for ax, (setting, res) in zip(axes, settings.items()):
        _draw_multihead(ax, {name.replace("softmax-", ""): row for name, row in res["models"].items()}, fontsize=6)
        ax.set_title(setting, fontsize=9)
    if priors:
        ax = axes[len(settings)]
        for style, (setting, prior) in zip(["-", "--", ":", "-."] * n, priors.items()):
            for name, row in prior["rows"].items():
                if name not in ("predict 0", "theta_0 . x_q"):  # those two are 1 and 0 at every D
                    label = name.replace("softmax-", "") if name.startswith("softmax-") else f"{setting}: {name}"
                    ax.plot(prior["D"], row["theta0_distance"], ls=style, marker="o", ms=3, label=label)
        ax.set(xlabel="in-context examples D", ylabel="|u - theta_0| / |theta_0|", title="has the model learned theta_0?")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=6)
    for ax in axes[n:]:
        ax.remove()
    fig.tight_layout()
    return fig


def plot_dynamics_study(result: dict) -> Any:
    """The error against ridge and Lasso, then each claim's deciding number with its threshold, against the training step."""
    check_result("result", result, ("rows", "panels", "summary"))
    rows, panels = result["rows"], result["panels"]
    steps = [r["step"] for r in rows]
    fig, axes = _subplots((12, 6), nrows=2, ncols=4, sharex=True, squeeze=False)
    axes = [ax for line in axes for ax in line]
    exit_step = result["summary"]["leaves_ridge_plateau_at"]
    axes[0].plot(steps, [r["over_ridge"] for r in rows], "o-", ms=3, label="/ best ridge")
    axes[0].plot(steps, [r["over_lasso"] for r in rows], "s-", ms=3, label="/ best Lasso")
    axes[0].axhline(1.0, color="0.6", lw=0.8)
    axes[0].set_title(f"error at n = {result['n_largest']}\nover the tuned baselines'", fontsize=7)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    for ax, panel in zip(axes[1:], panels):
        values = [r["panels"].get(panel["claim"], float("nan")) for r in rows]
        ax.plot(steps, values, "o-", ms=3, color="k")
        ax.axhline(panel["threshold"], color="tab:red", lw=0.8, ls="--")
        ax.set_title(f"{panel['claim']}\n{panel['label']} ({panel['good']} the line)", fontsize=7)
    used = len(panels) + 1
    if result.get("llc") and used < len(axes):
        _llc_panel(axes[used], result["llc"])
        used += 1
    for ax in axes[used:]:
        ax.remove()
    for ax in axes[:used]:
        ax.set_xscale("log")
        if exit_step is not None:
            ax.axvline(exit_step, color="tab:green", lw=0.8)
    axes[len(panels) // 2 + 1].set_xlabel("training step (green: leaves the ridge plateau)")
    fig.tight_layout()
    return fig


def _llc_panel(ax: Any, llc: dict) -> None:
    """The LLC per snapshot with its standard error (full task; hollow: on the snapshot's own curriculum stage) and
    its turning points (dotted)."""
    rows = llc["rows"]
    ax.errorbar([r["step"] for r in rows], [r["llc"] for r in rows], yerr=[r["se"] for r in rows], fmt="o-", ms=3,
                color="tab:purple", capsize=2, label="full task")
    staged = [r for r in rows if r.get("stage")]
    if staged:
        ax.errorbar([r["step"] for r in staged], [r["stage"]["llc"] for r in staged], yerr=[r["stage"]["se"] for r in staged],
                    fmt="o", mfc="none", ms=4, color="tab:purple", capsize=2, label="own curriculum stage")
    ax.axhline(0.0, color="0.6", lw=0.8)
    for b in llc.get("stages", {}).get("boundaries", []):
        ax.axvline(b["step"], color="tab:purple", lw=0.8, ls=":")
    ax.set_title("local learning coefficient (SGLD)\nbelow 0: not near a minimum; dotted: turning points", fontsize=7)
    ax.legend(fontsize=6)
