"""The seed claims: each one a small function from study results to a :class:`Claim`.

Every verdict the project states is decided here and nowhere else: study results
(the JSON-ready dicts of :mod:`icl_interp.analysis.studies`) go in, a :class:`Claim` with a
stable ``id``, a verdict ("reproduced", "not reproduced" or "mixed"), the deciding
numbers and a readable line comes out. The studies compute every deciding number;
the thresholds are the module-level constants below, each with its reason.
:func:`decide` applies every claim whose results are present, in the report's order.
"""

from __future__ import annotations

from typing import Callable, Optional

from ._core import (  # the thresholds are part of the public face: each claim's reason
    CLEAR_ERROR_RATIO,
    CONCAT_PREFIX,
    GD_CHANCE_FRACTION,
    GD_CLOSE,
    HEAD_COUNT_GAIN,
    HEAD_COUNT_SLACK,
    HEAD_ESSENTIAL_RISE,
    HEADLINE_ABLATION,
    INTERVAL_QUANTILES,
    LINEAR_PREFIX,
    N_BOOT,
    PREPROCESS_R2_GAIN,
    QUALITY_BAR_LASSO_RATIO,
    QUALITY_BAR_RIDGE_RATIO,
    SEED2_C_RATIO,
    TOP_HEAD_MAJORITY,
    VERDICTS,
    Claim,
    Test,
    across_seeds,
    check_result,
    interval_verdict,
)
from .mechanism import later_gd_steps, layer0_preprocesses, steps_on_preprocessed
from .quality import quality_bar
from .seed1 import (
    head_count_order,
    later_single_head,
    layer0_all_heads,
    multihead_beats_single,
    noise_pruning,
    noise_single_head,
    pruning_preserves,
)
from .seed2 import (
    PRIOR_LEARNED,
    SEED2_SETTINGS,
    seed2,
    seed2_narrow,
    seed2_prior_strong,
    seed2_prior_weak,
    seed2_setting,
    seed2_settings,
    seed2_wide,
)

__all__ = [
    "CLEAR_ERROR_RATIO", "CONCAT_PREFIX", "GD_CHANCE_FRACTION", "GD_CLOSE", "HEAD_COUNT_GAIN", "HEAD_COUNT_SLACK", "HEAD_ESSENTIAL_RISE", "LINEAR_PREFIX", "PREPROCESS_R2_GAIN", "QUALITY_BAR_LASSO_RATIO", "QUALITY_BAR_RIDGE_RATIO", "SEED2_C_RATIO", "TOP_HEAD_MAJORITY",
    "HEADLINE_ABLATION", "INTERVAL_QUANTILES", "N_BOOT",
    "Claim", "Test", "VERDICTS", "interval_verdict", "across_seeds", "decide", "quality_bar", "check_result",
    "layer0_all_heads", "later_single_head", "pruning_preserves", "layer0_preprocesses", "later_gd_steps",
    "steps_on_preprocessed", "multihead_beats_single", "head_count_order", "noise_pruning", "noise_single_head",
    "seed2_wide", "seed2_narrow", "seed2",
    "seed2_setting", "seed2_prior_strong", "seed2_prior_weak", "seed2_settings", "SEED2_SETTINGS", "PRIOR_LEARNED",
]


def _single_model(sub: dict, twin: Optional[str] = None, kind: str = "concat", heads: bool = True) -> list[Optional[Claim]]:
    """The single-model claims on one model's studies (``importance``, ``pruning``, ``preprocessing``, ``gd``); ``heads``:
    the three head claims too (a concatenated twin's studies have none)."""
    out = [layer0_all_heads(sub["importance"], twin, kind), later_single_head(sub["importance"], twin, kind),
           pruning_preserves(sub["pruning"], twin, kind)] if heads else []
    return out + [layer0_preprocesses(sub["preprocessing"], twin, kind), later_gd_steps(sub["gd"], twin, kind),
                  steps_on_preprocessed(sub["gd"], twin, kind)]


def _on_seeds(make: Callable[[dict], list[Optional[Claim]]], sub: dict) -> list[Optional[Claim]]:
    """``make``'s claims on ``sub`` and on each training seed's studies in ``sub["seeds"]`` (``{k: studies}``), each claim
    decided across the seeds where ``make`` gives it (:func:`across_seeds`; None: not on that seed)."""
    base, others = make(sub), {str(k): make(s) for k, s in sub.get("seeds", {}).items()}
    return [None if c is None else across_seeds({"0": c, **{k: o[i] for k, o in others.items() if o[i] is not None}})
            for i, c in enumerate(base)]


def decide(results: dict) -> list[Claim]:
    """Every claim whose study results are in ``results`` (the report's layout), in the report's order.

    Where the model (``results["seeds"]``; ``multihead_beats_single`` on the seeds whose pruning study has a single-head
    model), its linear twin (``results["linear"]["seeds"]``), the noise sweep (``results["pruning_noise"]["seeds"]``), the
    head counts (``results["head_counts_seeds"]``), the second seed's models (``results["multihead"]["seeds"]``) or its
    settings (``results["seed2_settings"]["seeds"]``) carry their training seeds' studies (``{k: studies}``), each claim on
    them is decided on every seed (:func:`across_seeds`)."""
    check_result("results", results, ("importance", "pruning", "preprocessing", "gd"))
    claims: list[Optional[Claim]] = _on_seeds(_single_model, results)
    concat = results.get("concat")
    if concat is not None:
        claims += _single_model(concat, concat.get("model"), heads=False)
    lin = results.get("linear")
    if lin is not None:  # the same task in the seed's theory class: every single-model claim
        claims += _on_seeds(lambda sub: _single_model(sub, lin["model"], "linear"), lin)
    if "error_single_head" in results["pruning"]:  # on each seed k whose study has seed k's single-head model beside it
        claims += _on_seeds(lambda sub: [multihead_beats_single(sub["pruning"]) if "error_single_head" in sub["pruning"] else None],
                            results)
    if results.get("pruning_noise", {}).get("levels"):
        claims += _on_seeds(lambda sweep: [noise_pruning(sweep), noise_single_head(sweep)], results["pruning_noise"])
    if len(results.get("head_counts", {})) > 1:  # on every seed that has every head count, or on the head counts the seeds share
        claims.append(head_count_order(results["head_counts"], results.get("head_counts_seeds")))
    multihead = results.get("multihead", {})
    for cmp in multihead.get("comparisons", []):  # each comparison on every training seed of its models (the study's "seeds")
        same = {k: c for k, study in multihead.get("seeds", {}).items() for c in study["comparisons"] if (c["p"], c["h"]) == (cmp["p"], cmp["h"])}
        claims.append(across_seeds({"0": seed2(cmp), **{k: seed2(c) for k, c in same.items()}}))
    claims += seed2_settings(results["seed2_settings"]) if "seed2_settings" in results else []
    return [c for c in claims if c is not None]
