"""``report.md`` from the report's results: the claims table (verdict, value, interval, seeds, prompts, ablation kinds)
and each study's section. Rendering only: every number comes from ``report.json``'s results."""

from __future__ import annotations

from typing import Any

from . import claims as cl

__all__ = ["markdown"]


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
    if d.get("llc"):  # the stored local learning coefficient over the snapshots (recipes/dynamics.py computes it)
        from .studies.dynamics import llc_lines

        lines += llc_lines(d["llc"])
    return lines


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
    for one in [study, *study.get("seeds", {}).values()]:  # the shipped models, then each training seed's
        lines += [f"| {setting} | {n} | {m['p_over_h']:g} | {m['c']:.3f} | {m['e']:.4f} | {m['excess_risk'][-1]:.4f} |"
                  for setting, res in one["settings"].items() for n, m in res["models"].items()]
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
    """``0.843 (0.83-0.86)``: a quality-bar ratio with its 5-95% paired bootstrap interval where the bar has one
    ("none (its error is about 0)" where the baseline's error is about zero: ``bar["statements"]`` says why)."""
    value = bar[f"ratio_to_best_{key}_at_largest_n"]
    if value is None:
        return "none (its error is about 0)"
    text = f"{value:.3f}"
    interval = bar.get(f"ratio_to_best_{key}_interval")
    return text if interval is None else f"{text} ({interval[0]:.3f}-{interval[1]:.3f})"


_VERDICT_RULE = (
    "A claim is **reproduced** when the {lo}-{hi}% interval of its deciding statistic (a paired bootstrap over the prompts, "
    "{n_boot} resamples, every per-prompt number that enters it resampled together; no model rerun) clears every threshold; "
    "**not reproduced** when it lies wholly on the wrong side; **undecided** when it straddles one; **mixed** when its parts "
    "(heads, layers, noise levels) disagree, named in its row. A claim without an interval (\"point\") is decided on its value. "
    "Head claims are decided under zero, mean and resample ablation (the reference of the last two: the study's own prompts); "
    "the headline verdict and numbers are **{headline}** ablation's, and a row says which kind changes its verdict. "
    "A claim on models with training seeds (column seeds) is decided on every seed, pairing seed k of each model with seed k "
    "of the others: it takes the seeds' verdict where every seed gives the same one; else each of its statistics (the deciding "
    "one, its other thresholds, each part) is decided across the seeds, on the hull of the seeds' intervals where all lie on "
    "one side, else on the t-interval of the seeds' mean widened by the prompts' mean half-width (the seeds share their prompt "
    "seed). The study prompts were drawn with seed {seed} (`icl-interp report --prompt-seed K`)."
)


def _num(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.3f}"


def _interval(interval: Any) -> str:
    return "point" if not interval else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def _kinds_cell(claim: dict) -> str:
    """``zero: reproduced, 0.630 [0.601, 0.660]; mean: ...`` for a head claim, "-" for the others."""
    by = claim.get("by_ablation")
    if not by:
        return "-"
    return "; ".join(f"{k}: {v['verdict']}, {_num(v['value'])} {_interval(v['interval'])}" for k, v in by.items())


def _methods_lines(r: dict) -> list[str]:
    """The plan (why these methods and prompts, :mod:`icl_interp.analysis.report_plan`), each study's method, and for estimated head
    importance its agreement with exact ablation on the sampled heads; nothing for a report without a plan."""
    plan, methods = r.get("plan"), r.get("methods")
    if not plan or not methods:
        return []
    lines = [f"Methods: {plan['reason']}.", ""] + [f"- {study}: {text}" for study, text in methods.items()]
    if plan["n_prompts"] < plan["requested_prompts"]:
        lines.append(f"- {plan['n_prompts']} prompts instead of {plan['requested_prompts']}: the intervals are about "
                     f"{plan['interval_factor']:.1f}x as wide")
    agree = {k: v["agreement"] for k, v in r.get("importance", {}).get("by_ablation", {}).items() if "agreement" in v}
    if agree:
        lines.append("- the estimate against exact ablation on the sampled heads: " + "; ".join(
            f"{k}: Spearman {a['spearman']:.2f}, largest |difference| {a['max_abs_diff']:.3g} (exact importances span "
            f"{a['exact_range']:.3g})" for k, a in agree.items()))
    return lines + [""]


def markdown(r: dict, model: Any) -> str:
    """``report.md`` of the report's results ``r`` on ``model``: the claims table first, then every study's section."""
    c = model.cfg
    q = r["quality_bar"]
    lines = [
        f"# icl_interp report: `{r['model']}`",
        "",
        f"Model: {c.n_layers} layers x {c.n_heads} heads, d_model {c.d_model}, {c.encoding} encoding; task {model.task.to_dict()}.",
        f"{'Quick mode (small samples): numbers are rough.' if r['quick'] else ''} Ran in {r['seconds']} s{_reused(r)}.",
        "",
        *_methods_lines(r),
        "## Claims",
        "",
        "Each claim is decided in `icl_interp/analysis/claims/` (thresholds named there); `report.json` lists them by `id`. "
        + _VERDICT_RULE.format(lo=round(100 * cl.INTERVAL_QUANTILES[0]), hi=round(100 * cl.INTERVAL_QUANTILES[1]), n_boot=cl.N_BOOT,
                               headline=cl.HEADLINE_ABLATION, seed=r.get("prompt_seeds", {}).get("study", "?")),
        "",
        "| id | claim | verdict | value | 5-95% interval | seeds | prompts | by ablation kind | the number that decides |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| `{x['id']}` | {x['claim']} | **{x['verdict']}** | {_num(x.get('value'))} | {_interval(x.get('interval'))} | "
              f"{x.get('seeds', 1)} | {x.get('n_prompts') or '-'} | {_kinds_cell(x)} | {x['number']} |" for x in r["claims"]]
    if r["skipped"]:
        lines += ["", "Skipped (siblings are declared in the zoo index, `icl_interp/zoo/index.json`, or by `--siblings FILE`):", ""]
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
        + _unsettled(q) + "".join(f" {line[0].upper()}{line[1:]}." for line in q.get("statements", []))
        + (f" Excess risk over the noise floor ({q['noise_floor']:.3f}) at n = {q['n_largest']}: model "
           f"{q['excess_risk_at_largest_n']['model']:.3f}, best ridge {q['excess_risk_at_largest_n']['ridge']:.3f}, "
           f"best Lasso {q['excess_risk_at_largest_n']['lasso']:.3f}." if "excess_risk_at_largest_n" in q else ""),
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
        sweeps = {"": r["pruning_noise"], **{f" (training seed {k})": s for k, s in r["pruning_noise"].get("seeds", {}).items()}}
        for seed, sweep in sweeps.items():
            for k, v in sweep["levels"].items():
                single = f"{v['error_single_head']:.3f}" if "error_single_head" in v else "n/a"
                lines.append(f"| {k}{seed} | {v['error_full']:.3f} | {v['error_pruned']:.3f} | {single} | {v['noise_floor']:.3f} | {v['train_steps']} |")
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
        studies = [r["multihead"], *r["multihead"].get("seeds", {}).values()]  # the shipped models, then each training seed's
        lines += [f"| {n} | {m['p']} | {m['h']} | {m['p_over_h']:g} | {m['c']:.3f} | {m['e']:.4f} |" for st_ in studies for n, m in st_["models"].items()]
    if "dynamics" in r:
        lines += _dynamics_lines(r["dynamics"])
    if "seed2_settings" in r:
        lines += _settings_lines(r["seed2_settings"])
    lines += ["", "Every number is in `report.json`.", ""]
    return "\n".join(lines)


def _reused(r: dict) -> str:
    """What the time leaves out: the studies loaded from an earlier run into the same folder."""
    reused = r.get("reused_sections") or []
    return f", {len(reused)} of its studies loaded from an earlier run into this folder ({', '.join(reused)})" if reused else ""
