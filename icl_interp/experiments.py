"""The seed papers' experiments as library functions; recipes and the report call them.

Each function takes trained models (or none), computes every number it plots,
returns them as a JSON-serialisable dict, and draws its figure into ``out`` when
given. ``quick=True`` shrinks sizes so the whole thing runs in seconds (tests).
Nothing here trains a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

import torch

from . import baselines as bl
from .evaluation import EvalResult, evaluate
from .importance import head_importance, prune_heads
from .masking import mask_heads, masked
from .preprocess import power, rank_one
from .probing import probe_all_layers
from .runner import default_metric, model_norm, normalised_error, predict
from .tasks import Task

__all__ = [
    "risk_curves",
    "importance_study",
    "pruning_study",
    "noise_pruning_study",
    "noise_variants",
    "preprocessing_study",
    "gd_study",
    "save_json",
]

PathLike = Union[str, Path, None]


def save_json(data: dict, out: PathLike, name: str) -> None:
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / name).write_text(json.dumps(data, indent=1))


def _savefig(fig: Any, out: PathLike, name: str) -> Optional[str]:
    if out is None:
        return None
    Path(out).mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(out) / name, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return name


def _curve(res: EvalResult) -> dict:
    return res.to_dict(per_prompt=False)


# -- 1. risk curves: models against the baselines -------------------------------------

def baseline_suite(
    task: Task, n_points: int, gd_steps: int, *, quick: bool = False, seed: int = 10_000, pto_preprocessings: tuple = ("reweight",)
) -> dict[str, Any]:
    """OLS, best ridge, best Lasso, best k-step GD and PtO, oracle OLS, averaging (tuned on held-out prompts).

    PtO is tuned over ``pto_preprocessings`` and the step size, per context length.
    """
    n_val = 200 if quick else 1000
    kw = dict(n_prompts=n_val, seed=seed)
    return {
        "OLS": bl.OLS(),
        "ridge (best alpha)": bl.best_ridge(task, n_points, **kw),
        "Lasso (best alpha)": bl.best_lasso(task, n_points, **kw),
        f"GD {gd_steps} steps (best lr)": bl.best_gd(task, n_points, gd_steps, **kw),
        f"PtO {gd_steps} steps (best lr)": bl.best_pto(task, n_points, gd_steps, pto_preprocessings, **kw),
        "oracle OLS": bl.OracleOLS(),
        "averaging": bl.Averaging(),
    }


def risk_curves(
    models: dict[str, Any],
    task: Task,
    n_points: int,
    *,
    n_prompts: int = 2000,
    seed: int = 1,
    quick: bool = False,
    out: PathLike = None,
) -> dict:
    """Error and excess risk against the number of in-context examples, models and baselines."""
    if quick:
        n_prompts = min(n_prompts, 200)
    gd_steps = max((m.cfg.n_layers for m in models.values() if hasattr(m, "cfg")), default=3)
    curves: dict[str, EvalResult] = {}
    for name, model in models.items():
        curves[name] = evaluate(model, task, n_points=n_points, n_prompts=n_prompts, seed=seed)
    for name, est in baseline_suite(task, n_points, gd_steps, quick=quick).items():
        curves[name] = evaluate(est, task, n_points=n_points, n_prompts=n_prompts, seed=seed)
    data = {"task": task.to_dict(), "n_points": n_points, "n_prompts": n_prompts, "seed": seed,
            "curves": {k: _curve(v) for k, v in curves.items()}}
    if out is not None:
        from .plotting import plot_risk_curves

        for name, r in curves.items():
            r.name = name
        fig = plot_risk_curves(list(curves.values()), quantity="error")
        ax = fig.axes[0]
        styles = dict(zip(models, ["-", "--", ":", "-."] * len(models)))
        for line in ax.get_lines():
            if line.get_label() in styles:  # the transformers: black, one dash style each
                line.set(color="black", linewidth=2.5, linestyle=styles[line.get_label()], zorder=5)
        ax.legend(fontsize=8)
        ax.set_ylim(0.05, 3.0)  # OLS near n = d and the oracle at n <= s + 1 blow up; the JSON has their values
        data["figure"] = _savefig(fig, out, "risk_curves.png")
    return data


def quality_bar(data: dict, model_name: str, d: int) -> dict:
    """The core issue's bar: error at the largest n within 1.5x the best Lasso's, below OLS wherever n < d."""
    curves = data["curves"]
    model, lasso, ols = curves[model_name]["error"], curves["Lasso (best alpha)"]["error"], curves["OLS"]["error"]
    ratio = model[-1] / lasso[-1]
    below = [k for k in range(min(d, len(model))) if k >= 1]
    beats_ols = all(model[k] < ols[k] for k in below)
    return {"ratio_to_best_lasso_at_largest_n": ratio, "n_largest": len(model) - 1, "within_1.5x": ratio <= 1.5,
            "below_ols_for_all_n_lt_d": beats_ols,
            "per_n": [{"n": k, "model": model[k], "lasso": lasso[k], "ols": ols[k]} for k in range(len(model))]}


# -- 2. head importance ---------------------------------------------------------------------

def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.flatten().argsort().argsort().double()
    rb = b.flatten().argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def importance_study(model: Any, data: Any, *, out: PathLike = None) -> dict:
    """Ablation and gradient importance side by side; the seed paper's two claims measured."""
    abl = head_importance(model, data, method="ablation")
    grad = head_importance(model, data, method="gradient")
    with torch.no_grad():  # the clean model: a plain forward, not a mask of ones
        clean = float(default_metric(model)(predict(model, data), data))
    later = abl[1:].clamp(min=0)
    shares = (later.max(1).values / later.sum(1).clamp(min=1e-12)).tolist() if abl.shape[0] > 1 else []
    result = {
        "clean_error": clean,
        "ablation": abl.tolist(),
        "gradient": grad.tolist(),
        "layer0_every_head_raises_error": bool((abl[0] > 0).all()),
        "layer0_min_increase": float(abl[0].min()),
        "later_layers_top_head_share": shares,
        "spearman_ablation_vs_gradient": _spearman(abl, grad),
    }
    if out is not None:
        import matplotlib.pyplot as plt

        from .plotting import plot_head_importance

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        plot_head_importance(abl, ax=axes[0], title="ablation (error increase)")
        plot_head_importance(grad, ax=axes[1], title="gradient |dL/dmask|")
        result["figure"] = _savefig(fig, out, "head_importance.png")
    return result


# -- 3. pruning and per-layer probing ----------------------------------------------------------

def _layer_risk(model: Any, data: Any, control: bool = False) -> tuple[list[float], Optional[list[float]]]:
    """P-probing risk per layer: held-out MSE of a y_query probe / norm (embed row first), and with
    ``control=True`` the same probes on a random model of the same config (else None)."""
    table = probe_all_layers(model, data, targets=["y_query"], control=control)
    norm = model_norm(model)
    return [row.mse / norm for row in table], ([row.control_mse / norm for row in table] if control else None)


def pruning_study(
    model: Any,
    data: Any,
    *,
    single_head: Optional[Any] = None,
    importance: Optional[torch.Tensor] = None,
    out: PathLike = None,
) -> dict:
    """All heads vs pruned (all of layer 0, the top head of each later layer) vs a single-head model."""
    imp = head_importance(model, data) if importance is None else importance
    mask = prune_heads(imp, keep={0: "all", "rest": 1})
    norm = model_norm(model)
    full = normalised_error(mask_heads(model, data, torch.ones_like(mask)), data, norm)
    pruned = normalised_error(mask_heads(model, data, mask), data, norm)
    result = {"mask": mask.tolist(), "error_full": float(full), "error_pruned": float(pruned),
              "pruned_over_full": float(pruned / full), "probe_risk_full": _layer_risk(model, data)[0]}
    with masked(model, mask):
        result["probe_risk_pruned"] = _layer_risk(model, data)[0]
    if single_head is not None:
        with torch.no_grad():
            result["error_single_head"] = float(normalised_error(single_head(data), data, norm))
        result["probe_risk_single_head"] = _layer_risk(single_head, data)[0]
    if out is not None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        layers = list(range(-1, len(result["probe_risk_full"]) - 1))
        for key, label in (("probe_risk_full", "all heads"), ("probe_risk_pruned", "pruned"), ("probe_risk_single_head", "single-head model")):
            if key in result:
                ax.plot(layers, result[key], marker="o", label=label)
        ax.set_xticks(layers, ["input"] + [str(l) for l in layers[1:]])
        ax.set_xlabel("layer (output of)")
        ax.set_ylabel("P-probing risk (MSE / norm)")
        ax.legend()
        result["figure"] = _savefig(fig, out, "pruning_probing.png")
    return result


def noise_pruning_study(
    pairs: dict[float, tuple[Any, Optional[Any]]],
    *,
    n_prompts: int = 2000,
    seed: int = 7,
    quick: bool = False,
    known: Optional[dict[float, dict]] = None,
    out: PathLike = None,
) -> dict:
    """The seed's Fig 5 across noise levels: all heads vs pruned vs a trained single-head model.

    ``pairs`` maps a noise level to (all-heads model, single-head model or None),
    each trained at that noise; each pair is tested on fresh prompts of its task
    (``n_prompts``, ``seed``). ``known``: :func:`pruning_study` results already
    computed on those same prompts, by noise level (not computed again).
    """
    if quick:
        n_prompts = min(n_prompts, 256)
    keep = ("mask", "error_full", "error_pruned", "pruned_over_full", "error_single_head",
            "probe_risk_full", "probe_risk_pruned", "probe_risk_single_head")
    levels = {}
    for sigma, (model, single) in sorted(pairs.items()):
        r = (known or {}).get(sigma)
        if r is None:
            r = pruning_study(model, model.task.sample(n_prompts, model.cfg.max_points, seed=seed), single_head=single)
        row = {k: r[k] for k in keep if k in r}
        row["noise_floor"] = float(sigma) ** 2 / model_norm(model)
        row["train_steps"] = _train_steps(model)
        if "error_single_head" in r:
            row["single_over_full"] = r["error_single_head"] / r["error_full"]
        levels[f"{sigma:g}"] = row
    result = {"n_prompts": n_prompts, "seed": seed, "levels": levels}
    if out is not None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        xs = [float(k) for k in levels]
        for key, label, style in (("error_full", "all heads", "o-"), ("error_pruned", "pruned", "s--"),
                                  ("error_single_head", "single-head model", "^:"), ("noise_floor", "noise floor", "k-")):
            pts = [(x, v[key]) for x, v in zip(xs, levels.values()) if key in v]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label, alpha=0.5 if key == "noise_floor" else 1.0)
        ax.set_xlabel("noise std (training and test)")
        ax.set_ylabel("error (MSE / s), all positions")
        ax.legend(fontsize=8)
        result["figure"] = _savefig(fig, out, "pruning_noise.png")
    return result


def _train_steps(model: Any) -> Optional[int]:
    """Training steps recorded in a loaded model's config (None if it does not say)."""
    return getattr(model, "saved_config", {}).get("training", {}).get("train_config", {}).get("steps")


def noise_variants(name: str = "default", loaded: Optional[dict[str, Any]] = None) -> dict[float, tuple[Any, Optional[Any]]]:
    """Shipped (all-heads, single-head) pairs by noise level: ``name`` / ``name-h1`` and ``noise{s}-h4`` / ``noise{s}-h1``.

    ``loaded``: zoo models already in memory, by name (not loaded again).
    """
    from .checkpoint import load_model, zoo_names

    names, cache = zoo_names(), dict(loaded or {})

    def get(n: str) -> Optional[Any]:
        if n not in cache and n in names:
            cache[n] = load_model(n)
        return cache.get(n)

    pairs: dict[float, tuple[Any, Optional[Any]]] = {}
    for full in [name] + [n for n in names if n.startswith("noise") and n.endswith("-h4")]:
        model = get(full)
        if model is not None:
            single = f"{name}-h1" if full == name else full[: -len("-h4")] + "-h1"
            pairs[float(model.task.noise_std)] = (model, get(single))
    return pairs


# -- 4. layer 0 as preprocessing ---------------------------------------------------------------

PREPROCESSING_TARGETS = ("pre_identity", "pre_reweight", "pre_power2", "pre_rank_one")
OTHER_TARGETS = ("r", "xtx", "w", "y_query")


def _probe_rows(model: Any, data: Any, targets: list[str], positions: str) -> dict:
    table = probe_all_layers(model, data, targets=targets, positions=positions, control=hasattr(model, "cfg"))
    rows = {}
    for t in targets:
        embed, layer0 = table.get(-1, "embed", t), table.get(0, "resid_post", t)
        rows[t] = {"input_r2": embed.r2, "layer0_r2": layer0.r2, "control_r2": getattr(layer0, "control_r2", None),
                   "gain_over_input": layer0.r2 - embed.r2}
    return rows


def preprocessing_study(model: Any, data: Any, *, out: PathLike = None) -> dict:
    """Probe the input and layer 0's output for each preprocessing candidate, with a random-model control.

    Two readings: at the query token (candidates applied to the query x, r from the
    whole context, plus r, X^T X, w, y), and at every x token (candidates applied to
    each x_i with r from the examples before it: what a causal layer 0 could compute).
    The verdict uses the every-token reading; identity is the raw input, not a candidate.
    """
    query_targets = list(PREPROCESSING_TARGETS + OTHER_TARGETS)
    example_targets = [f"{t}_all" for t in PREPROCESSING_TARGETS] + ["r_prefix"]
    rows = _probe_rows(model, data, query_targets, "query")
    rows_all = _probe_rows(model, data, example_targets, "all")
    cands = {t: rows_all[f"{t}_all"] for t in PREPROCESSING_TARGETS if t != "pre_identity"}
    best = max(cands, key=lambda t: cands[t]["gain_over_input"])
    result = {"rows": rows, "rows_all_positions": rows_all, "best_candidate": best,
              "best_gain_over_input": cands[best]["gain_over_input"], "best_layer0_r2": cands[best]["layer0_r2"],
              "best_input_r2": cands[best]["input_r2"], "best_control_r2": cands[best]["control_r2"]}
    if out is not None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [len(query_targets), len(example_targets)]})
        for ax, table, title in ((axes[0], rows, "query token"), (axes[1], rows_all, "every x token (r from the prefix)")):
            names = list(table)
            x = torch.arange(len(names)).float()
            for off, key, label in ((-0.27, "input_r2", "input (embed)"), (0.0, "layer0_r2", "layer 0 output"),
                                    (0.27, "control_r2", "random model, layer 0")):
                vals = [table[t][key] if table[t][key] is not None else float("nan") for t in names]
                ax.bar((x + off).tolist(), vals, width=0.27, label=label)
            ax.set_xticks(x.tolist(), names, rotation=30, ha="right")
            ax.set_title(title, fontsize=9)
        axes[0].set_ylabel("held-out R2")
        axes[0].legend(fontsize=7)
        result["figure"] = _savefig(fig, out, "preprocessing_probes.png")
    return result


# -- 5. later layers as GD steps -----------------------------------------------------------------

def gd_study(model: Any, data: Any, *, steps: tuple = (1, 2, 3, 4, 6, 8), out: PathLike = None) -> dict:
    """Per-layer P-probing risk against t-step GD on raw and preprocessed data, plus alignment metrics.

    PtO is tuned over :data:`PTO_CANDIDATES` and the step size. The same probes on a
    random model of the same config (``probe_risk_per_layer_control``) say how close
    to the algorithms chance alone comes.
    """
    from .gd import gd_alignment

    task = getattr(model, "task", None)
    if task is None:
        raise ValueError("gd_study needs a model that knows its task (ICLTransformer, or attach(..., task=...))")
    align = gd_alignment(model, data, steps=steps)
    norm = model_norm(model)
    curves = {}
    tuners = {"gd": bl.best_gd, "pto": lambda *a, **kw: bl.best_pto(*a, preprocessings=PTO_CANDIDATES, **kw)}
    for name, tuner in tuners.items():
        risks = []
        for t in steps:
            est = tuner(task, data.n_points, t, n_prompts=500, seed=20_000)
            pred = bl.prefix_predictions(est, data)[:, -1]
            risks.append(float(((pred - data.ys[:, -1]) ** 2).mean() / norm))
        curves[name] = risks
    from .model import ICLTransformer

    # a random model of the same config: how close to the algorithms does chance come?
    risk, control_risk = _layer_risk(model, data, control=isinstance(model, ICLTransformer))
    result = {"steps": list(steps), "probe_risk_per_layer": risk, "probe_risk_per_layer_control": control_risk,
              "gd_risk": curves["gd"], "pto_risk": curves["pto"], "alignment": align.to_dict()}
    if out is not None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        layers = list(range(len(result["probe_risk_per_layer"])))
        ax.plot(layers, result["probe_risk_per_layer"], marker="o", color="k", label="model: probe after layer (0 = input)")
        if control_risk is not None:
            ax.plot(layers, control_risk, marker="o", color="0.6", linestyle=":", label="random model of the same config")
        ax.plot(list(steps), curves["gd"], marker="s", label="GD, t steps (best lr)")
        ax.plot(list(steps), curves["pto"], marker="^", label="PtO, t steps (best preprocessing and lr)")
        ax.set_xlabel("layers used  /  GD steps t")
        ax.set_ylabel("risk (MSE / norm) at the query")
        ax.legend(fontsize=8)
        result["figure"] = _savefig(fig, out, "gd_steps.png")
    return result



# -- 6. the algorithm alone: PtO against GD, ridge and Lasso ------------------------------------

#: the preprocessings PtO is tuned over in the algorithm study (REFERENCE.md section 5's candidates)
PTO_CANDIDATES = ("reweight", power(0.5), power(2.0), rank_one(1.0))


def algorithm_study(
    *,
    dims: tuple = (8, 16),
    noises: tuple = (0.0, 0.5),
    s: int = 2,
    steps: int = 3,
    n_prompts: int = 1000,
    quick: bool = False,
    out: PathLike = None,
) -> dict:
    """Excess risk over n of t-step GD, t-step PtO, ridge, Lasso and the oracle, across d and noise (no model).

    PtO is tuned per n over :data:`PTO_CANDIDATES` and the step size; ``pto_choice``
    records which one won at each n.
    """
    from .tasks import SparseLinearRegression

    if quick:
        dims, noises, n_prompts = dims[:1], noises[-1:], 100
    settings = []
    for d in dims:
        for noise in noises:
            task = SparseLinearRegression(d=d, s=s, noise_std=noise)
            n_points = 2 * d + 1
            suite = baseline_suite(task, n_points, steps, quick=quick, pto_preprocessings=PTO_CANDIDATES)
            suite.pop("averaging")
            curves = {k: _curve(evaluate(est, task, n_points=n_points, n_prompts=n_prompts, seed=3)) for k, est in suite.items()}
            pto = suite[f"PtO {steps} steps (best lr)"]
            settings.append({"d": d, "noise_std": noise, "s": s, "n_points": n_points, "curves": curves,
                             "pto_choice": [pto.chosen(k) for k in range(n_points)]})
    result = {"steps": steps, "settings": settings}
    if out is not None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 3.2), squeeze=False)
        for ax, st in zip(axes[0], settings):
            for name, cur in st["curves"].items():
                ax.plot(cur["n_context"][1:], [max(v, 1e-4) for v in cur["excess_risk"][1:]], label=name)
            ax.set_yscale("log")
            ax.set_title(f"d={st['d']}, s={s}, noise={st['noise_std']}")
            ax.set_xlabel("in-context examples n")
        axes[0][0].set_ylabel("excess risk")
        axes[0][-1].legend(fontsize=7)
        result["figure"] = _savefig(fig, out, "algorithm.png")
    return result


# -- 7. the second seed: single- vs multi-head one-layer softmax attention ------------------------

def fit_inverse_d(ds: list[int], losses: list[float]) -> tuple[float, float]:
    """Least-squares fit ``loss(D) = c / D + e``; returns (c, e)."""
    a = torch.tensor([[1.0 / d, 1.0] for d in ds], dtype=torch.float64)
    sol = torch.linalg.lstsq(a, torch.tensor(losses, dtype=torch.float64).unsqueeze(1)).solution
    return float(sol[0]), float(sol[1])


def multihead_study(
    models: dict[str, Any],
    task: Task,
    *,
    d_min: int = 8,
    n_prompts: int = 2000,
    quick: bool = False,
    out: PathLike = None,
) -> dict:
    """Excess risk of each query-only model against the number of examples D, with fitted ``c / D + e``.

    ``models`` maps a label to a one-layer softmax-attention model (concatenated
    encoding); its ``cfg`` gives the embedding size p and the head count h.
    """
    if quick:
        n_prompts = 200
    rows = {}
    for name, model in models.items():
        n_points = model.cfg.max_points
        res = evaluate(model, task, n_points=n_points, n_prompts=n_prompts, seed=5)
        ds = [int(k) for k in res.n_context.tolist() if k >= d_min]
        losses = [float(res.excess_risk[k]) for k in ds]
        c, e = fit_inverse_d(ds, losses)
        rows[name] = {"p": model.cfg.d_model, "h": model.cfg.n_heads, "p_over_h": model.cfg.d_model / model.cfg.n_heads,
                      "D": ds, "excess_risk": losses, "c": c, "e": e}
    result = {"task": task.to_dict(), "d": task.d, "models": rows}
    by_p: dict[int, dict[int, dict]] = {}
    for row in rows.values():
        by_p.setdefault(row["p"], {})[row["h"]] = row
    comparisons = []
    for p_, heads in sorted(by_p.items()):
        if 1 in heads:
            for h, row in sorted(heads.items()):
                if h > 1:
                    comparisons.append({"p": p_, "h": h, "p_over_h_ge_d": p_ / h >= task.d, "c_single": heads[1]["c"],
                                        "c_multi": row["c"], "c_multi_over_single": row["c"] / heads[1]["c"],
                                        "risk_at_max_D_single": heads[1]["excess_risk"][-1], "risk_at_max_D_multi": row["excess_risk"][-1]})
    result["comparisons"] = comparisons
    if out is not None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        for name, row in rows.items():
            (line,) = ax.plot(row["D"], row["excess_risk"], marker="o", ms=3, label=f"{name} (c={row['c']:.2f})")
            fit = [row["c"] / d + row["e"] for d in row["D"]]
            ax.plot(row["D"], fit, ls="--", color=line.get_color(), lw=1)
        ax.set_xlabel("in-context examples D")
        ax.set_ylabel("excess risk (query)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        result["figure"] = _savefig(fig, out, "multihead.png")
    return result


# -- the recipe registry: name -> run(out, quick) ----------------------------------------------

def _zoo_model_and_data(quick: bool, seed: int = 7) -> tuple[Any, Any]:
    from .checkpoint import load_model

    model = load_model("default")
    return model, model.task.sample(256 if quick else 2000, model.cfg.max_points, seed=seed)


def head_count_variants(name: str = "default") -> dict[str, Any]:
    """The zoo model ``name`` and its shipped head-count variants (``name-h1``, ``name-h2``, ...)."""
    from .checkpoint import load_model, zoo_names

    return {n: load_model(n) for n in zoo_names() if n == name or n.startswith(f"{name}-h")}


def _recipe_risk(out: PathLike, quick: bool) -> dict:
    models = head_count_variants("default")
    task, n = models["default"].task, models["default"].cfg.max_points
    return risk_curves(models, task, n, quick=quick, out=out)


def _recipe_importance(out: PathLike, quick: bool) -> dict:
    return importance_study(*_zoo_model_and_data(quick), out=out)


def _recipe_pruning(out: PathLike, quick: bool) -> dict:
    pairs = noise_variants("default")
    model, data = _zoo_model_and_data(quick)
    sigma = float(model.task.noise_std)
    result = pruning_study(model, data, single_head=pairs.get(sigma, (None, None))[1], out=out)
    result["noise_sweep"] = noise_pruning_study(pairs, n_prompts=data.batch_size, quick=quick, known={sigma: result}, out=out)
    return result


def _recipe_preprocessing(out: PathLike, quick: bool) -> dict:
    return preprocessing_study(*_zoo_model_and_data(quick), out=out)


def _recipe_gd(out: PathLike, quick: bool) -> dict:
    return gd_study(*_zoo_model_and_data(quick), steps=(1, 2, 3) if quick else (1, 2, 3, 4, 6, 8), out=out)


def _recipe_algorithm(out: PathLike, quick: bool) -> dict:
    return algorithm_study(quick=quick, out=out)


SOFTMAX_ZOO = ("softmax-p16-h1", "softmax-p16-h4", "softmax-p8-h1", "softmax-p8-h4")


def _recipe_multihead(out: PathLike, quick: bool) -> dict:
    from .checkpoint import load_model, zoo_names

    missing = [n for n in SOFTMAX_ZOO if n not in zoo_names()]
    if missing:
        raise ValueError(f"the multihead recipe needs the zoo models {missing}: train them with icl-interp train --preset NAME")
    models = {n: load_model(n) for n in SOFTMAX_ZOO}
    return multihead_study(models, next(iter(models.values())).task, quick=quick, out=out)


RECIPES = {
    "risk_curves": _recipe_risk,
    "head_importance": _recipe_importance,
    "pruning_probing": _recipe_pruning,
    "preprocessing": _recipe_preprocessing,
    "gd_steps": _recipe_gd,
    "algorithm": _recipe_algorithm,
    "multihead": _recipe_multihead,
}


def run_recipe(name: str, out: Union[str, Path], quick: bool = False) -> dict:
    """Run recipe ``name``: figures and ``<name>.json`` (every plotted number) into ``out``."""
    from ._checks import check_choice

    check_choice("name", name, sorted(RECIPES))
    data = RECIPES[name](out, quick)
    save_json(data, out, f"{name}.json")
    return data
