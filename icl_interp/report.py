"""``icl-interp report``: every analysis on the shipped zoo, as one Markdown report.

Runs the experiments of :mod:`icl_interp.experiments` on the shipped models (no
training), writes ``report.md`` with the figures beside it and ``report.json``
with every number, and states each seed claim as reproduced, not reproduced or
mixed, with the number that decides.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Union

from . import experiments as ex
from .checkpoint import load_model, zoo_names
from .evaluation import evaluate

__all__ = ["write_report", "verdict"]


def verdict(ok: bool, partly: bool = False) -> str:
    return "reproduced" if ok else ("mixed" if partly else "not reproduced")


def _claims(results: dict, n_layers: int) -> list[dict]:
    imp, prune, pre, gd = results["importance"], results["pruning"], results["preprocessing"], results["gd"]
    clean = imp["clean_error"]
    layer0 = imp["ablation"][0]
    rel = [v / clean for v in layer0]
    shares = imp["later_layers_top_head_share"]
    claims = [
        {
            "claim": "Layer 0 uses all its heads: masking any single layer-0 head raises the error.",
            "verdict": verdict(all(r > 0.05 for r in rel), all(r > 0 for r in rel)),
            "number": "relative error increase per layer-0 head: " + ", ".join(f"{r:+.1%}" for r in rel),
        },
        {
            "claim": "Later layers mostly use a single head (the top head holds most of the layer's importance).",
            "verdict": verdict(bool(shares) and all(s >= 0.5 for s in shares), any(s >= 0.5 for s in shares)),
            "number": "top-head share of positive ablation importance, layers 1..: " + ", ".join(f"{s:.2f}" for s in shares),
        },
        {
            "claim": "Pruning to all heads of layer 0 plus the top head of each later layer preserves performance.",
            "verdict": verdict(prune["pruned_over_full"] <= 1.1, prune["pruned_over_full"] <= 1.5),
            "number": f"pruned / full error = {prune['pruned_over_full']:.3f} "
                      f"({prune['error_pruned']:.3f} vs {prune['error_full']:.3f})",
        },
    ]
    claims += _mechanism_claims(pre, gd, n_layers, "")
    if "concat" in results:
        claims += _mechanism_claims(results["concat"]["preprocessing"], results["concat"]["gd"], n_layers,
                                    f"With concatenated [x; y] tokens (`{results['concat']['model']}`): ")
    if "error_single_head" in prune:
        single, full = prune["error_single_head"], prune["error_full"]
        claims.append({
            "claim": "Multi-head beats a trained single-head model of the same size (the seed's Fig 1b / Fig 5 comparison).",
            "verdict": verdict(single > 1.1 * full, single > full),
            "number": f"error single-head / all heads = {single / full:.3f} ({single:.3f} vs {full:.3f}); pruned: {prune['error_pruned']:.3f}",
        })
    sweep = results.get("pruning_noise", {}).get("levels", {})
    if sweep:
        worst = max(v["pruned_over_full"] for v in sweep.values())
        claims.append({
            "claim": "Across noise levels (Fig 5) the pruned model stays close to the full model.",
            "verdict": verdict(worst <= 1.1, worst <= 1.5),
            "number": "pruned / full error by noise std: " + ", ".join(f"{k}: {v['pruned_over_full']:.2f}" for k, v in sweep.items()),
        })
        singles = {k: v["single_over_full"] for k, v in sweep.items() if "single_over_full" in v}
        if singles:
            claims.append({
                "claim": "Across noise levels (Fig 5) the trained single-head model is worse than the multi-head model.",
                "verdict": verdict(all(r > 1.1 for r in singles.values()), any(r > 1.0 for r in singles.values())),
                "number": "single-head / all-heads error by noise std: " + ", ".join(f"{k}: {r:.2f}" for k, r in singles.items()),
            })
    heads = results.get("head_counts", {})
    if len(heads) > 1:
        hs = sorted(heads)
        errs = [heads[h]["last"] for h in hs]
        monotone = all(b <= a * 1.02 for a, b in zip(errs, errs[1:]))
        claims.append({
            "claim": "More heads, lower error at the same size (Fig 1b).",
            "verdict": verdict(monotone and errs[-1] < 0.9 * errs[0], errs[-1] < errs[0]),
            "number": "error at the largest n by head count: " + ", ".join(f"h={h}: {e:.3f}" for h, e in zip(hs, errs))
                      + "; mean over n = 1..: " + ", ".join(f"h={h}: {heads[h]['mean']:.3f}" for h in hs),
        })
    for cmp in results.get("multihead", {}).get("comparisons", []):
        wide = cmp["p_over_h_ge_d"]
        ratio = cmp["c_multi_over_single"]
        claims.append({
            "claim": (f"Second seed: with p/h >= d (p={cmp['p']}, h={cmp['h']}) multi-head attention has a smaller c in c/D than single-head."
                      if wide else f"Second seed: with p/h < d (p={cmp['p']}, h={cmp['h']}) the multi-head advantage shrinks or reverses."),
            "verdict": verdict(ratio < 0.9, ratio < 1.0) if wide else verdict(ratio >= 1.0, ratio >= 0.9),
            "number": f"c multi / c single = {ratio:.2f} (c = {cmp['c_multi']:.2f} vs {cmp['c_single']:.2f}); "
                      f"excess risk at the largest D: {cmp['risk_at_max_D_multi']:.3f} vs {cmp['risk_at_max_D_single']:.3f}",
        })
    return claims


def _mechanism_claims(pre: dict, gd: dict, n_layers: int, prefix: str) -> list[dict]:
    """The preprocessing claim (layer 0) and the GD-step claims (later layers) for one model."""
    claims = []
    best = pre["best_candidate"]
    control = pre["best_control_r2"] if pre["best_control_r2"] is not None else float("nan")
    claims.append({
        "claim": prefix + "Layer 0 preprocesses the context: at every x token its output encodes a preprocessed x_i better than the input does.",
        "verdict": verdict(pre["best_gain_over_input"] > 0.05 and pre["best_layer0_r2"] > control + 0.05, pre["best_gain_over_input"] > 0.02),
        "number": f"best candidate {best}: R2 {pre['best_layer0_r2']:.3f} after layer 0 vs {pre['best_input_r2']:.3f} at the input "
                  f"and {control:.3f} for the random-model control",
    })
    # per-layer probe risk after layer l (l >= 1) against t = l steps of GD / PtO, and the same for a random model
    steps = gd["steps"]
    layers = [l for l in range(1, n_layers) if l in steps]
    if layers:
        def distance(risk: list, algo: str) -> float:  # mean |log(model risk / algorithm risk)|, risk[l + 1] is after layer l
            return sum(abs(math.log(risk[l + 1] / gd[algo][steps.index(l)])) for l in layers) / len(layers)

        d_gd, d_pto = distance(gd["probe_risk_per_layer"], "gd_risk"), distance(gd["probe_risk_per_layer"], "pto_risk")
        ctrl = gd.get("probe_risk_per_layer_control")
        c_gd, c_pto = (distance(ctrl, "gd_risk"), distance(ctrl, "pto_risk")) if ctrl else (math.inf, math.inf)
        best, chance = min(d_gd, d_pto), min(c_gd, c_pto)
        claims.append({
            "claim": prefix + "Each later layer acts like one gradient-descent step (risk after layer l close to the best "
                              "l-step GD or PtO, and much closer than a random model's).",
            "verdict": verdict(best < 0.2 and best < 0.5 * chance, best < 0.5 and best < chance),
            "number": f"mean abs(log(model risk / algorithm risk)) over layers {layers[0]}..{layers[-1]} with t = layer: "
                      f"GD {d_gd:.2f}, PtO {d_pto:.2f}; a random model of the same config: GD {c_gd:.2f}, PtO {c_pto:.2f}",
        })
        claims.append({
            "claim": prefix + "The steps run on preprocessed data: per-layer risk tracks PtO better than GD on the raw data.",
            "verdict": verdict(d_pto < d_gd and d_pto < 0.2 and d_pto < 0.5 * c_pto, d_pto < d_gd),
            "number": f"PtO distance {d_pto:.2f} vs GD distance {d_gd:.2f} (smaller is closer; random model: PtO {c_pto:.2f}, GD {c_gd:.2f})",
        })
    return claims


def write_report(out: Union[str, Path], *, quick: bool = False, model_name: str = "default") -> dict:
    """Run every analysis on the shipped model ``model_name`` and write ``out/report.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if model_name not in zoo_names():
        raise ValueError(f"model_name {model_name!r} is not in the zoo; shipped: {zoo_names()}")
    t0 = time.perf_counter()
    model = load_model(model_name)
    task = model.task
    n = model.cfg.max_points
    n_prompts = 256 if quick else 2000
    data = task.sample(n_prompts, n, seed=7)
    results: dict[str, Any] = {"model": model_name, "model_config": model.cfg.to_dict(), "quick": quick}
    variants = {**ex.head_count_variants(model_name), model_name: model}
    results["risk"] = ex.risk_curves(variants, task, n, n_prompts=n_prompts, seed=1, quick=quick, out=out)
    results["quality_bar"] = ex.quality_bar(results["risk"], model_name, task.d)
    curves = results["risk"]["curves"]
    results["head_counts"] = {v.cfg.n_heads: {"last": curves[k]["error"][-1], "mean": sum(curves[k]["error"][1:]) / (n - 1)}
                              for k, v in variants.items()}
    results["importance"] = ex.importance_study(model, data, out=out)
    import torch

    single = variants.get(f"{model_name}-h1")  # loaded once, with the risk-curve variants
    results["pruning"] = ex.pruning_study(model, data, single_head=single, importance=torch.tensor(results["importance"]["ablation"]), out=out)
    pairs = ex.noise_variants(model_name, loaded=variants)
    if len(pairs) > 1:
        known = {float(task.noise_std): results["pruning"]}  # the same model, prompts and seed: not run again
        results["pruning_noise"] = ex.noise_pruning_study(pairs, n_prompts=n_prompts, quick=quick, known=known, out=out)
    results["preprocessing"] = ex.preprocessing_study(model, data, out=out)
    results["gd"] = ex.gd_study(model, data, out=out)
    concat = f"{model_name}-concat"
    if concat in zoo_names():  # the same questions where one token holds x_i and y_i together
        cmodel = load_model(concat)
        cdata = cmodel.task.sample(n_prompts, cmodel.cfg.max_points, seed=7)
        curve = evaluate(cmodel, cmodel.task, n_points=cmodel.cfg.max_points, n_prompts=n_prompts, seed=1)
        results["concat"] = {"model": concat, "error": curve.error.tolist(),
                             "preprocessing": ex.preprocessing_study(cmodel, cdata), "gd": ex.gd_study(cmodel, cdata)}
    if all(n in zoo_names() for n in ex.SOFTMAX_ZOO):
        softmax = {n: load_model(n) for n in ex.SOFTMAX_ZOO}
        results["multihead"] = ex.multihead_study(softmax, next(iter(softmax.values())).task, quick=quick, out=out)
    results["claims"] = _claims(results, model.cfg.n_layers)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "report.json").write_text(json.dumps(results, indent=1))
    (out / "report.md").write_text(_markdown(results, model))
    return results


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
        "| claim | verdict | the number that decides |",
        "|---|---|---|",
    ]
    for cl in r["claims"]:
        lines.append(f"| {cl['claim']} | **{cl['verdict']}** | {cl['number']} |")
    if "multihead" not in r:
        lines.append("| Second seed (Cui et al.): multi-head beats single-head one-layer softmax attention by a constant factor. | "
                     "**not run** | the one-layer softmax models are not in the zoo |")
    lines += [
        "",
        "## Risk against the number of in-context examples",
        "",
        "![risk curves](risk_curves.png)",
        "",
        f"Quality bar: error at n = {q['n_largest']} is {q['ratio_to_best_lasso_at_largest_n']:.2f}x the best Lasso's "
        f"({'within' if q['within_1.5x'] else 'NOT within'} 1.5x); below OLS for every 1 <= n < d: {q['below_ols_for_all_n_lt_d']}.",
        "",
        "| n | model | best Lasso | OLS |",
        "|---|---|---|---|",
    ]
    lines += [f"| {row['n']} | {row['model']:.3f} | {row['lasso']:.3f} | {row['ols']:.3f} |" for row in q["per_n"]]
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
    lines += [
        "## Layer 0 as preprocessing",
        "",
        "![preprocessing probes](preprocessing_probes.png)",
        "",
        "| target | input R2 | layer-0 R2 | random-model R2 |",
        "|---|---|---|---|",
    ]
    for table in ("rows", "rows_all_positions"):
        for t, row in r["preprocessing"][table].items():
            ctrl = "n/a" if row["control_r2"] is None else f"{row['control_r2']:.3f}"
            where = "query token" if table == "rows" else "every x token"
            lines.append(f"| {t} ({where}) | {row['input_r2']:.3f} | {row['layer0_r2']:.3f} | {ctrl} |")
    g = r["gd"]
    lines += [
        "",
        "## Later layers as gradient-descent steps",
        "",
        "![gd steps](gd_steps.png)",
        "",
        "P-probing risk per layer (input first): " + ", ".join(f"{v:.3f}" for v in g["probe_risk_per_layer"]),
        "",
        "The same probes on a random model of the same config: "
        + (", ".join(f"{v:.3f}" for v in g["probe_risk_per_layer_control"]) if g.get("probe_risk_per_layer_control") else "n/a"),
        "",
        "| t | GD risk | PtO risk |",
        "|---|---|---|",
    ]
    lines += [f"| {t} | {a:.3f} | {b:.3f} |" for t, a, b in zip(g["steps"], g["gd_risk"], g["pto_risk"])]
    if "concat" in r:
        cc = r["concat"]
        lines += ["", f"## The same questions with concatenated [x; y] tokens (`{cc['model']}`)", "",
                  "One token holds x_i and y_i together, so layer 0 could form x_i * y_i-like features within a token. "
                  f"Error (MSE / s) at n = {len(cc['error']) - 1}: {cc['error'][-1]:.3f}.", "",
                  "| target | input R2 | layer-0 R2 | random-model R2 |", "|---|---|---|---|"]
        for table in ("rows", "rows_all_positions"):
            for t, row in cc["preprocessing"][table].items():
                ctrl = "n/a" if row["control_r2"] is None else f"{row['control_r2']:.3f}"
                lines.append(f"| {t} ({'query token' if table == 'rows' else 'every token'}) | {row['input_r2']:.3f} | {row['layer0_r2']:.3f} | {ctrl} |")
        lines += ["", "P-probing risk per layer (input first): " + ", ".join(f"{v:.3f}" for v in cc["gd"]["probe_risk_per_layer"]),
                  "", "| t | GD risk | PtO risk |", "|---|---|---|"]
        lines += [f"| {t} | {a:.3f} | {b:.3f} |" for t, a, b in zip(cc["gd"]["steps"], cc["gd"]["gd_risk"], cc["gd"]["pto_risk"])]
    if "multihead" in r:
        lines += ["", "## Second seed: single- vs multi-head one-layer softmax attention", "", "![multihead](multihead.png)", "",
                  "| model | p | h | p/h | fitted c | fitted e |", "|---|---|---|---|---|---|"]
        lines += [f"| {n} | {m['p']} | {m['h']} | {m['p_over_h']:g} | {m['c']:.3f} | {m['e']:.4f} |" for n, m in r["multihead"]["models"].items()]
    lines += ["", "Every number is in `report.json`.", ""]
    return "\n".join(lines)
