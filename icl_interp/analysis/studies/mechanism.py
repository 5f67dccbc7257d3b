"""The seed's mechanism: layer 0 as preprocessing (probes) and each later layer as one GD step (probed iterates).

**Layer 0 as preprocessing** (:func:`preprocessing_study`): probes for the preprocessing
candidates at the query and at every token. After one attention layer a token can only
hold statistics of the examples whose y it has seen (:func:`seen_view`): the examples
before it (a causal interleaved model), the examples up to itself (a causal
concatenated model, whose token i holds y_i) or the whole context (bidirectional
attention). The every-token targets use r over exactly those examples.

**Later layers as GD steps** (:func:`gd_study`): the gap of each later layer to the
iterates of t-step GD and PtO runs (:mod:`.iterates`, where the reasons are), and for the
figure the P-probing risk per layer (the seed's) beside the tuned algorithms' risks.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

import probes

from ...baselines.estimators import GD_LRS
from ...core.checks import check_int
from ...tools.probing import control_model, probe_all_layers
from ...tools.runner import model_norm, prepare
from ._common import PathLike, per_prompt_list
from .iterates import AlgorithmRun, algorithms, closest, gap_columns, gd_distance, layer_iterates

__all__ = ["PREPROCESSING_TARGETS", "OTHER_TARGETS", "seen_view", "preprocessing_study", "gd_study", "gd_distance"]

#: the preprocessing candidates probed for (``pre_identity`` is the raw input, the baseline, not a candidate)
PREPROCESSING_TARGETS = ("pre_identity", "pre_reweight", "pre_power2", "pre_rank_one")
#: what else layer 0's output might hold at the query token
OTHER_TARGETS = ("r", "xtx", "w", "y_query")
#: validation prompts (and their seed, apart from the test prompts) of the tuned algorithms' risks in the figure
TUNING_PROMPTS, TUNING_SEED = 500, 20_000

_VIEW_WORDS = {"before": "the examples before the token", "through": "the examples up to the token",
               "context": "every context example"}


def seen_view(model: Any) -> str:
    """Which examples' y a token can have seen after one attention layer (a key of ``probes.VIEWS``).

    ``"context"`` under bidirectional attention, ``"through"`` for causal concatenated
    tokens, ``"before"`` for interleaved tokens (and models without a config).
    """
    cfg = getattr(model, "cfg", None)
    if getattr(cfg, "attention_dir", "causal") == "bidirectional":
        return "context"
    return "through" if getattr(cfg, "encoding", None) == "concatenated" else "before"


def _probe_rows(model: Any, data: Any, targets: list[str], positions: str) -> tuple[dict, Any]:
    """(the input's, layer 0's and the random model's R2 per target, the probe table)."""
    table = probe_all_layers(model, data, targets=targets, positions=positions, control=hasattr(model, "cfg"))
    rows = {}
    for t in targets:
        embed, layer0 = table.get(-1, "embed", t), table.get(0, "resid_post", t)
        rows[t] = {"input_r2": embed.r2, "layer0_r2": layer0.r2, "control_r2": getattr(layer0, "control_r2", None),
                   "gain_over_input": layer0.r2 - embed.r2}
    return rows, table


def _probe_per_prompt(table: Any, target: str) -> dict:
    """Per test prompt and output of one target's probes (fitted probes held fixed): the squared errors of the input's,
    layer 0's and the random model's probe and the squared deviations (``[k][n_test]`` lists), from which
    ``R2 = mean_k(1 - mean(sse_k) / mean(sst_k))``: the claims' paired bootstrap over the test prompts."""
    embed, layer0 = table.get(-1, "embed", target), table.get(0, "resid_post", target)
    columns = {"sst": layer0.per_prompt["sst"], "sse_input": embed.per_prompt["sse"], "sse_layer0": layer0.per_prompt["sse"]}
    if "control_sse" in layer0.per_prompt:
        columns["sse_control"] = layer0.per_prompt["control_sse"]
    return {"n_test": layer0.n_test, **{k: [per_prompt_list(c) for c in v.T] for k, v in columns.items()}}


def preprocessing_study(model: Any, data: Any, *, out: PathLike = None) -> dict:
    """Probe the input and layer 0's output for each preprocessing candidate, with a random-model control.

    Two readings: at the query token (candidates applied to the query x, r from the
    whole context, plus r, X^T X, w, y), and at every token (candidates applied to each
    x_i with r over the examples the token can see, :func:`seen_view`, recorded as
    ``view``). The ``best_*`` numbers use the every-token reading; identity is the raw
    input, not a candidate. ``best_per_prompt``: the best candidate's per-test-prompt
    squared errors (:func:`_probe_per_prompt`), for the claim's interval.
    """
    view = seen_view(model)
    r_name, example_targets = probes.example_target_names(view)
    suffix = probes.VIEWS[view][1]
    run = prepare(model, data)  # one clean forward for both readings
    rows, _ = _probe_rows(model, run, list(PREPROCESSING_TARGETS + OTHER_TARGETS), "query")
    rows_all, table = _probe_rows(model, run, example_targets + [r_name], "all")
    cands = {t: rows_all[t + suffix] for t in PREPROCESSING_TARGETS if t != "pre_identity"}
    best = max(cands, key=lambda t: cands[t]["gain_over_input"])
    result = {"view": view, "view_words": _VIEW_WORDS[view], "rows": rows, "rows_all_positions": rows_all,
              "best_candidate": best, "best_target": best + suffix,
              "best_gain_over_input": cands[best]["gain_over_input"], "best_layer0_r2": cands[best]["layer0_r2"],
              "best_input_r2": cands[best]["input_r2"], "best_control_r2": cands[best]["control_r2"],
              "best_per_prompt": _probe_per_prompt(table, best + suffix)}
    if out is not None:
        from ..study_plots import plot_preprocessing_study, save_figure

        result["figure"] = save_figure(plot_preprocessing_study(result), out, "preprocessing_probes.png")
    return result


# -- later layers as GD steps -------------------------------------------------------------------

def _tuned_risks(task: Any, batch: Any, steps: tuple, norm: float, seed: int = TUNING_SEED) -> dict[str, list[float]]:
    """Risk at the query of the best t-step GD and PtO (step size, and for PtO the candidate, of the lowest validation error
    on prompts of ``seed``)."""
    val = task.sample(TUNING_PROMPTS, batch.n_points, seed=seed).to(batch.device)
    curves: dict[str, list[float]] = {"gd": [], "pto": []}
    for t in steps:
        for kind in curves:
            best = (math.inf, None, 0.0)
            for name, pre in algorithms().items():
                if (name == "gd") != (kind == "gd"):
                    continue
                errs = ((AlgorithmRun(pre, val).predict(t, GD_LRS) - val.ys[:, -1].double()) ** 2).mean(-1)
                errs = torch.nan_to_num(errs, nan=math.inf).tolist()
                i = min(range(len(errs)), key=errs.__getitem__)
                best = min(best, (errs[i], name, GD_LRS[i]), key=lambda e: e[0])
            pred = AlgorithmRun(algorithms()[best[1]], batch).predict(t, [best[2]])[0] if best[1] else torch.zeros(batch.batch_size, device=batch.device)
            curves[kind].append(float(((pred - batch.ys[:, -1].double()) ** 2).mean() / norm))
    return curves


def _distances(iterates: dict, control: Optional[dict]) -> Optional[dict]:
    """The model's and the random model's distance to GD and to PtO (the closest candidate); None without later layers."""
    if not iterates["layers"]:
        return None
    (d_gd, t0_gd, _), (d_pto, t0_pto, fam) = closest(iterates, False), closest(iterates, True)
    (c_gd, c_t0_gd, _), (c_pto, c_t0_pto, c_fam) = (closest(control, False), closest(control, True)) if control else ((None,) * 3,) * 2
    return {"layers": iterates["layers"], "gd": d_gd, "gd_t0": t0_gd, "pto": d_pto, "pto_t0": t0_pto,
            "pto_candidate": fam.split(":", 1)[1] if fam else None, "control_gd": c_gd, "control_gd_t0": c_t0_gd,
            "control_pto": c_pto, "control_pto_t0": c_t0_pto, "control_pto_candidate": c_fam.split(":", 1)[1] if c_fam else None}


def gd_study(model: Any, data: Any, *, steps: tuple = (1, 2, 3, 4, 6, 8), tuning_seed: int = TUNING_SEED, out: PathLike = None) -> dict:
    """Later layers against t-step GD and PtO runs: their iterates read off the layers (the claims), risks and alignment.

    ``iterates``: :func:`~icl_interp.analysis.studies.iterates.layer_iterates` (per algorithm and
    t0, the step size matched to the model's output and each later layer's gap), and
    ``iterates_control`` the same on a random model of the same config; ``distance``: the
    model's and the random model's mean gap to the closest GD and PtO run, the deciding
    numbers of the GD-step claims (None for a one-layer model), with ``per_prompt``: the four
    runs' per-prompt gap numbers (:func:`~icl_interp.analysis.studies.iterates.gap_columns`). For the figure: the
    P-probing risk per layer (``probe_risk_per_layer``, and the random model's) and the risk
    of the best t-step GD and PtO for t in ``steps`` (tuned on prompts of ``tuning_seed``); ``alignment``: :func:`~icl_interp.tools.gd_alignment.gd_alignment`.
    """
    from ...core.model import ICLTransformer
    from ...tools.gd_alignment import gd_alignment

    task = getattr(model, "task", None)
    if task is None:
        raise ValueError("gd_study needs a model that knows its task (ICLTransformer, or attach(..., task=...))")
    if not isinstance(steps, (tuple, list)) or not steps:
        raise ValueError(f"steps must be a non-empty tuple of step counts, got {steps!r}")
    steps = tuple(check_int("steps[i]", t, min_value=1) for t in steps)
    run = prepare(model, data)
    data = run.batch
    align = gd_alignment(model, run, steps=steps)
    norm = model_norm(model)
    curves = _tuned_risks(task, data, steps, norm, check_int("tuning_seed", tuning_seed, min_value=0))
    iterates, table = layer_iterates(model, run)
    rows = [table.get(l, "resid_post", "y_query") for l in range(-1, model.hooked.cfg.n_layers)]
    result = {"steps": list(steps), "probe_risk_per_layer": [r.mse / norm for r in rows], "probe_risk_per_layer_control": None,
              "gd_risk": curves["gd"], "pto_risk": curves["pto"], "iterates": iterates, "iterates_control": None,
              "alignment": align.to_dict()}
    if isinstance(model, ICLTransformer):  # a random model of the same config: how close does chance come?
        ctrl = control_model(model)
        ctrl_run = prepare(ctrl, data)
        ctrl_iterates, ctrl_table = layer_iterates(ctrl, ctrl_run)
        result["iterates_control"] = ctrl_iterates
        result["probe_risk_per_layer_control"] = [ctrl_table.get(l, "resid_post", "y_query").mse / norm
                                                  for l in range(-1, model.hooked.cfg.n_layers)]
    result["distance"] = _distances(iterates, result["iterates_control"])
    if result["distance"] is not None and isinstance(model, ICLTransformer):  # the claims' intervals: the four runs' per-prompt gaps
        d, runs = result["distance"], {"": (run, iterates, table), "control_": (ctrl_run, ctrl_iterates, ctrl_table)}
        d["per_prompt"] = {f"{who}{alg}": gap_columns(r, its, tab, "gd" if alg == "gd" else "pto:" + d[f"{who}pto_candidate"], d[f"{who}{alg}_t0"])
                           for who, (r, its, tab) in runs.items() for alg in ("gd", "pto")}
    if out is not None:
        from ..study_plots import plot_gd_study, save_figure

        result["figure"] = save_figure(plot_gd_study(result), out, "gd_steps.png")
    return result
