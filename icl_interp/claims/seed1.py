"""The first seed's claims (Chen, Zhao, Zou 2024): which heads each layer uses, pruning, the noise sweep, head counts,
layer 0 as preprocessing and later layers as gradient-descent steps."""

from __future__ import annotations

import math
from typing import Optional

from ._core import (
    CLEAR_ERROR_RATIO,
    CONCAT_PREFIX,
    GD_CHANCE_FRACTION,
    GD_CLOSE,
    GD_LOOSE,
    HEAD_COUNT_GAIN,
    HEAD_COUNT_SLACK,
    HEAD_ESSENTIAL_RISE,
    LINEAR_PREFIX,
    PARTIAL_ERROR_RATIO,
    PREPROCESS_R2_GAIN,
    PREPROCESS_R2_HINT,
    TOP_HEAD_MAJORITY,
    Claim,
    _verdict,
    check_result,
)

# -- heads: importance and pruning ------------------------------------------------------------

def _gated(ident: str, text: str, verdict: str, values: dict, number: str, clean: float, free: float) -> Claim:
    """The claim, or "not reproduced" when the model's error is not clearly below the context-free error (no skill)."""
    if free > CLEAR_ERROR_RATIO * clean:
        return Claim(ident, text, verdict, values, number)
    return Claim(ident, text, "not reproduced", values, f"the model's error {clean:.3f} is not clearly below the context-free "
                 f"error {free:.3f} (predicting x . E[w]): it solves nothing in context")


def layer0_all_heads(importance: dict, twin: Optional[str] = None, kind: str = "concat") -> Claim:
    """Layer 0 uses all its heads: from :func:`~icl_interp.studies.importance_study` (each head's share of the skill)."""
    p = check_result("importance", importance, ("layer0_relative_increase", "clean_error", "context_free_error"))
    clean, free, (ident, prefix) = p["clean_error"], p["context_free_error"], _twin(twin, kind)
    shares = [r * clean / (free - clean) for r in p["layer0_relative_increase"]] if free > clean else []
    return _gated(ident + "layer0_all_heads", prefix + "Layer 0 uses all its heads: masking any single layer-0 head raises the error.",
                  _verdict(all(r > HEAD_ESSENTIAL_RISE for r in shares), all(r > 0 for r in shares)),
                  {"skill_share": shares, "relative_increase": list(p["layer0_relative_increase"]), "skill": free - clean},
                  f"share of the skill (context-free error {free:.3f} - error {clean:.3f}) lost by masking each layer-0 head: "
                  + ", ".join(f"{r:.1%}" for r in shares), clean, free)


def later_single_head(importance: dict, twin: Optional[str] = None, kind: str = "concat") -> Optional[Claim]:
    """Later layers mostly use one head: the top head's share of each later layer's positive importance (None: one layer)."""
    p = check_result("importance", importance, ("later_layers_top_head_share", "clean_error", "context_free_error"))
    shares, (ident, prefix) = p["later_layers_top_head_share"], _twin(twin, kind)
    if not shares:
        return None
    return _gated(ident + "later_single_head", prefix + "Later layers mostly use a single head (the top head holds most of the layer's importance).",
                  _verdict(all(s >= TOP_HEAD_MAJORITY for s in shares), any(s >= TOP_HEAD_MAJORITY for s in shares)),
                  {"top_head_share": list(shares)},
                  "top-head share of positive ablation importance, layers 1..: " + ", ".join(f"{s:.2f}" for s in shares),
                  p["clean_error"], p["context_free_error"])


def pruning_preserves(pruning: dict, twin: Optional[str] = None, kind: str = "concat") -> Claim:
    """Pruning to all of layer 0 plus each later layer's top head keeps the error (pruned / full error)."""
    p = check_result("pruning", pruning, ("pruned_over_full", "error_pruned", "error_full", "error_context_free"))
    ratio, (ident, prefix) = p["pruned_over_full"], _twin(twin, kind)
    return _gated(ident + "pruning_preserves", prefix + "Pruning to all heads of layer 0 plus the top head of each later layer preserves performance.",
                  _verdict(ratio <= CLEAR_ERROR_RATIO, ratio <= PARTIAL_ERROR_RATIO), {"pruned_over_full": ratio},
                  f"pruned / full error = {ratio:.3f} ({p['error_pruned']:.3f} vs {p['error_full']:.3f})", p["error_full"], p["error_context_free"])


def multihead_beats_single(pruning: dict) -> Claim:
    """A trained single-head model of the same size is worse than the multi-head one (all positions)."""
    p = check_result("pruning", pruning, ("error_single_head", "error_full", "error_pruned"))
    single, full = p["error_single_head"], p["error_full"]
    return Claim("multihead_beats_single",
                 "Multi-head beats a trained single-head model of the same size (the seed's Fig 1b / Fig 5 comparison).",
                 _verdict(single > CLEAR_ERROR_RATIO * full, single > full), {"single_over_full": single / full},
                 f"error single-head / all heads = {single / full:.3f} ({single:.3f} vs {full:.3f}); pruned: {p['error_pruned']:.3f}")


def noise_pruning(sweep: dict) -> Claim:
    """Across noise levels the pruned model stays close to the full one: the worst pruned / full ratio decides."""
    levels = check_result("sweep", sweep, ("levels",))["levels"]
    ratios = {k: v["pruned_over_full"] for k, v in levels.items()}
    worst = max(ratios.values())
    return Claim("noise_pruning", "Across noise levels (Fig 5) the pruned model stays close to the full model.",
                 _verdict(worst <= CLEAR_ERROR_RATIO, worst <= PARTIAL_ERROR_RATIO), {"pruned_over_full": ratios, "worst": worst},
                 "pruned / full error by noise std: " + ", ".join(f"{k}: {r:.2f}" for k, r in ratios.items()))


def noise_single_head(sweep: dict) -> Optional[Claim]:
    """Across noise levels the single-head model is worse; None when no level has a single-head model."""
    levels = check_result("sweep", sweep, ("levels",))["levels"]
    singles = {k: v["single_over_full"] for k, v in levels.items() if "single_over_full" in v}
    if not singles:
        return None
    return Claim("noise_single_head", "Across noise levels (Fig 5) the trained single-head model is worse than the multi-head model.",
                 _verdict(all(r > CLEAR_ERROR_RATIO for r in singles.values()), any(r > 1.0 for r in singles.values())),
                 {"single_over_full": singles},
                 "single-head / all-heads error by noise std: " + ", ".join(f"{k}: {r:.2f}" for k, r in singles.items()))


def head_count_order(head_counts: dict) -> Claim:
    """More heads, lower error: ``head_counts`` maps a head count to ``{"last": error at the largest n, "mean": ...}``."""
    if not isinstance(head_counts, dict) or len(head_counts) < 2:
        raise ValueError(f"head_counts must map at least two head counts to errors, got {head_counts!r}")
    heads = {int(h): v for h, v in head_counts.items()}
    hs = sorted(heads)
    errs = [heads[h]["last"] for h in hs]
    monotone = all(b <= a * HEAD_COUNT_SLACK for a, b in zip(errs, errs[1:]))
    return Claim("head_count_order", "More heads, lower error at the same size (Fig 1b).",
                 _verdict(monotone and errs[-1] < HEAD_COUNT_GAIN * errs[0], errs[-1] < errs[0]),
                 {"error_last_by_heads": {str(h): e for h, e in zip(hs, errs)}, "most_over_fewest": errs[-1] / errs[0]},
                 "error at the largest n by head count: " + ", ".join(f"h={h}: {e:.3f}" for h, e in zip(hs, errs))
                 + "; mean over n = 1..: " + ", ".join(f"h={h}: {heads[h]['mean']:.3f}" for h in hs))


# -- layer 0 as preprocessing, later layers as GD steps -------------------------------------------

def _twin(twin: Optional[str], kind: str = "concat") -> tuple[str, str]:
    """(id prefix, text prefix) for a claim on the anchor's twin ``twin`` (or none) of ``kind`` "concat" or "linear"."""
    if not twin:
        return "", ""
    texts = {"concat": (CONCAT_PREFIX, "With concatenated [x; y] tokens"), "linear": (LINEAR_PREFIX, "In the trained linear-attention model")}
    if kind not in texts:
        raise ValueError(f"kind must be 'concat' or 'linear', got {kind!r}")
    return texts[kind][0], f"{texts[kind][1]} (`{twin}`): "


def layer0_preprocesses(pre: dict, twin: Optional[str] = None, kind: str = "concat") -> Claim:
    """Layer 0's output encodes a preprocessed x_i better than the input and a random model (best candidate, every token)."""
    p = check_result("pre", pre, ("best_candidate", "best_gain_over_input", "best_layer0_r2", "best_input_r2", "best_control_r2"))
    control = p["best_control_r2"] if p["best_control_r2"] is not None else float("nan")
    gain = p["best_gain_over_input"]
    ok = gain > PREPROCESS_R2_GAIN and p["best_layer0_r2"] > control + PREPROCESS_R2_GAIN
    ident, prefix = _twin(twin, kind)
    seen = f" (r over {p['view_words']})" if p.get("view_words") else ""
    return Claim(ident + "layer0_preprocesses",
                 prefix + "Layer 0 preprocesses the context: at every token its output encodes a preprocessed x_i "
                          "(with r = X^T y / n over the examples the token can see) better than the input does.",
                 _verdict(ok, gain > PREPROCESS_R2_HINT),
                 {"best_candidate": p["best_candidate"], "gain_over_input": gain, "layer0_r2": p["best_layer0_r2"], "control_r2": p["best_control_r2"]},
                 f"best candidate {p['best_candidate']}{seen}: R2 {p['best_layer0_r2']:.3f} after layer 0 vs {p['best_input_r2']:.3f} "
                 f"at the input and {control:.3f} for the random-model control")


def _distances(gd: dict) -> Optional[dict]:
    """The GD study's distances with a missing random-model control read as infinitely far (None if no later layer)."""
    dist = check_result("gd", gd, ("distance",))["distance"]
    if dist is None:
        return None
    check_result("gd['distance']", dist, ("layers", "gd", "pto", "control_gd", "control_pto"))
    inf = math.inf
    return {**dist, "control_gd": inf if dist["control_gd"] is None else dist["control_gd"],
            "control_pto": inf if dist["control_pto"] is None else dist["control_pto"]}


def _t0(d: dict, key: str) -> str:
    t0 = d.get(f"{key}_t0")
    return "" if t0 is None else f", t0 = {t0}"


def later_gd_steps(gd: dict, twin: Optional[str] = None, kind: str = "concat") -> Optional[Claim]:
    """Each later layer holds one more GD (or PtO) iterate, much closer than chance; None when the model has one layer."""
    d = _distances(gd)
    if d is None:
        return None
    best, chance = min(d["gd"], d["pto"]), min(d["control_gd"], d["control_pto"])
    ident, prefix = _twin(twin, kind)
    layers = d["layers"]
    cand = f"{d['pto_candidate']}" if d.get("pto_candidate") else "best candidate"
    return Claim(ident + "later_gd_steps",
                 prefix + "Each later layer acts like one gradient-descent step (after layer l the residual stream holds the "
                          "prediction of l + t0 steps of GD or PtO, t0 in {0, 1} the steps layer 0 takes, much better than a random model's does).",
                 _verdict(best < GD_CLOSE and best < GD_CHANCE_FRACTION * chance, best < GD_LOOSE and best < chance),
                 {"distance_gd": d["gd"], "distance_pto": d["pto"], "control_gd": d["control_gd"], "control_pto": d["control_pto"],
                  "t0_gd": d.get("gd_t0"), "t0_pto": d.get("pto_t0"), "pto_candidate": d.get("pto_candidate")},
                 f"gap to the (l + t0)-step prediction (relative RMS; the last layer: the output), mean over layers {layers[0]}..{layers[-1]}: "
                 f"GD {d['gd']:.2f}{_t0(d, 'gd')}; PtO {d['pto']:.2f} ({cand}{_t0(d, 'pto')}); "
                 f"a random model of the same config: GD {d['control_gd']:.2f}, PtO {d['control_pto']:.2f}")


def steps_on_preprocessed(gd: dict, twin: Optional[str] = None, kind: str = "concat") -> Optional[Claim]:
    """The steps run on preprocessed data: the layers hold PtO's iterates better than GD's; None when the model has one layer."""
    d = _distances(gd)
    if d is None:
        return None
    d_gd, d_pto, c_gd, c_pto = d["gd"], d["pto"], d["control_gd"], d["control_pto"]
    ident, prefix = _twin(twin, kind)
    cand = f" ({d['pto_candidate']})" if d.get("pto_candidate") else ""
    return Claim(ident + "steps_on_preprocessed",
                 prefix + "The steps run on preprocessed data: the later layers hold PtO's iterates better than those of GD on the raw data.",
                 _verdict(d_pto < d_gd and d_pto < GD_CLOSE and d_pto < GD_CHANCE_FRACTION * c_pto, d_pto < min(d_gd, GD_LOOSE)),
                 {"distance_gd": d_gd, "distance_pto": d_pto, "control_gd": c_gd, "control_pto": c_pto},
                 f"gap to PtO's iterates{cand} {d_pto:.2f} vs GD's {d_gd:.2f} (smaller is closer; random model: PtO {c_pto:.2f}, GD {c_gd:.2f})")
