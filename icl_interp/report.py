"""``icl-interp report``: every analysis on one model and its zoo siblings, as ``report.md`` and ``report.json``.

The studies (:mod:`icl_interp.studies`) compute the numbers, :mod:`icl_interp.claims`
decides each seed claim; this module runs them on the chosen model and renders
the results. The comparisons that need sibling models (head counts, the noise
sweep, the concatenated-token twin, the second seed) use the zoo index
(:func:`icl_interp.zoo.siblings`) and are skipped, with a note, when the model has none.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional, Union

from . import claims as cl
from . import studies as st
from .atomic import atomic_write_bytes, writable_folder
from .attention_view import attention_profile, plot_attention
from .checkpoint import ZOO_PREFIX, load_model, resolve_model, zoo_folder, zoo_names
from .evaluation import evaluate
from .runner import prepare
from .study_plots import plot_dynamics_study, save_figure
from .zoo import Siblings, siblings

__all__ = ["write_report", "single_model_studies"]

IN_MEMORY = "model (in memory)"
_SKIP_NOTES = {
    "head_counts": "no head-count siblings: the head-count comparison (Fig 1b, `head_count_order`) is skipped",
    "single_head": "no trained single-head sibling: `multihead_beats_single` is skipped",
    "noise_sweep": "no noise-sweep siblings: the pruning figure across noise levels (`noise_pruning`, `noise_single_head`) is skipped",
    "concat_twin": "no concatenated-token twin: the `concat_` claims are skipped",
    "linear_twin": "no trained linear-attention twin: the `linear_` claims are skipped",
    "second_seed": "no second-seed set (one-layer softmax models): `seed2_wide` and `seed2_narrow` are skipped",
    "second_seed_settings": "no models of the second seed's other settings: the `seed2_<setting>` claims are skipped",
}


def _attention(model: Any, data: Any, out: Path) -> dict:
    """Where each head's query attends, by example (attention_view), with its figure: numbers and picture of one source."""
    prof = attention_profile(model, data).to_dict()
    save_figure(plot_attention(model, data), out, "attention.png")
    return {**prof, "figure": "attention.png"}


def _stored_dynamics(name: str, out: Path) -> Optional[dict]:
    """The dynamics study a zoo model ships (``dynamics.json``, written by ``recipes/dynamics.py`` from its snapshots:
    minutes, so it is computed once, not at every report) with its figure redrawn; None when it ships none."""
    stored = zoo_folder(name) / "dynamics.json" if name in zoo_names() else None
    if stored is None or not stored.is_file():
        return None
    dyn = json.loads(stored.read_text())
    save_figure(plot_dynamics_study(dyn), out, "dynamics.png")
    return {**dyn, "figure": "dynamics.png", "source": f"icl_interp/zoo/{name}/dynamics.json (python recipes/dynamics.py --model {name})"}


def _dynamics_lines(d: dict) -> list[str]:
    """The mechanism over training: when the model leaves the ridge plateau and when each claim holds."""
    s = d["summary"]
    lines = ["", "## The mechanism over training", "", f"From the model's training snapshots ({d['source']}).", "",
             "![dynamics](dynamics.png)", "",
             f"Leaves the ridge plateau (error clearly below the best ridge's) at step {s['leaves_ridge_plateau_at']}.", "",
             "| claim | reproduced from step (and on) | relative to leaving the plateau |", "|---|---|---|"]
    lines += [f"| `{i}` | {'no snapshot' if c['reproduced_from'] is None else c['reproduced_from']} | {c['relative_to_plateau_exit']} |"
              for i, c in s["claims"].items()]
    lines += ["", "| step | error / ridge | error / Lasso | " + " | ".join(f"`{i}`" for i in s["claims"]) + " |",
              "|---|---|---|" + "---|" * len(s["claims"])]
    lines += [f"| {r['step']} | {r['over_ridge']:.2f} | {r['over_lasso']:.2f} | "
              + " | ".join(r["claims"].get(i, {}).get("verdict", "-") for i in s["claims"]) + " |" for r in d["rows"]]
    if d.get("llc"):
        lines += st.dynamics.llc_lines(d["llc"])
    return lines


def _resolve(model: Any) -> tuple[str, Any, Siblings]:
    """(label, loaded model, siblings) for a zoo name, a saved model folder or an ICLTransformer in memory."""
    from .model import ICLTransformer

    if isinstance(model, ICLTransformer):
        if model.task is None:
            raise ValueError("model must know its task (ICLTransformer(cfg, task)); got one with task None")
        return IN_MEMORY, model, Siblings()
    if not isinstance(model, (str, Path)):
        raise TypeError(f"model must be a zoo name, a saved model folder or an ICLTransformer, got {type(model).__name__}")
    try:
        folder, zoo_name = resolve_model(model)  # the name rule: zoo:NAME, ./NAME, a bare name only where unambiguous
    except ValueError as e:
        raise ValueError(f"model: {e}") from None
    if zoo_name is None:
        return str(model), load_model(folder), Siblings()
    return zoo_name, load_model(folder), siblings(ZOO_PREFIX + zoo_name)


def _collect(name: str, model: Any, sib: Siblings, quick: bool, out: Path) -> dict:
    """Run every study that applies to ``model`` (and its siblings) on the same prompts; the results by study."""
    import torch

    loaded = {name: model}

    def get(zoo_name: str) -> Any:  # each zoo model loaded once
        if zoo_name not in loaded:
            loaded[zoo_name] = load_model(ZOO_PREFIX + zoo_name)
        return loaded[zoo_name]

    task, n = model.task, model.cfg.max_points
    n_prompts = 256 if quick else 2000
    data = prepare(model, task.sample(n_prompts, n, seed=7))  # one validated batch and clean forward for every study
    r: dict[str, Any] = {"model": name, "model_config": model.cfg.to_dict(), "quick": quick}
    variants = {v: get(v) for v in sib.head_counts}
    variants.setdefault(name, model)
    r["risk"] = st.risk_curves(variants, task, n, n_prompts=n_prompts, seed=1, quick=quick, out=out)
    r["quality_bar"] = cl.quality_bar(r["risk"], name, task.d)
    # the head-count siblings (and below the concatenated twin) share the task, so the same tuned baselines: each one's bar
    # (issue 14: the comparison models reach the bar too, or the report says which do not)
    r["quality_bar_siblings"] = {v: cl.quality_bar(r["risk"], v, task.d) for v in variants if v != name}
    r["head_counts"] = st.head_count_summary(r["risk"], variants)
    r["importance"] = st.importance_study(model, data, out=out)
    r["attention"] = _attention(model, data, out)
    single = get(sib.single_head) if sib.single_head else None
    r["pruning"] = st.pruning_study(model, data, single_head=single, importance=torch.tensor(r["importance"]["ablation"]), out=out)
    pairs = {}
    for full, one in sib.noise_sweep:
        pairs[float(get(full).task.noise_std)] = (get(full), get(one) if one else None)
    if len(pairs) > 1:
        known = {float(task.noise_std): r["pruning"]}  # the same model, prompts and seed: not run again
        r["pruning_noise"] = st.noise_pruning_study(pairs, n_prompts=n_prompts, quick=quick, known=known, out=out)
        r["quality_bar_noise"] = {}  # each other level's pair against its own task's tuned baselines
        for full, one in sib.noise_sweep:
            if full != name:
                level = {m: get(m) for m in (full, one) if m}
                risk = st.risk_curves(level, get(full).task, n, n_prompts=n_prompts, seed=1, quick=quick)
                r["quality_bar_noise"].update({m: cl.quality_bar(risk, m, task.d) for m in level})
    r["preprocessing"] = st.preprocessing_study(model, data, out=out)
    r["gd"] = st.gd_study(model, data, out=out)
    if sib.concat_twin:  # the same questions where one token holds x_i and y_i together
        twin = get(sib.concat_twin)
        tdata = prepare(twin, twin.task.sample(n_prompts, twin.cfg.max_points, seed=7))
        curve = evaluate(twin, twin.task, n_points=twin.cfg.max_points, n_prompts=r["risk"]["n_prompts"], seed=1)  # the risk prompts
        r["concat"] = {"model": sib.concat_twin, "error": curve.error.tolist(),
                       "preprocessing": st.preprocessing_study(twin, tdata), "gd": st.gd_study(twin, tdata)}
        if twin.task.to_dict() == task.to_dict() and len(curve.error) == len(r["risk"]["curves"][name]["error"]):  # same prompts
            with_twin = {"curves": {**r["risk"]["curves"], sib.concat_twin: {"error": r["concat"]["error"]}}}
            r["quality_bar_siblings"][sib.concat_twin] = cl.quality_bar(with_twin, sib.concat_twin, task.d)
    if sib.linear_twin:  # the same task in the seed's theory class (bidirectional linear attention): every single-model claim
        r["linear"] = single_model_studies(get(sib.linear_twin), n_prompts=n_prompts, name=sib.linear_twin)
    if sib.second_seed:
        softmax = {v: get(v) for v in sib.second_seed}
        r["multihead"] = st.multihead_study(softmax, next(iter(softmax.values())).task, quick=quick, out=out)
    dyn = _stored_dynamics(name, out)
    if dyn is not None:
        r["dynamics"] = dyn
    if sib.second_seed_settings:  # the seed's other settings (our definitions: README)
        r["seed2_settings"] = st.settings_study({s: {v: get(v) for v in names} for s, names in sib.second_seed_settings},
                                                quick=quick, out=out)
    have = {"head_counts": len(variants) > 1, "single_head": single is not None, "noise_sweep": len(pairs) > 1,
            "concat_twin": bool(sib.concat_twin), "linear_twin": bool(sib.linear_twin), "second_seed": bool(sib.second_seed),
            "second_seed_settings": bool(sib.second_seed_settings)}
    r["skipped"] = {k: f"`{name}` has {_SKIP_NOTES[k]}" for k, ok in have.items() if not ok}
    if sib.other_recipe:  # declared, present, but not comparable: say which, and how to make them so
        r["skipped"]["other_recipe"] = (
            f"declared siblings trained with another recipe than `{name}` are left out of the comparisons: "
            + ", ".join(f"`{n}`" for n in sib.other_recipe) + " (retrain each with `icl-interp train --preset NAME`)")
    if sib.missing:  # declared, not in the zoo in use
        r["skipped"]["not_in_zoo"] = (
            f"declared siblings of `{name}` not in the zoo (not trained yet): " + ", ".join(f"`{n}`" for n in sib.missing)
            + " (train each with `icl-interp train --preset NAME --out runs/NAME`, then copy `runs/NAME/model` to the zoo)")
    return r


def single_model_studies(model: Any, *, n_prompts: int = 2000, seed: int = 7, name: Optional[str] = None) -> dict:
    """:func:`icl_interp.studies.single_model_studies` of a zoo name, a saved folder or an in-memory model."""
    label, net, _ = _resolve(model)
    return st.single_model_studies(net, n_prompts=n_prompts, seed=seed, name=label if name is None else name)


def write_report(out: Union[str, Path], *, model: Any = "default", quick: bool = False) -> dict:
    """Run every analysis on ``model`` and write ``out/report.md`` (with its figures) and ``out/report.json``.

    ``model``: a zoo name (its siblings in the zoo index join the comparisons), a
    saved model folder or an ``ICLTransformer`` in memory (no siblings: those
    comparisons are skipped with a note). ``quick``: 256 prompts instead of 2,000.
    Returns the results; ``results["claims"]`` lists each claim with its stable ``id``.
    """
    if not isinstance(out, (str, Path)):
        raise TypeError(f"out must be a folder path (str or Path), got {type(out).__name__}")
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be a bool, got {type(quick).__name__}")
    t0 = time.perf_counter()
    name, net, sib = _resolve(model)
    out = writable_folder(out, "out")  # before minutes of analyses
    results = _collect(name, net, sib, quick, out)  # writes the figures
    results["claims"] = [c.to_dict() for c in cl.decide(results)]
    results["seconds"] = round(time.perf_counter() - t0, 1)
    markdown = _markdown(results, net)
    # after the figures, each file replaced as one unit: a failed write leaves the previous report whole
    atomic_write_bytes(out / "report.json", json.dumps(results, indent=1).encode())
    atomic_write_bytes(out / "report.md", markdown.encode())
    return results


# -- rendering ----------------------------------------------------------------------------------

def _probe_table(pre: dict) -> list[str]:
    """Rows ``| target (where) | input R2 | layer-0 R2 | random-model R2 |`` of a preprocessing study."""
    lines, every = [], f"every token; r over {pre.get('view_words', 'the examples before it')}"
    for table, where in (("rows", "query token"), ("rows_all_positions", every)):
        for t, row in pre[table].items():
            ctrl = "n/a" if row["control_r2"] is None else f"{row['control_r2']:.3f}"
            lines.append(f"| {t} ({where}) | {row['input_r2']:.3f} | {row['layer0_r2']:.3f} | {ctrl} |")
    return lines


def _step_table(gd: dict) -> list[str]:
    lines = ["| t | GD risk (best lr) | PtO risk (best candidate and lr) |", "|---|---|---|"] + [
        f"| {t} | {a:.3f} | {b:.3f} |" for t, a, b in zip(gd["steps"], gd["gd_risk"], gd["pto_risk"])]
    its = gd.get("iterates") or {}
    if its.get("layers"):  # the claims' numbers: each algorithm run's gaps after the later layers
        layers = its["layers"]
        lines += ["", "Gap of each later layer to the algorithm's iterate (t = layer + t0; the last layer: the model's output, "
                  "else a probe's sqrt(1 - R2)), step size matched to the model's output:", "",
                  "| algorithm | t0 | step size | " + " | ".join(f"layer {l}" for l in layers) + " | mean |",
                  "|---" * (len(layers) + 4) + "|"]
        for rec in its["algorithms"].values():
            gaps = [rec["gaps"].get(str(l), 1.0) for l in layers]
            lines.append(f"| {rec['family']} | {rec['t0']} | {rec['step_size']:.4g} | " + " | ".join(f"{g:.3f}" for g in gaps)
                         + f" | {sum(gaps) / len(gaps):.3f} |")
    return lines


def _settings_lines(study: dict) -> list[str]:
    """The section on the second seed's other settings: the c/D fits per model, and each prior model's theta_0 probe."""
    lines = ["", "## The second seed's other settings", "", "![multihead settings](multihead_settings.png)", "",
             "Each setting is the base task with one change (our definitions: README). Claims `seed2_<setting>`.", "",
             "| setting | model | p/h | fitted c | fitted e | excess risk at the largest D |", "|---|---|---|---|---|---|"]
    for setting, res in study["settings"].items():
        lines += [f"| {setting} | {n} | {m['p_over_h']:g} | {m['c']:.3f} | {m['e']:.4f} | {m['excess_risk'][-1]:.4f} |"
                  for n, m in res["models"].items()]
    priors = {s: res["prior"] for s, res in study["settings"].items() if "prior" in res}
    if priors:
        lines += ["", "Has a model learned theta_0? u: its predictions fitted on x_q over the prompts (its mean function); the "
                  "distance of u from theta_0 over the norm of theta_0 is 0 for predicting theta_0 . x_q and 1 for predicting 0.",
                  "", "| setting | predictor | D | error | distance of u from theta_0 (relative) |", "|---|---|---|---|---|"]
        for setting, prior in priors.items():
            lines += [f"| {setting} | {n} | {prior['D'][0]} | {row['error'][0]:.4f} | {row['theta0_distance'][0]:.3f} |"
                      for n, row in prior["rows"].items()]
    return lines


def _linear_lines(lin: dict) -> list[str]:
    """The section on the linear-attention twin: its error, head importance, probes and per-layer risk (claims `linear_*`)."""
    imp = lin["importance"]
    lines = ["", f"## The same task learnt with bidirectional linear attention (`{lin['model']}`)", "",
             f"Claims `linear_*`. Error (MSE / s) at n = {len(lin['error']) - 1}: {lin['error'][-1]:.3f}; clean error on the "
             f"study prompts {imp['clean_error']:.3f} (context-free {imp['context_free_error']:.3f}). Ablation importance "
             "(rows = layers): " + "; ".join(", ".join(f"{v:+.3f}" for v in row) for row in imp["ablation"]) + ".", "",
             "| target | input R2 | layer-0 R2 | random-model R2 |", "|---|---|---|---|"]
    lines += _probe_table(lin["preprocessing"])
    return lines + ["", "P-probing risk per layer (input first): " + ", ".join(f"{v:.3f}" for v in lin["gd"]["probe_risk_per_layer"]), ""
                    ] + _step_table(lin["gd"])


def _bar_table(title: str, bars: dict) -> list[str]:
    """Markdown rows of :func:`claims.quality_bar` results by model (nothing when there are none)."""
    if not bars:
        return []
    lines = ["", title, "", "| model | / best ridge | / best Lasso | below ridge, n >= d/2 | below OLS, n < d | bar |",
             "|---|---|---|---|---|---|"]
    return lines + [f"| `{v}` | {_ratio(b, 'ridge')} | {_ratio(b, 'lasso')} | "
                    f"{b['below_ridge_for_all_n_ge_d_half']} | {b['below_ols_for_all_n_lt_d']} | {'met' if b['meets_bar'] else 'not met'} |"
                    for v, b in bars.items()]


def _unsettled(bar: dict) -> str:
    """A sentence naming the ratios whose 5-95% interval straddles its bar (the verdict could flip on other prompts)."""
    names = [name for name in ("ridge", "Lasso") if bar.get(f"{name.lower()}_ratio_settled") is False]
    if not names:
        return ""
    which = f"The {names[0]} ratio's 5-95% interval" if len(names) == 1 else "Both ratios' 5-95% intervals"
    return (f" {which} (paired bootstrap over the prompts) {'contains its' if len(names) == 1 else 'contain their'} bar: "
            "on this many prompts that part of the verdict is within sampling error.")


def _ratio(bar: dict, key: str) -> str:
    """``0.843 (0.83-0.86)``: a quality-bar ratio with its 5-95% paired bootstrap interval where the bar has one."""
    text = f"{bar[f'ratio_to_best_{key}_at_largest_n']:.3f}"
    interval = bar.get(f"ratio_to_best_{key}_interval")
    return text if interval is None else f"{text} ({interval[0]:.3f}-{interval[1]:.3f})"


def _markdown(r: dict, model: Any) -> str:
    c = model.cfg
    q = r["quality_bar"]
    lines = [
        f"# icl_interp report: `{r['model']}`",
        "",
        f"Model: {c.n_layers} layers x {c.n_heads} heads, d_model {c.d_model}, {c.encoding} encoding; task {model.task.to_dict()}.",
        f"{'Quick mode (small samples): numbers are rough.' if r['quick'] else ''} Ran in {r['seconds']} s.",
        "",
        "## Claims",
        "",
        "Each claim is decided in `icl_interp/claims/` (thresholds named there); `report.json` lists them by `id`.",
        "",
        "| id | claim | verdict | the number that decides |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{x['id']}` | {x['claim']} | **{x['verdict']}** | {x['number']} |" for x in r["claims"]]
    if r["skipped"]:
        lines += ["", "Skipped (siblings are declared in the zoo index, `icl_interp/zoo/index.json`):", ""]
        lines += [f"- {note}" for note in r["skipped"].values()]
    lines += [
        "",
        "## Risk against the number of in-context examples",
        "",
        "![risk curves](risk_curves.png)",
        "",
        f"Quality bar ({'met' if q['meets_bar'] else 'NOT met'}): error at n = {q['n_largest']} is "
        f"{_ratio(q, 'ridge')}x the best ridge's (bar {cl.QUALITY_BAR_RIDGE_RATIO:g}x) and "
        f"{_ratio(q, 'lasso')}x the best Lasso's (bar {cl.QUALITY_BAR_LASSO_RATIO:g}x); below the best ridge "
        f"for every n >= d/2: {q['below_ridge_for_all_n_ge_d_half']}; below OLS for every 1 <= n < d: {q['below_ols_for_all_n_lt_d']}."
        + _unsettled(q),
        "",
        "| n | model | best ridge | best Lasso | OLS |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {row['n']} | {row['model']:.3f} | {row['ridge']:.3f} | {row['lasso']:.3f} | {row['ols']:.3f} |" for row in q["per_n"]]
    lines += _bar_table("The siblings on the same task (head counts, the concatenated twin) against the same baselines:",
                        r["quality_bar_siblings"])
    lines += _bar_table("The noise sweep's other levels, each model against its own task's tuned baselines:",
                        r.get("quality_bar_noise", {}))
    imp = r["importance"]
    lines += [
        "",
        "## Head importance",
        "",
        "![head importance](head_importance.png)",
        "",
        f"Clean error {imp['clean_error']:.3f}. Spearman correlation of ablation and gradient importance: "
        f"{imp['spearman_ablation_vs_gradient']:.2f}.",
        "",
        "## Attention patterns",
        "",
        "Where the query token (it predicts the last y) attends, averaged over the prompts, by example index: x tokens "
        "and y tokens apart (`ii.attention_profile`, `ii.plot_attention`).",
        "",
        "![attention](attention.png)",
        "",
        "## Pruning and per-layer P-probing",
        "",
        "![pruning and probing](pruning_probing.png)",
        "",
        f"Pruned mask (rows = layers): `{r['pruning']['mask']}`.",
        "",
    ]
    if "pruning_noise" in r:
        lines += ["### Across noise levels", "", "![pruning across noise levels](pruning_noise.png)", "",
                  "| noise std | all heads | pruned | single-head model | noise floor | training steps |", "|---|---|---|---|---|---|"]
        for k, v in r["pruning_noise"]["levels"].items():
            single = f"{v['error_single_head']:.3f}" if "error_single_head" in v else "n/a"
            lines.append(f"| {k} | {v['error_full']:.3f} | {v['error_pruned']:.3f} | {single} | {v['noise_floor']:.3f} | {v['train_steps']} |")
        lines.append("")
    g = r["gd"]
    control = g.get("probe_risk_per_layer_control")
    lines += ["## Layer 0 as preprocessing", "", "![preprocessing probes](preprocessing_probes.png)", "",
              "| target | input R2 | layer-0 R2 | random-model R2 |", "|---|---|---|---|"]
    lines += _probe_table(r["preprocessing"])
    lines += [
        "",
        "## Later layers as gradient-descent steps",
        "",
        "![gd steps](gd_steps.png)",
        "",
        "P-probing risk per layer (input first): " + ", ".join(f"{v:.3f}" for v in g["probe_risk_per_layer"]),
        "",
        "The same probes on a random model of the same config: " + (", ".join(f"{v:.3f}" for v in control) if control else "n/a"),
        "",
    ] + _step_table(g)
    if "concat" in r:
        cc = r["concat"]
        lines += ["", f"## The same questions with concatenated [x; y] tokens (`{cc['model']}`)", "",
                  "One token holds x_i and y_i together, so layer 0 could form x_i * y_i-like features within a token. "
                  f"Error (MSE / s) at n = {len(cc['error']) - 1}: {cc['error'][-1]:.3f}.", "",
                  "| target | input R2 | layer-0 R2 | random-model R2 |", "|---|---|---|---|"]
        lines += _probe_table(cc["preprocessing"])
        lines += ["", "P-probing risk per layer (input first): " + ", ".join(f"{v:.3f}" for v in cc["gd"]["probe_risk_per_layer"]), ""]
        lines += _step_table(cc["gd"])
    if "linear" in r:
        lines += _linear_lines(r["linear"])
    if "multihead" in r:
        lines += ["", "## Second seed: single- vs multi-head one-layer softmax attention", "", "![multihead](multihead.png)", "",
                  "| model | p | h | p/h | fitted c | fitted e |", "|---|---|---|---|---|---|"]
        lines += [f"| {n} | {m['p']} | {m['h']} | {m['p_over_h']:g} | {m['c']:.3f} | {m['e']:.4f} |" for n, m in r["multihead"]["models"].items()]
    if "dynamics" in r:
        lines += _dynamics_lines(r["dynamics"])
    if "seed2_settings" in r:
        lines += _settings_lines(r["seed2_settings"])
    lines += ["", "Every number is in `report.json`.", ""]
    return "\n".join(lines)
