"""The first seed's mechanism claims (Chen, Zhao, Zou 2024): layer 0 as preprocessing (probes) and the later layers as
gradient-descent steps (the gaps to GD's and PtO's iterates), each decided on a paired bootstrap of its study's
per-prompt numbers."""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ._core import (
    ABOVE,
    BELOW,
    GD_CHANCE_FRACTION,
    GD_CLOSE,
    PREPROCESS_R2_GAIN,
    Claim,
    Test,
    bootstrap,
    check_result,
    decided,
    interval_text,
    tests_from,
)
from .seed1 import _twin


def layer0_preprocesses(pre: dict, twin: Optional[str] = None, kind: str = "concat") -> Claim:
    """Layer 0's output encodes a preprocessed x_i better than the input and a random model (best candidate, every token):
    R2 gain over the input above PREPROCESS_R2_GAIN, and over the random model's R2 too. The interval: a paired bootstrap
    over the probes' test prompts of the three probes' per-prompt squared errors (``best_per_prompt``; the fitted probes
    held fixed); without them, the point values."""
    p = check_result("pre", pre, ("best_candidate", "best_gain_over_input", "best_layer0_r2", "best_input_r2", "best_control_r2"))
    control = p["best_control_r2"] if p["best_control_r2"] is not None else float("nan")
    pp, n_prompts = p.get("best_per_prompt"), None
    if pp is not None and "sse_control" in pp:
        def stat(m: dict) -> torch.Tensor:
            r2 = {k: (1 - m[f"sse_{k}"] / m["sst"]).mean(-1) for k in ("input", "layer0", "control")}
            return torch.stack([r2["layer0"] - r2["input"], r2["layer0"] - r2["control"]], -1)

        value, interval = bootstrap({k: pp[k] for k in ("sst", "sse_input", "sse_layer0", "sse_control")}, stat)
        gain, over_control = tests_from(value, interval, PREPROCESS_R2_GAIN, ABOVE)
        n_prompts = pp["n_test"]
    else:
        gain = Test(p["best_gain_over_input"], None, PREPROCESS_R2_GAIN, ABOVE)
        over_control = Test(p["best_layer0_r2"] - control, None, PREPROCESS_R2_GAIN, ABOVE)
    ident, prefix = _twin(twin, kind)
    seen = f" (r over {p['view_words']})" if p.get("view_words") else ""
    return decided(ident + "layer0_preprocesses",
                   prefix + "Layer 0 preprocesses the context: at every token its output encodes a preprocessed x_i "
                            "(with r = X^T y / n over the examples the token can see) better than the input does.",
                   gain, {"best_candidate": p["best_candidate"], "gain_over_input": gain.value, "layer0_r2": p["best_layer0_r2"],
                          "control_r2": p["best_control_r2"]},
                   f"best candidate {p['best_candidate']}{seen}: R2 {p['best_layer0_r2']:.3f} after layer 0 vs {p['best_input_r2']:.3f} "
                   f"at the input and {control:.3f} for the random-model control; gain over the input {interval_text(gain)}, "
                   f"over the random model {interval_text(over_control)}",
                   n_prompts=n_prompts, gates=[(over_control, None)])


def _distances(gd: dict) -> Optional[dict]:
    """The GD study's distances with a missing random-model control read as infinitely far (None if no later layer)."""
    dist = check_result("gd", gd, ("distance",))["distance"]
    if dist is None:
        return None
    check_result("gd['distance']", dist, ("layers", "gd", "pto", "control_gd", "control_pto"))
    inf = math.inf
    return {**dist, "control_gd": inf if dist["control_gd"] is None else dist["control_gd"],
            "control_pto": inf if dist["control_pto"] is None else dist["control_pto"]}


_RUNS = ("gd", "pto", "control_gd", "control_pto")


def _distance_tests(d: dict, stat: Callable[[dict], torch.Tensor], thresholds: list[tuple[float, str]]) -> Optional[list[Test]]:
    """Tests of a statistic of the four runs' distances (``gd``, ``pto``, ``control_gd``, ``control_pto``, each ``[...]``)
    on the GD study's per-prompt gap numbers (``d["per_prompt"]``, :func:`~icl_interp.analysis.studies.iterates.gap_columns`), one
    paired bootstrap; None without them. A run's distance is its mean gap over the later layers, as in the study."""
    pp = d.get("per_prompt")
    if not pp or set(pp) != set(_RUNS):
        return None
    cols = {f"{run}|{k}": v for run in _RUNS for k, v in pp[run].items()}
    earlier = d["layers"][:-1]

    def distances(m: dict) -> dict:
        out = {}
        for run in _RUNS:
            var = m[f"{run}|p2"] - m[f"{run}|p"] ** 2
            last = (m[f"{run}|sq"] / var.clamp(min=1e-300)).sqrt().clamp(max=1.0)
            gaps = [(m[f"{run}|sse:{l}"] / m[f"{run}|sst:{l}"]).clamp(0.0, 1.0).sqrt() if f"{run}|sse:{l}" in m
                    else torch.ones_like(last) for l in earlier]
            out[run] = torch.stack([*gaps, last], -1).mean(-1)
        return out

    value, interval = bootstrap(cols, lambda m: stat(distances(m)))
    return [tests_from(value[..., i], interval[..., i], t, side)[0] for i, (t, side) in enumerate(thresholds)]


def _over(distance: float, chance: float) -> float:
    """The model's distance over a random model's (0 when chance is infinitely far; inf when chance is at 0)."""
    return distance / chance if chance > 0 else math.inf


def _t0(d: dict, key: str) -> str:
    t0 = d.get(f"{key}_t0")
    return "" if t0 is None else f", t0 = {t0}"


def later_gd_steps(gd: dict, twin: Optional[str] = None, kind: str = "concat") -> Optional[Claim]:
    """Each later layer holds one more GD (or PtO) iterate: the closest algorithm's gap below GD_CLOSE and at most
    GD_CHANCE_FRACTION of a random model's (point values); None when the model has one layer."""
    d = _distances(gd)
    if d is None:
        return None
    best, chance = min(d["gd"], d["pto"]), min(d["control_gd"], d["control_pto"])
    tests = _distance_tests(d, lambda r: torch.stack([torch.minimum(r["gd"], r["pto"]), torch.minimum(r["gd"], r["pto"])
                                                      / torch.minimum(r["control_gd"], r["control_pto"])], -1),
                            [(GD_CLOSE, BELOW), (GD_CHANCE_FRACTION, BELOW)]) or [
        Test(best, None, GD_CLOSE, BELOW), Test(_over(best, chance), None, GD_CHANCE_FRACTION, BELOW)]
    ident, prefix = _twin(twin, kind)
    layers = d["layers"]
    cand = f"{d['pto_candidate']}" if d.get("pto_candidate") else "best candidate"
    return decided(ident + "later_gd_steps",
                   prefix + "Each later layer acts like one gradient-descent step (after layer l the residual stream holds the "
                            "prediction of l + t0 steps of GD or PtO, t0 in {0, 1} the steps layer 0 takes, much better than a random model's does).",
                   tests[0],
                   {"distance_gd": d["gd"], "distance_pto": d["pto"], "control_gd": d["control_gd"], "control_pto": d["control_pto"],
                    "t0_gd": d.get("gd_t0"), "t0_pto": d.get("pto_t0"), "pto_candidate": d.get("pto_candidate")},
                   f"gap to the (l + t0)-step prediction (relative RMS; the last layer: the output), mean over layers {layers[0]}..{layers[-1]}: "
                   f"GD {d['gd']:.2f}{_t0(d, 'gd')}; PtO {d['pto']:.2f} ({cand}{_t0(d, 'pto')}); "
                   f"a random model of the same config: GD {d['control_gd']:.2f}, PtO {d['control_pto']:.2f}"
                   + (f"; the closest run's gap {interval_text(tests[0], '.2f')}" if tests[0].interval else ""),
                   n_prompts=len(d["per_prompt"]["gd"]["sq"]) if tests[0].interval else None,
                   gates=[(tests[1], None)])


def steps_on_preprocessed(gd: dict, twin: Optional[str] = None, kind: str = "concat") -> Optional[Claim]:
    """The steps run on preprocessed data: PtO's gap below GD_CLOSE, below GD's gap and at most GD_CHANCE_FRACTION of a
    random model's (point values); None when the model has one layer."""
    d = _distances(gd)
    if d is None:
        return None
    d_gd, d_pto, c_gd, c_pto = d["gd"], d["pto"], d["control_gd"], d["control_pto"]
    tests = _distance_tests(d, lambda r: torch.stack([r["pto"], r["gd"] - r["pto"], r["pto"] / r["control_pto"]], -1),
                            [(GD_CLOSE, BELOW), (0.0, ABOVE), (GD_CHANCE_FRACTION, BELOW)]) or [
        Test(d_pto, None, GD_CLOSE, BELOW), Test(d_gd - d_pto, None, 0.0, ABOVE), Test(_over(d_pto, c_pto), None, GD_CHANCE_FRACTION, BELOW)]
    ident, prefix = _twin(twin, kind)
    cand = f" ({d['pto_candidate']})" if d.get("pto_candidate") else ""
    return decided(ident + "steps_on_preprocessed",
                   prefix + "The steps run on preprocessed data: the later layers hold PtO's iterates better than those of GD on the raw data.",
                   tests[0], {"distance_gd": d_gd, "distance_pto": d_pto, "control_gd": c_gd, "control_pto": c_pto},
                   f"gap to PtO's iterates{cand} {d_pto:.2f} vs GD's {d_gd:.2f} (smaller is closer; random model: PtO {c_pto:.2f}, GD {c_gd:.2f})"
                   + (f"; GD's gap minus PtO's {interval_text(tests[1], '.2f')}" if tests[1].interval else ""),
                   n_prompts=len(d["per_prompt"]["gd"]["sq"]) if tests[0].interval else None,
                   gates=[(tests[1], None), (tests[2], None)])
