"""The seed's mechanism: layer 0 as preprocessing (probes) and each later layer as one GD step (per-layer risk)."""

from __future__ import annotations

import math
from typing import Any, Optional

from .. import tuning
from ..probing import probe_all_layers
from ..runner import model_norm, prepare
from ._common import PathLike, layer_risk
from .algorithm import PTO_CANDIDATES

#: the preprocessing candidates probed for (``pre_identity`` is the raw input, the baseline, not a candidate)
PREPROCESSING_TARGETS = ("pre_identity", "pre_reweight", "pre_power2", "pre_rank_one")
#: what else layer 0's output might hold at the query token
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
    The ``best_*`` numbers use the every-token reading; identity is the raw input, not a candidate.
    """
    query_targets = list(PREPROCESSING_TARGETS + OTHER_TARGETS)
    example_targets = [f"{t}_all" for t in PREPROCESSING_TARGETS] + ["r_prefix"]
    run = prepare(model, data)  # one clean forward for both readings
    rows = _probe_rows(model, run, query_targets, "query")
    rows_all = _probe_rows(model, run, example_targets, "all")
    cands = {t: rows_all[f"{t}_all"] for t in PREPROCESSING_TARGETS if t != "pre_identity"}
    best = max(cands, key=lambda t: cands[t]["gain_over_input"])
    result = {"rows": rows, "rows_all_positions": rows_all, "best_candidate": best,
              "best_gain_over_input": cands[best]["gain_over_input"], "best_layer0_r2": cands[best]["layer0_r2"],
              "best_input_r2": cands[best]["input_r2"], "best_control_r2": cands[best]["control_r2"]}
    if out is not None:
        from ..study_plots import plot_preprocessing_study, save_figure

        result["figure"] = save_figure(plot_preprocessing_study(result), out, "preprocessing_probes.png")
    return result


def gd_distance(risk: list[float], algorithm_risk: list[float], steps: list[int]) -> tuple[list[int], Optional[float]]:
    """Mean |log(risk after layer l / algorithm risk at t = l steps)| over the later layers l >= 1 that are in ``steps``.

    ``risk[l + 1]`` is the risk after layer l (``risk[0]``: the input); returns the
    layers used and the distance (None when no later layer is in ``steps``).
    """
    if len(algorithm_risk) != len(steps):
        raise ValueError(f"algorithm_risk must have one risk per step ({len(steps)}), got {len(algorithm_risk)}")
    layers = [l for l in range(1, len(risk) - 1) if l in steps]
    if not layers:
        return layers, None
    return layers, sum(abs(math.log(risk[l + 1] / algorithm_risk[steps.index(l)])) for l in layers) / len(layers)


def gd_study(model: Any, data: Any, *, steps: tuple = (1, 2, 3, 4, 6, 8), out: PathLike = None) -> dict:
    """Per-layer P-probing risk against t-step GD on raw and preprocessed data, plus alignment metrics.

    PtO is tuned over :data:`PTO_CANDIDATES` and the step size. The same probes on a
    random model of the same config (``probe_risk_per_layer_control``) say how close
    to the algorithms chance alone comes. ``distance`` holds the deciding numbers of
    the GD-step claims: :func:`gd_distance` of the model and of the random model to
    GD and to PtO (None when the model has no later layer in ``steps``).
    """
    from ..gd import gd_alignment
    from ..model import ICLTransformer

    task = getattr(model, "task", None)
    if task is None:
        raise ValueError("gd_study needs a model that knows its task (ICLTransformer, or attach(..., task=...))")
    run = prepare(model, data)
    data = run.batch
    align = gd_alignment(model, run, steps=steps)
    norm = model_norm(model)
    curves = {}
    tuners = {"gd": tuning.best_gd, "pto": lambda *a, **kw: tuning.best_pto(*a, preprocessings=PTO_CANDIDATES, **kw)}
    for name, tuner in tuners.items():
        risks = []
        for t in steps:
            est = tuner(task, data.n_points, t, n_prompts=500, seed=20_000)
            pred = tuning.prefix_predictions(est, data)[:, -1]
            risks.append(float(((pred - data.ys[:, -1]) ** 2).mean() / norm))
        curves[name] = risks
    # a random model of the same config: how close to the algorithms does chance come?
    risk, control_risk = layer_risk(model, run, control=isinstance(model, ICLTransformer))
    result = {"steps": list(steps), "probe_risk_per_layer": risk, "probe_risk_per_layer_control": control_risk,
              "gd_risk": curves["gd"], "pto_risk": curves["pto"], "alignment": align.to_dict()}
    result["distance"] = _distances(result)
    if out is not None:
        from ..study_plots import plot_gd_study, save_figure

        result["figure"] = save_figure(plot_gd_study(result), out, "gd_steps.png")
    return result


def _distances(result: dict) -> Optional[dict]:
    """The model's and the random model's :func:`gd_distance` to GD and to PtO (controls None without a random model)."""
    steps, risk, control = result["steps"], result["probe_risk_per_layer"], result["probe_risk_per_layer_control"]
    layers, d_gd = gd_distance(risk, result["gd_risk"], steps)
    if d_gd is None:
        return None

    def dist(r: Optional[list], algo: str) -> Optional[float]:
        return gd_distance(r, result[algo], steps)[1] if r else None

    return {"layers": layers, "gd": d_gd, "pto": dist(risk, "pto_risk"),
            "control_gd": dist(control, "gd_risk"), "control_pto": dist(control, "pto_risk")}
