"""The second seed's claims (Cui et al. 2024): single- against multi-head one-layer softmax attention, in the base
setting and in the seed's other settings (noisy labels, correlated features, local examples, prior knowledge)."""

from __future__ import annotations

from typing import Optional

import torch

from ._core import (
    ABOVE,
    BELOW,
    CLEAR_ERROR_RATIO,
    SEED2_C_RATIO,
    Claim,
    Test,
    across_seeds,
    bootstrap,
    check_result,
    decided,
    interval_text,
    percentiles,
    tests_from,
)

# -- the second seed -------------------------------------------------------------------------------

def _seed2_number(cmp: dict, ratio: Test) -> str:
    return (f"c multi / c single = {interval_text(ratio, '.2f')} (c = {cmp['c_multi']:.2f} vs {cmp['c_single']:.2f}); "
            f"excess risk at the largest D: {cmp['risk_at_max_D_multi']:.3f} vs {cmp['risk_at_max_D_single']:.3f}")


_SEED2_KEYS = ("p", "h", "p_over_h_ge_d", "c_multi_over_single", "c_multi", "c_single", "risk_at_max_D_multi", "risk_at_max_D_single")


def _c_ratio(cmp: dict, direction: str) -> tuple[Test, Optional[int]]:
    """c multi / c single against SEED2_C_RATIO, with its paired interval where the comparison carries each prompt's
    share of the fitted c (``per_prompt_c_multi``, ``per_prompt_c_single``: c is linear in the per-prompt losses)."""
    ratio = check_result("cmp", cmp, _SEED2_KEYS)["c_multi_over_single"]
    multi, single = cmp.get("per_prompt_c_multi"), cmp.get("per_prompt_c_single")
    if multi is None or single is None or len(multi) != len(single):
        return Test(ratio, None, SEED2_C_RATIO, direction), None
    value, interval = bootstrap({"multi": multi, "single": single}, lambda m: m["multi"] / m["single"])
    return tests_from(value, interval, SEED2_C_RATIO, direction)[0], len(multi)


def seed2_wide(cmp: dict) -> Claim:
    """With p/h >= d multi-head has the smaller c in c/D (c multi / c single below SEED2_C_RATIO): one comparison of
    :func:`~icl_interp.analysis.studies.multihead_study`."""
    ratio, n_prompts = _c_ratio(cmp, BELOW)
    return decided("seed2_wide", f"Second seed: with p/h >= d (p={cmp['p']}, h={cmp['h']}) multi-head attention has a smaller c in c/D than single-head.",
                   ratio, {"c_multi_over_single": ratio.value}, _seed2_number(cmp, ratio), n_prompts=n_prompts)


def seed2_narrow(cmp: dict) -> Claim:
    """With p/h < d the multi-head advantage shrinks or reverses: c multi / c single no longer clearly below 1 (at least
    SEED2_C_RATIO)."""
    ratio, n_prompts = _c_ratio(cmp, ABOVE)
    return decided("seed2_narrow", f"Second seed: with p/h < d (p={cmp['p']}, h={cmp['h']}) the multi-head advantage shrinks or reverses.",
                   ratio, {"c_multi_over_single": ratio.value}, _seed2_number(cmp, ratio), n_prompts=n_prompts)


def seed2(cmp: dict) -> Claim:
    """:func:`seed2_wide` or :func:`seed2_narrow`, as the comparison's p/h says."""
    return seed2_wide(cmp) if check_result("cmp", cmp, _SEED2_KEYS)["p_over_h_ge_d"] else seed2_narrow(cmp)


# -- the second seed's other settings (issue 14; the settings' definitions are ours: README) --------

#: the settings whose prediction is the base one (smaller c at p/h >= d; shrinks or reverses at p/h < d), and their words
SEED2_SETTINGS = {"noisy": "noisy labels", "correlated": "correlated features", "local": "local examples"}
#: a model has learned theta_0 when its mean function u (its predictions fitted on x_q) is within |theta_0| / 2 of
#: theta_0: then u is closer to theta_0 than to 0, the mean function of a model that has not (their midpoint is at 0.5)
PRIOR_LEARNED = 0.5
_PRIOR_KEYS = ("D", "distance_multi", "distance_single", "distance_bayes", "distance_no_prior", "error_multi", "error_single", "error_prior_only")


def seed2_setting(setting: str, cmp: dict) -> Claim:
    """:func:`seed2` in another setting: id ``seed2_<setting>`` (p/h >= d) or ``seed2_<setting>_narrow`` (p/h < d)."""
    if setting not in SEED2_SETTINGS:
        raise ValueError(f"setting must be one of {sorted(SEED2_SETTINGS)}, got {setting!r}")
    base = seed2(cmp)
    base.id = f"seed2_{setting}" + ("" if base.id == "seed2_wide" else "_narrow")
    base.text = base.text.replace("Second seed:", f"Second seed, {SEED2_SETTINGS[setting]}:")
    return base


def _prior(cmp: dict) -> tuple[Test, Optional[int], dict, str]:
    """(c multi / c single below SEED2_C_RATIO, its prompts, the pair's prior numbers at the smallest D, the deciding
    numbers in words) of a prior comparison."""
    check_result("cmp", cmp, (*_SEED2_KEYS, "prior"))
    ratio, n_prompts = _c_ratio(cmp, BELOW)
    p = check_result("cmp['prior']", cmp["prior"], _PRIOR_KEYS)
    return ratio, n_prompts, p, (
        f"distance of u from theta_0 / norm of theta_0 at D = {p['D']}: multi-head {p['distance_multi']:.2f}, single-head "
        f"{p['distance_single']:.2f} (Bayes {p['distance_bayes']:.2f}, no-prior ridge {p['distance_no_prior']:.2f}); "
        f"error there {p['error_multi']:.3f} vs {p['error_single']:.3f} (theta_0 . x_q alone {p['error_prior_only']:.3f}); "
        + _seed2_number(cmp, ratio))


def seed2_prior_strong(cmp: dict) -> Claim:
    """Strong prior: two parts, multi-head learns theta_0 (distance at most PRIOR_LEARNED) and beats single-head (c ratio
    at most SEED2_C_RATIO); the distance's interval from the prior study's bootstrap draws (``distance_draws``)."""
    ratio, n_prompts, p, number = _prior(cmp)
    draws = p.get("distance_draws")
    learned = Test(p["distance_multi"], percentiles(draws["multi"]) if draws else None, PRIOR_LEARNED, BELOW)
    return decided("seed2_prior_strong", "Second seed, strong prior (sigma^2 = O(1/D)): multi-head attention learns the prior mean "
                   "theta_0 and beats single-head (smaller c).", learned, {"distance_multi": p["distance_multi"], "c_multi_over_single": ratio.value},
                   number, n_prompts=n_prompts, parts={"learns theta_0": learned, "smaller c": ratio})


def seed2_prior_weak(cmp: dict) -> Claim:
    """Weak prior: multi-head learns theta_0 no better than single-head: distances within CLEAR_ERROR_RATIO, each floored
    at the Bayes predictor's, whose true distance is 0 (the probe's resolution); the interval from the prior study's paired
    bootstrap draws of the three distances (``distance_draws``)."""
    _, _, p, number = _prior(cmp)
    floor = max(p["distance_bayes"], 1e-12)
    value = max(p["distance_single"], floor) / max(p["distance_multi"], floor)
    draws = p.get("distance_draws")
    if draws:  # the same ratio on each paired bootstrap resample of the prior study's prompts
        multi, single, bayes = (torch.tensor(draws[k], dtype=torch.float64) for k in ("multi", "single", "bayes"))
        low = bayes.clamp(min=1e-12)
        interval = percentiles(torch.maximum(single, low) / torch.maximum(multi, low))
    ratio = Test(value, interval if draws else None, CLEAR_ERROR_RATIO, BELOW)
    return decided("seed2_prior_weak", "Second seed, weak prior (sigma^2 = Theta(1)): multi-head attention learns theta_0 no better "
                   "than single-head.", ratio, {"single_over_multi_distance": ratio.value}, number + f"; single / multi distance {interval_text(ratio)}",
                   n_prompts=p.get("n_prompts"))


def _setting_claims(study: dict) -> dict[tuple, Claim]:
    """The claims on one settings study by (setting, p, h), in its order (other settings' names have none)."""
    prior, out = {"prior-strong": seed2_prior_strong, "prior-weak": seed2_prior_weak}, {}
    for setting, res in check_result("study", study, ("settings",))["settings"].items():
        out.update({(setting, c["p"], c["h"]): seed2_setting(setting, c) if setting in SEED2_SETTINGS else prior[setting](c)
                    for c in res["comparisons"] if setting in SEED2_SETTINGS or (setting in prior and c["p_over_h_ge_d"])})
    return out


def seed2_settings(study: dict) -> list[Claim]:
    """Every claim on a :func:`~icl_interp.analysis.studies.settings_study` result, in its order (other settings' names have none),
    each decided on every training seed whose study ``study["seeds"]`` (``{k: settings study}``) holds its setting
    (:func:`~icl_interp.analysis.claims.across_seeds`)."""
    base = _setting_claims(study)
    others = {str(k): _setting_claims(s) for k, s in study.get("seeds", {}).items()}
    return [across_seeds({"0": c, **{k: o[key] for k, o in others.items() if key in o}}) for key, c in base.items()]
