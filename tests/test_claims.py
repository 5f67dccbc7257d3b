"""Every seed claim on synthetic study results on both sides of each of its thresholds (icl_interp/analysis/claims/)."""

import json

import pytest
import torch

from icl_interp.analysis import claims as cl
from icl_interp.analysis.claims import Claim
from icl_interp.analysis.studies.iterates import gd_distance, output_gap, read_out_gap

R, M, N, U = "reproduced", "mixed", "not reproduced", "undecided"


def importance(rel=(0.1, 0.1), shares=(0.6, 0.6), clean=0.5, free=1.0):
    """Relative increases over the clean error; with clean 0.5 and context-free 1.0 the skill is 0.5, so share = rel."""
    return {"layer0_relative_increase": list(rel), "later_layers_top_head_share": list(shares), "clean_error": clean,
            "context_free_error": free}


def pruning(ratio=1.0, single=None, free=1.0):
    out = {"pruned_over_full": ratio, "error_pruned": 0.5 * ratio, "error_full": 0.5, "error_context_free": free}
    if single is not None:
        out["error_single_head"] = 0.5 * single
    return out


def sweep(ratios, singles=None):
    levels = {}
    for i, r in enumerate(ratios):
        levels[f"0.{i + 1}"] = {"pruned_over_full": r}
        if singles is not None:
            levels[f"0.{i + 1}"]["single_over_full"] = singles[i]
    return {"levels": levels}


def pre(gain, layer0=0.3, control=0.1):
    return {"best_candidate": "pre_reweight", "best_gain_over_input": gain, "best_layer0_r2": layer0,
            "best_input_r2": layer0 - gain, "best_control_r2": control}


def gd(d_gd, d_pto, c_gd=0.8, c_pto=0.8):
    return {"distance": {"layers": [1, 2], "gd": d_gd, "pto": d_pto, "control_gd": c_gd, "control_pto": c_pto}}


def cmp(ratio, wide):
    return {"p": 16 if wide else 8, "h": 4, "p_over_h_ge_d": wide, "c_multi_over_single": ratio, "c_multi": 3.0 * ratio,
            "c_single": 3.0, "risk_at_max_D_multi": 0.1, "risk_at_max_D_single": 0.3}


@pytest.mark.parametrize("rel, verdict", [
    ((0.06, 0.9), R),            # every head above 5% of the skill
    ((0.051, 0.9), R),
    ((0.05, 0.9), M),            # exactly 5% is not above it: head 0 fails, head 1 holds (parts disagree)
    ((0.04, 0.9), M),
    ((0.0, 0.9), M),             # one head does nothing, the other carries the layer
    ((-0.01, 0.9), M),
    ((0.04, 0.01), N),           # no head above 5%
])
def test_layer0_all_heads(rel, verdict):
    claim = cl.layer0_all_heads(importance(rel=rel))
    assert (claim.id, claim.verdict) == ("layer0_all_heads", verdict)
    assert claim.values["relative_increase"] == list(rel) and claim.values["skill_share"] == pytest.approx(list(rel))


@pytest.mark.parametrize("clean, free, verdict", [
    (0.5, 0.8, R),               # skill 0.3: +3% of the clean error is 0.015, 5% of the skill
    (0.5, 0.9, M),               # skill 0.4: 0.015 is 3.75% of it
    (0.5, 0.55, N),              # predicting 0 is only 10% worse: no skill, no head "used"
    (0.5, 0.4, N),               # worse than predicting 0 (a random model)
])
def test_layer0_all_heads_measures_the_share_of_the_skill(clean, free, verdict):
    claim = cl.layer0_all_heads(importance(rel=(0.031, 0.2), clean=clean, free=free))
    assert claim.verdict == verdict
    if verdict != N:
        assert claim.values["skill_share"][0] == pytest.approx(0.031 * clean / (free - clean))


def test_head_claims_need_a_model_that_solves_something():
    no_skill = importance(rel=(0.5, 0.5), shares=(0.9, 0.9), clean=1.05, free=1.1)
    for claim in (cl.layer0_all_heads(no_skill), cl.later_single_head(no_skill), cl.pruning_preserves(pruning(1.0, free=0.55))):
        assert claim.verdict == N and "solves nothing in context" in claim.number
    assert cl.later_single_head(importance(shares=(0.9, 0.9), clean=1.0, free=1.11)).verdict == R   # just above 10%


@pytest.mark.parametrize("shares, verdict", [
    ((0.6, 0.51), R),            # above half in every later layer
    ((0.6, 0.5), M),             # exactly half is not above it (the one rule's "above" is strict)
    ((0.6, 0.49), M),            # one later layer without a majority head
    ((0.4, 0.49), N),
])
def test_later_single_head(shares, verdict):
    assert cl.later_single_head(importance(shares=shares)).verdict == verdict


def test_later_single_head_needs_a_later_layer():
    assert cl.later_single_head(importance(shares=())) is None    # a one-layer model


@pytest.mark.parametrize("ratio, verdict", [(1.05, R), (1.1, R), (1.11, N), (1.5, N), (3.0, N)])   # no partial band: one rule
def test_pruning_preserves(ratio, verdict):
    claim = cl.pruning_preserves(pruning(ratio))
    assert (claim.id, claim.verdict, claim.values["pruned_over_full"]) == ("pruning_preserves", verdict, ratio)


@pytest.mark.parametrize("single, verdict", [(1.2, R), (1.11, R), (1.1, N), (1.05, N), (0.9, N)])
def test_multihead_beats_single(single, verdict):
    claim = cl.multihead_beats_single(pruning(1.0, single=single))
    assert (claim.id, claim.verdict) == ("multihead_beats_single", verdict)
    assert claim.values["single_over_full"] == pytest.approx(single)


@pytest.mark.parametrize("ratios, verdict", [((1.05, 1.1), R), ((1.05, 1.2), M), ((1.5, 1.0), M), ((1.2, 1.6), N)])
def test_noise_pruning(ratios, verdict):
    claim = cl.noise_pruning(sweep(ratios))
    assert (claim.id, claim.verdict, claim.values["worst"]) == ("noise_pruning", verdict, max(ratios))


@pytest.mark.parametrize("singles, verdict", [((1.2, 1.11), R), ((1.2, 1.1), M), ((1.0, 1.01), N), ((1.0, 0.9), N)])
def test_noise_single_head(singles, verdict):
    claim = cl.noise_single_head(sweep((1.0, 1.0), singles))
    assert (claim.id, claim.verdict) == ("noise_single_head", verdict)


def test_noise_single_head_needs_a_single_head_model():
    assert cl.noise_single_head(sweep((1.0, 1.0))) is None


@pytest.mark.parametrize("errors, verdict", [
    ((1.0, 0.95, 0.9, 0.85), R),     # falling, and the most heads 15% below one head
    ((1.0, 0.95, 0.96, 0.85), R),    # a 1% rise between neighbours is within the 2% slack
    ((1.0, 0.95, 0.98, 0.85), M),    # a 3% rise breaks the order; still better than one head
    ((1.0, 0.97, 0.96, 0.95), M),    # ordered, but only 5% below one head (needs 10%)
    ((1.0, 0.97, 0.96, 0.89), R),
    ((1.0, 0.9, 0.95, 1.05), N),     # the most heads worse than one head
])
def test_head_count_order(errors, verdict):
    heads = {h: {"last": e, "mean": e} for h, e in zip((1, 2, 4, 8), errors)}
    assert cl.head_count_order(heads).verdict == verdict
    # JSON keys are strings; "16" must sort after "8"
    as_json = json.loads(json.dumps({str(h * 2): v for h, v in heads.items()}))
    assert cl.head_count_order(as_json).verdict == verdict


def values_of(seed_errors):
    return [0.8] + [b / a for a, b in seed_errors]


@pytest.mark.parametrize("seed_errors, part, verdict", [
    (((1.0, 0.8), (1.0, 0.85)), R, R),   # 1 vs 4 heads clears on every seed: the claim as on seed 0 alone
    (((1.0, 1.1), (1.0, 1.05)), U, U),   # seed 0's 0.8 clears, the seeds' 1.1 and 1.05 do not: across seeds undecided
])
def test_head_count_order_on_seeds_that_have_only_some_head_counts(seed_errors, part, verdict):
    """Seed 0 has 1, 2, 4, 8 heads; seeds 1 and 2 only 1 and 4: the claim keeps seed 0's four head counts and the
    1-vs-4 comparison on every seed, seed 0's included, joins as a part."""
    full = {h: {"last": e, "mean": e} for h, e in zip((1, 2, 4, 8), (1.0, 0.9, 0.8, 0.78))}  # reproduced on seed 0 alone
    seeds = {str(k + 1): {str(h): {"last": e, "mean": e} for h, e in zip((1, 4), errs)} for k, errs in enumerate(seed_errors)}
    got = cl.head_count_order(full, seeds)
    name = "h=1 vs h=4 on 3 training seeds"
    assert got.parts[name]["verdict"] == part and got.verdict == verdict
    assert got.value == cl.head_count_order(full).value  # the headline is seed 0's, all head counts
    assert got.seeds == 3 and got.per_seed["2"]["value"] == pytest.approx(values_of(seed_errors)[2])
    values = values_of(seed_errors)  # seed 0's 1 vs 4 heads, then each seed's
    assert got.parts[name]["value"] == pytest.approx(0.8 if part == R else sum(values) / 3)  # one verdict: seed 0's value
    assert name in got.number and "seed 2:" in got.number
    same = {k: {h: v for h, v in full.items()} for k in ("1", "2")}  # every seed has every head count: decided on each
    assert cl.head_count_order(full, same).seeds == 3


def test_head_count_order_needs_two_head_counts():
    with pytest.raises(ValueError, match="head_counts"):
        cl.head_count_order({4: {"last": 0.2, "mean": 0.3}})


@pytest.mark.parametrize("ratio, wide, verdict", [
    (0.85, True, R), (0.9, True, R), (0.95, True, N), (1.2, True, N),              # wide: c ratio at most 0.9
    (1.05, False, R), (0.95, False, R), (0.9, False, N), (0.85, False, N),          # narrow: no longer clearly below 1
])
def test_seed2(ratio, wide, verdict):
    claim = cl.seed2(cmp(ratio, wide))
    assert (claim.id, claim.verdict) == ("seed2_wide" if wide else "seed2_narrow", verdict)
    assert claim.values["c_multi_over_single"] == ratio


@pytest.mark.parametrize("gain, layer0, control, verdict", [
    (0.1, 0.3, 0.2, R),          # 0.1 over the input and over the random model
    (0.051, 0.3, 0.2, R),
    (0.05, 0.3, 0.2, N),         # exactly 0.05 is not above it
    (0.1, 0.3, 0.26, N),         # the random model decodes it almost as well
    (0.03, 0.3, 0.1, N),
    (-0.1, 0.3, 0.1, N),
    (0.1, 0.3, None, U),         # no control: never reproduced
])
def test_layer0_preprocesses(gain, layer0, control, verdict):
    claim = cl.layer0_preprocesses(pre(gain, layer0, control))
    assert (claim.id, claim.verdict) == ("layer0_preprocesses", verdict)


@pytest.mark.parametrize("d_gd, d_pto, c_gd, c_pto, verdict", [
    (0.1, 0.3, 0.8, 0.8, R),     # close to GD, far closer than chance
    (0.3, 0.19, 0.8, 0.8, R),    # PtO counts as well as GD
    (0.2, 0.3, 0.8, 0.8, R),     # "below" is inclusive
    (0.21, 0.3, 0.8, 0.8, N),
    (0.15, 0.3, 0.31, 0.8, R),   # chance (0.31) just over twice as far
    (0.15, 0.3, 0.29, 0.8, N),   # close, but chance (0.29) is less than twice as far
    (0.45, 0.6, 0.8, 0.8, N),
    (0.5, 0.6, 0.8, 0.8, N),
    (0.3, 0.4, 0.25, 0.8, N),    # a random model is closer
    (0.1, 0.3, None, None, R),   # no control model: chance counts as infinitely far
])
def test_later_gd_steps(d_gd, d_pto, c_gd, c_pto, verdict):
    claim = cl.later_gd_steps(gd(d_gd, d_pto, c_gd, c_pto))
    assert (claim.id, claim.verdict) == ("later_gd_steps", verdict)


@pytest.mark.parametrize("d_gd, d_pto, c_pto, verdict", [
    (0.3, 0.1, 0.8, R),
    (0.3, 0.21, 0.8, N),         # closer to PtO than GD, but not below 0.2
    (0.3, 0.15, 0.25, N),        # the random model is less than twice as far from PtO
    (0.6, 0.49, 0.8, N),
    (0.99, 0.98, 0.99, N),       # closer to PtO than to GD, but tracking neither (not below 0.5)
    (0.1, 0.15, 0.8, N),         # GD is closer
    (0.1, 0.1, 0.8, N),          # a tie is not "better"
])
def test_steps_on_preprocessed(d_gd, d_pto, c_pto, verdict):
    claim = cl.steps_on_preprocessed(gd(d_gd, d_pto, 0.8, c_pto))
    assert (claim.id, claim.verdict) == ("steps_on_preprocessed", verdict)


def test_gd_claims_need_a_later_layer():
    assert cl.later_gd_steps({"distance": None}) is None and cl.steps_on_preprocessed({"distance": None}) is None


def test_concat_twin_claims_have_their_own_ids_and_say_so():
    found = [cl.layer0_preprocesses(pre(0.1), "default-concat"), cl.later_gd_steps(gd(0.1, 0.3), "default-concat"),
             cl.steps_on_preprocessed(gd(0.1, 0.3), "default-concat")]
    assert [c.id for c in found] == ["concat_layer0_preprocesses", "concat_later_gd_steps", "concat_steps_on_preprocessed"]
    assert all(c.text.startswith("With concatenated [x; y] tokens (`default-concat`): ") for c in found)


def test_gd_distance_is_the_mean_gap_over_later_layers():
    assert gd_distance([0.0, 0.5]) == 0.25
    assert gd_distance([0.2, None, 0.2]) == pytest.approx(1.4 / 3)      # an iterate not read counts as a full gap
    with pytest.raises(ValueError, match="gaps"):
        gd_distance([])


@pytest.mark.parametrize("r2, gap", [(1.0, 0.0), (0.96, 0.2), (0.75, 0.5), (0.0, 1.0), (-0.3, 1.0), (None, 1.0), (float("nan"), 1.0)])
def test_read_out_gap_is_the_relative_rms_error_of_the_probe(r2, gap):
    assert read_out_gap(r2) == pytest.approx(gap)


def test_output_gap_is_relative_to_the_algorithm_spread():
    pred = torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert output_gap(pred, pred) == 0.0
    assert output_gap(pred, 0.9 * pred) == pytest.approx(0.1 * (4 / 3) ** -0.5)   # var is unbiased: 4/3
    assert output_gap(pred, 3 * pred) == 1.0 and output_gap(torch.zeros(4), pred) == 1.0   # capped; no spread


def test_linear_twin_claims_have_their_own_ids_and_say_so():
    r = _results(full=False)
    r["linear"] = {"model": "linear-concat", "importance": importance(rel=(0.01, 0.9)), "pruning": pruning(1.2),
                   "preprocessing": pre(0.1), "gd": gd(0.3, 0.4)}
    found = cl.decide(r)[6:]
    assert [c.id for c in found] == ["linear_" + i for i in ("layer0_all_heads", "later_single_head", "pruning_preserves",
                                                             "layer0_preprocesses", "later_gd_steps", "steps_on_preprocessed")]
    assert all(c.text.startswith("In the trained linear-attention model (`linear-concat`): ") for c in found)
    assert [c.verdict for c in found] == [M, R, N, R, N, N]


@pytest.mark.parametrize("ridge_ratio, lasso_ratio, meets", [(0.80, 1.10, True), (0.85, 1.15, True), (0.86, 1.10, False),
                                                             (0.80, 1.16, False)])
def test_quality_bar_at_the_largest_n(ridge_ratio, lasso_ratio, meets):
    """Both ratio thresholds, on both sides; the other two conditions hold here."""
    last = 0.2
    risk = {"curves": {"m": {"error": [1.0, 0.6, 0.4, 0.3, last]},
                       "ridge (best alpha)": {"error": [1.0, 0.7, 0.5, 0.35, last / ridge_ratio]},
                       "Lasso (best alpha)": {"error": [1.0, 0.7, 0.45, 0.3, last / lasso_ratio]},
                       "OLS": {"error": [1.0, 0.9, 0.8, 5.0, 0.3]}}}
    bar = cl.quality_bar(risk, "m", d=4)
    assert bar["ratio_to_best_ridge_at_largest_n"] == pytest.approx(ridge_ratio)
    assert bar["ratio_to_best_lasso_at_largest_n"] == pytest.approx(lasso_ratio)
    assert bar["below_ridge_for_all_n_ge_d_half"] and bar["below_ols_for_all_n_lt_d"]
    assert bar["meets_bar"] is meets and bar["n_largest"] == 4 and len(bar["per_n"]) == 5


@pytest.mark.parametrize("lasso_interval, settled", [((1.14, 1.16), False), ((1.10, 1.149), True), ((1.151, 1.2), True)])
def test_quality_bar_carries_the_ratio_intervals_and_says_whether_they_settle_it(lasso_interval, settled):
    """The verdict stays on the ratio; the interval says whether another draw of prompts could flip that part."""
    risk = {"curves": {"m": {"error": [1.0, 0.6, 0.4, 0.3, 0.2]},
                       "ridge (best alpha)": {"error": [1.0, 0.7, 0.5, 0.35, 0.25]},
                       "Lasso (best alpha)": {"error": [1.0, 0.7, 0.45, 0.3, 0.2 / 1.151]},
                       "OLS": {"error": [1.0, 0.9, 0.8, 5.0, 0.3]}},
            "ratio_intervals": {"m": {"ridge (best alpha)": [0.78, 0.82], "Lasso (best alpha)": list(lasso_interval)}}}
    bar = cl.quality_bar(risk, "m", d=4)
    assert not bar["within_lasso_ratio"] and not bar["meets_bar"]          # 1.151 > 1.15 whatever the interval
    assert bar["ratio_to_best_lasso_interval"] == list(lasso_interval) and bar["lasso_ratio_settled"] is settled
    assert bar["ridge_ratio_settled"] is True
    assert "ratio_to_best_lasso_interval" not in cl.quality_bar({"curves": risk["curves"]}, "m", d=4)


def test_quality_bar_below_ridge_from_d_half_and_below_ols_below_d():
    risk = {"curves": {"m": {"error": [1.0, 0.95, 0.5, 0.3, 0.2]},
                       "ridge (best alpha)": {"error": [1.0, 0.9, 0.5, 0.35, 0.3]},   # n = 2 = d/2: 0.5 is not below 0.5
                       "Lasso (best alpha)": {"error": [1.0, 0.7, 0.45, 0.3, 0.2]},
                       "OLS": {"error": [1.0, 0.9, 0.8, 5.0, 0.3]}}}                  # n = 1: 0.95 is not below 0.9
    bar = cl.quality_bar(risk, "m", d=4)
    assert bar["n_not_below_ridge"] == [2] and bar["n_not_below_ols"] == [1]  # n = 1 < d/2 above ridge: not counted
    assert not bar["below_ridge_for_all_n_ge_d_half"] and not bar["below_ols_for_all_n_lt_d"] and not bar["meets_bar"]


def _results(full=True):
    r = {"importance": importance(), "pruning": pruning(1.05, single=1.2 if full else None), "preprocessing": pre(0.1), "gd": gd(0.1, 0.3)}
    if full:
        r["concat"] = {"model": "default-concat", "preprocessing": pre(0.01), "gd": gd(0.3, 0.1)}
        r["pruning_noise"] = sweep((1.0, 1.2), (1.2, 1.3))
        r["head_counts"] = {h: {"last": e, "mean": e} for h, e in ((1, 0.3), (4, 0.2))}
        r["multihead"] = {"comparisons": [cmp(1.0, False), cmp(0.7, True)]}
    return r


def test_decide_on_a_full_report_gives_every_id_once_in_the_report_order():
    found = cl.decide(_results())
    assert [c.id for c in found] == [
        "layer0_all_heads", "later_single_head", "pruning_preserves", "layer0_preprocesses", "later_gd_steps",
        "steps_on_preprocessed", "concat_layer0_preprocesses", "concat_later_gd_steps", "concat_steps_on_preprocessed",
        "multihead_beats_single", "noise_pruning", "noise_single_head", "head_count_order", "seed2_narrow", "seed2_wide"]
    assert [c.verdict for c in found] == [R, R, R, R, R, N, N, R, R, R, M, R, R, R, R]
    first = json.loads(json.dumps([c.to_dict() for c in found]))[0]
    assert {k: first[k] for k in ("id", "claim", "verdict", "value", "interval", "threshold", "direction", "n_prompts", "seeds",
                                  "values", "ablation")} == {
        "id": "layer0_all_heads", "claim": found[0].text, "verdict": R, "value": pytest.approx(0.1), "interval": None,
        "threshold": cl.HEAD_ESSENTIAL_RISE, "direction": "above", "n_prompts": None, "seeds": 1, "ablation": "zero",
        "values": {"skill_share": pytest.approx([0.1, 0.1]), "relative_increase": [0.1, 0.1], "skill": 0.5, "breaks_model": {}}}
    assert first["number"].startswith("share of the skill (context-free error 1.000 - error 0.500) lost by masking each "
                                      "layer-0 head: head 0: 10.0%, head 1: 10.0%")
    assert first["by_ablation"] == {"zero": {"value": pytest.approx(0.1), "interval": None, "verdict": R}}


def test_decide_on_a_single_model_leaves_out_the_sibling_claims():
    ids = [c.id for c in cl.decide(_results(full=False))]
    assert ids == ["layer0_all_heads", "later_single_head", "pruning_preserves", "layer0_preprocesses", "later_gd_steps",
                   "steps_on_preprocessed"]


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="not a verdict|verdict must be one of"):
        Claim("x", "text", "not a verdict")
    with pytest.raises(ValueError, match="pruned_over_full"):
        cl.pruning_preserves({"error_full": 1.0})
    with pytest.raises(TypeError, match="importance must be a dict"):
        cl.layer0_all_heads([0.1])
    with pytest.raises(ValueError, match="results is missing"):
        cl.decide({"importance": importance()})


# -- the second seed's other settings (issue 14) -----------------------------------------------------

def prior_cmp(c_ratio=0.7, multi=0.1, single=0.1, bayes=0.02):
    """A prior setting's p/h >= d comparison: c ratio and the theta_0 distances at the smallest D."""
    return {**cmp(c_ratio, True), "prior": {"D": 1, "distance_multi": multi, "distance_single": single, "distance_bayes": bayes,
                                            "distance_no_prior": 0.75, "error_multi": 0.05, "error_single": 0.06,
                                            "error_prior_only": 0.04}}


@pytest.mark.parametrize("setting", ["noisy", "correlated", "local"])
@pytest.mark.parametrize("ratio, wide, verdict", [
    (0.89, True, R), (0.9, True, R), (0.91, True, N),        # the base claim's SEED2_C_RATIO, on both sides
    (1.0, False, R), (0.91, False, R), (0.9, False, N),
])
def test_seed2_setting_is_the_base_claim_under_its_own_id(setting, ratio, wide, verdict):
    claim = cl.seed2_setting(setting, cmp(ratio, wide))
    assert (claim.id, claim.verdict) == (f"seed2_{setting}" if wide else f"seed2_{setting}_narrow", verdict)
    assert claim.text.startswith(f"Second seed, {cl.SEED2_SETTINGS[setting]}: with p/h")
    assert claim.number == cl.seed2(cmp(ratio, wide)).number and claim.values == {"c_multi_over_single": ratio}


@pytest.mark.parametrize("distance, ratio, verdict", [
    (0.5, 0.89, R),              # learned (distance <= 0.5, inclusive) and a clearly smaller c
    (0.1, 0.89, R),
    (0.51, 0.89, M),             # u is nearer the midpoint than theta_0: not learned
    (0.5, 0.91, M),              # learned, c not clearly smaller
    (0.51, 0.91, N),
    (0.9, 1.2, N),
])
def test_seed2_prior_strong(distance, ratio, verdict):
    claim = cl.seed2_prior_strong(prior_cmp(ratio, multi=distance))
    assert (claim.id, claim.verdict) == ("seed2_prior_strong", verdict)
    assert claim.values == {"distance_multi": distance, "c_multi_over_single": ratio}
    assert f"multi-head {distance:.2f}" in claim.number and "c multi / c single" in claim.number and "|" not in claim.number


@pytest.mark.parametrize("single, multi, bayes, verdict", [
    (0.11, 0.1, 0.02, R),        # single-head 1.1x as far from theta_0: the same (CLEAR_ERROR_RATIO, inclusive)
    (0.05, 0.1, 0.02, R),        # single-head closer: multi-head no better
    (0.111, 0.1, 0.02, N),       # 1.11x: multi-head learns theta_0 better
    (0.151, 0.1, 0.02, N),
    (0.04, 0.01, 0.05, R),       # both within the probe's resolution (the Bayes predictor's distance): equal, not 4x
    (0.054, 0.01, 0.05, R),      # floored: 0.054 / 0.05 = 1.08, not 5.4x
    (0.08, 0.01, 0.05, N),       # floored: 1.6
])
def test_seed2_prior_weak(single, multi, bayes, verdict):
    claim = cl.seed2_prior_weak(prior_cmp(multi=multi, single=single, bayes=bayes))
    assert (claim.id, claim.verdict) == ("seed2_prior_weak", verdict)
    assert claim.values["single_over_multi_distance"] == pytest.approx(max(single, bayes) / max(multi, bayes))


def test_seed2_settings_decides_each_comparison_in_order():
    study = {"settings": {
        "noisy": {"comparisons": [cmp(1.0, False), cmp(0.7, True)]},
        "prior-strong": {"comparisons": [prior_cmp(0.7, multi=0.1)]},
        "prior-weak": {"comparisons": [{**prior_cmp(1.0, single=0.3), "p_over_h_ge_d": False}, prior_cmp(1.0, single=0.3)]},
        "my-own-setting": {"comparisons": [cmp(0.7, True)]},   # a user's setting: no seed prediction, no claim
    }}
    found = cl.seed2_settings(study)
    assert [(c.id, c.verdict) for c in found] == [("seed2_noisy_narrow", R), ("seed2_noisy", R), ("seed2_prior_strong", R),
                                                  ("seed2_prior_weak", N)]   # the p/h < d prior pair has no claim


def test_seed2_settings_bad_inputs_are_named():
    with pytest.raises(ValueError, match="setting must be one of"):
        cl.seed2_setting("prior-strong", cmp(0.7, True))
    with pytest.raises(ValueError, match="cmp is missing \\['prior'\\]"):
        cl.seed2_prior_strong(cmp(0.7, True))
    with pytest.raises(ValueError, match="cmp\\['prior'\\] is missing"):
        cl.seed2_prior_weak({**cmp(0.7, True), "prior": {"D": 1}})
    with pytest.raises(TypeError, match="study must be a dict"):
        cl.seed2_settings([])
    with pytest.raises(ValueError, match="study is missing"):
        cl.seed2_settings({"noisy": {}})


# -- the interval rule (issue 26) -----------------------------------------------------------------------

@pytest.mark.parametrize("interval, direction, verdict", [
    ((1.2, 1.3), "above", R), ((0.9, 0.99), "above", N), ((1.0, 1.0), "above", N), ((0.95, 1.05), "above", U),
    ((0.9, 0.99), "below", R), ((1.0, 1.0), "below", R), ((1.01, 1.2), "below", N), ((0.95, 1.05), "below", U),
    ((float("nan"), 1.2), "above", U),
])
def test_interval_verdict_on_planted_intervals(interval, direction, verdict):
    """Wholly on the right side of the threshold (1.0): reproduced; wholly on the wrong side: not; across it: undecided."""
    assert cl.interval_verdict(list(interval), 1.0, direction) == verdict


def test_interval_verdict_bad_inputs_are_named():
    with pytest.raises(ValueError, match="direction"):
        cl.interval_verdict([0.0, 1.0], 0.5, "up")
    with pytest.raises(ValueError, match="interval must be"):
        cl.interval_verdict([0.0], 0.5, "above")
    with pytest.raises(ValueError, match="lo <= hi"):
        cl.interval_verdict([1.0, 0.0], 0.5, "above")


def _noisy(mean, spread, n=400, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (mean + spread * (torch.rand(n, generator=gen) - 0.5)).tolist()


def _pruning_pp(ratio, spread, n=400):
    """A pruning study on planted per-prompt errors: full about 0.5, pruned the same prompts' errors x ``ratio`` plus noise."""
    full = _noisy(0.5, 0.8, n, seed=1)
    noise = _noisy(0.0, spread, n, seed=2)
    pruned = [f * ratio + e for f, e in zip(full, noise)]
    free = [1.0] * n
    out = pruning(sum(pruned) / sum(full))
    out.update({"per_prompt": {"full": full, "context_free": free},
                "by_ablation": {"zero": {"per_prompt": pruned}, "mean": {"per_prompt": [p * 1.3 for p in pruned]}}})
    return out


def test_a_point_estimate_that_clears_with_an_interval_that_does_not_is_undecided():
    """1.08 <= 1.1 on the prompts at hand, but the prompts' noise spans the threshold: undecided; with little noise: reproduced."""
    wide, tight = cl.pruning_preserves(_pruning_pp(1.08, 2.0)), cl.pruning_preserves(_pruning_pp(1.08, 0.02))
    assert wide.value < cl.CLEAR_ERROR_RATIO < wide.interval[1] and wide.verdict == U
    assert tight.interval[1] < cl.CLEAR_ERROR_RATIO and tight.verdict == R
    assert cl.pruning_preserves(_pruning_pp(1.3, 0.02)).by_ablation["zero"]["verdict"] == N
    assert tight.n_prompts == 400 and tight.seeds == 1 and tight.threshold == cl.CLEAR_ERROR_RATIO and tight.direction == "below"


def test_the_paired_interval_matches_a_direct_numpy_bootstrap():
    """Peer computation: the ratio of means, prompts resampled together for both, percentiles 5 and 95, in numpy."""
    np = pytest.importorskip("numpy")
    study = _pruning_pp(1.08, 0.5)
    claim = cl.pruning_preserves(study)
    full, pruned = np.array(study["per_prompt"]["full"]), np.array(study["by_ablation"]["zero"]["per_prompt"])
    idx = np.random.default_rng(0).integers(0, len(full), size=(4000, len(full)))
    low, high = np.percentile(pruned[idx].mean(1) / full[idx].mean(1), [5, 95])
    assert claim.value == pytest.approx(pruned.mean() / full.mean())
    assert claim.interval == pytest.approx([low, high], abs=0.1 * (high - low))     # Monte Carlo error of both bootstraps
    unpaired = np.percentile(pruned[idx].mean(1) / full[np.random.default_rng(1).integers(0, len(full), idx.shape)].mean(1), [5, 95])
    assert unpaired[1] - unpaired[0] > 2 * (high - low)       # pairing matters here: the shared prompt difficulty cancels


def test_head_claims_are_decided_under_each_ablation_kind_and_say_which_changes_the_verdict():
    claim = cl.pruning_preserves(_pruning_pp(1.0, 0.02))      # zero: 1.0 (holds); mean: 1.3 (does not)
    assert claim.ablation == "zero" and set(claim.by_ablation) == {"zero", "mean"}
    assert claim.verdict == R and claim.by_ablation["mean"]["verdict"] == N
    assert claim.by_ablation["mean"]["value"] == pytest.approx(1.3 * claim.value)
    assert "mean ablation changes the verdict to not reproduced" in claim.number
    same = cl.pruning_preserves({**_pruning_pp(1.0, 0.02), "by_ablation": {"zero": {"per_prompt": _pruning_pp(1.0, 0.02)["by_ablation"]["zero"]["per_prompt"]}}})
    assert "changes the verdict" not in same.number


def _importance_pp(shifts, later=((0.3, 0.05), (0.2, 0.2)), n=300):
    """An importance study on planted per-prompt errors: clean 0.5, context-free 1.0 (skill 0.5), layer-0 head h's masked
    error 0.5 + shifts[h] on average, the later layers' heads as given; every column carries the prompts' shared noise."""
    base = _noisy(0.0, 0.4, n, seed=3)
    col = lambda m, s: [m + b + e for b, e in zip(base, _noisy(0.0, 0.1, n, seed=s))]  # noqa: E731
    heads = len(shifts)
    masked = [col(0.5 + d, 10 + h) for h, d in enumerate(shifts)] + [col(0.5 + d, 20 + i) for i, d in enumerate(x for row in later for x in row)]
    clean, free = col(0.5, 4), col(1.0, 5)
    ablation = [[sum(m) / n - sum(clean) / n for m in masked[l * heads:(l + 1) * heads]] for l in range(1 + len(later))]
    c, f = sum(clean) / n, sum(free) / n
    return {"clean_error": c, "context_free_error": f, "layer0_relative_increase": [a / c for a in ablation[0]],
            "later_layers_top_head_share": [max(max(r), 0) / sum(max(v, 0) for v in r) for r in ablation[1:]],
            "per_prompt": {"clean": clean, "context_free": free}, "by_ablation": {"zero": {"ablation": ablation, "per_prompt": masked}}}


def test_layer0_all_heads_on_per_prompt_errors():
    assert cl.layer0_all_heads(_importance_pp((0.2, 0.2))).verdict == R                # 40% of the skill each
    mixed = cl.layer0_all_heads(_importance_pp((0.2, -0.001)))                         # head 1 about 0: the parts disagree
    assert mixed.verdict == M and "holds for head 0; not for head 1" in mixed.number
    assert mixed.parts["head 1"]["verdict"] == N and mixed.interval[1] < cl.HEAD_ESSENTIAL_RISE
    assert cl.layer0_all_heads(_importance_pp((0.2, 0.025))).verdict in (U, M)         # 5% of the skill: within the noise


def test_a_head_whose_removal_breaks_the_model_is_not_a_share_over_100_percent():
    study = _importance_pp((34.0, 0.2))                                                # error about 34.5 vs context-free 1.0
    claim = cl.layer0_all_heads(study)
    masked, free = study["by_ablation"]["zero"]["per_prompt"][0], study["per_prompt"]["context_free"]
    ratio = sum(masked) / sum(free)
    assert f"head 0: removing it breaks the model (error {ratio:.1f} x the context-free error), head 1: 40.0%" in claim.number
    assert claim.values["breaks_model"] == {"0": pytest.approx(ratio, rel=0.01)} and "6900" not in claim.number
    assert claim.verdict == R and claim.value == pytest.approx(0.4, abs=0.01)          # the least share decides: head 1's
    broken = cl.pruning_preserves({**_pruning_pp(3.0, 0.02)})
    assert "pruning breaks the model (error 1.5 x the context-free error)" in broken.number


def test_later_single_head_on_per_prompt_errors():
    claim = cl.later_single_head(_importance_pp((0.2, 0.2, 0.2), later=((0.3, 0.05, 0.0), (0.2, 0.2, 0.2))))  # layer 2: a 3-way tie
    assert claim.parts["layer 1"]["verdict"] == R and claim.parts["layer 2"]["verdict"] == N and claim.verdict == M
    assert claim.parts["layer 1"]["value"] == pytest.approx(0.3 / 0.35, abs=0.02) and claim.value == claim.parts["layer 2"]["value"]
    assert cl.later_single_head(_importance_pp((0.2, 0.2), later=((0.3, 0.0),))).verdict == R


def test_noise_claims_take_the_worst_level_with_a_joint_interval():
    levels = {}
    for k, (ratio, single) in {"0.1": (1.02, 1.3), "0.5": (1.04, 1.25)}.items():
        st = _pruning_pp(ratio, 0.02)
        levels[k] = {"pruned_over_full": ratio, "single_over_full": single, "by_ablation": st["by_ablation"],
                     "per_prompt": {"full": st["per_prompt"]["full"], "single_head": [v * single for v in st["per_prompt"]["full"]]}}
    pruned, single = cl.noise_pruning({"levels": levels}), cl.noise_single_head({"levels": levels})
    assert pruned.verdict == R and pruned.value == pytest.approx(max(p["value"] for p in pruned.parts.values()))
    assert pruned.by_ablation["mean"]["verdict"] == N and single.verdict == R and single.n_prompts == 400
    assert single.value == pytest.approx(1.25)


# -- training seeds (issue 26) ----------------------------------------------------------------------------

def test_across_seeds_every_seed_or_an_across_seed_interval_that_clears():
    one = lambda r: cl.seed2(cmp(r, True))  # noqa: E731  (point values: reproduced when c ratio <= 0.9)
    every = cl.across_seeds({"0": one(0.8), "1": one(0.85), "2": one(0.7)})
    assert every.verdict == R and every.seeds == 3 and list(every.per_seed) == ["0", "1", "2"] and every.value == 0.8
    assert "on every one of 3 training seeds" in every.number
    split = cl.across_seeds({"0": one(0.85), "1": one(0.95), "2": one(0.85)})       # mean 0.883 -+ 2.92 x 0.033: straddles 0.9
    assert split.verdict == U and split.value == pytest.approx(0.8833, abs=1e-4) and split.interval[0] < 0.9 < split.interval[1]
    assert split.per_seed["1"]["verdict"] == N
    most = cl.across_seeds({str(k): one(r) for k, r in enumerate((0.8, 0.8, 0.8, 0.8, 0.91))})   # one seed over, the mean clears
    assert most.verdict == R and most.interval[1] < 0.9 and most.seeds == 5
    assert cl.across_seeds({"0": one(0.8)}).seeds == 1 and cl.across_seeds({"0": one(0.8)}).per_seed is None
    with pytest.raises(ValueError, match="at least one training seed"):
        cl.across_seeds({})


def test_seed_interval_is_the_t_interval_of_the_mean():
    stats = pytest.importorskip("scipy.stats")
    values = [0.71, 0.75, 0.69, 0.8, 0.73]
    mean, se = sum(values) / 5, stats.sem(values)
    assert cl._core.seed_interval(values) == pytest.approx([mean - stats.t.ppf(0.95, 4) * se, mean + stats.t.ppf(0.95, 4) * se], rel=1e-3)
    with pytest.raises(ValueError, match="at least two seeds"):
        cl._core.seed_interval([0.7])


def test_decide_decides_the_second_seed_on_every_training_seed():
    r = _results(full=False)
    r["multihead"] = {"comparisons": [cmp(0.7, True)], "seeds": {"1": {"comparisons": [cmp(0.8, True)]}, "2": {"comparisons": [cmp(0.95, True)]}}}
    (claim,) = [c for c in cl.decide(r) if c.id == "seed2_wide"]
    assert claim.seeds == 3 and [v["verdict"] for v in claim.per_seed.values()] == [R, R, N]
    assert claim.value == pytest.approx(0.8167, abs=1e-4) and claim.verdict == U


def test_decide_decides_a_models_claims_on_each_of_its_training_seeds():
    r = _results(full=False)
    r["seeds"] = {"1": {"importance": importance(), "pruning": pruning(1.3), "preprocessing": pre(0.1), "gd": gd(0.1, 0.3)}}
    found = {c.id: c for c in cl.decide(r)}
    assert found["layer0_all_heads"].seeds == 2 and found["layer0_all_heads"].verdict == R
    prune = found["pruning_preserves"]                                  # 1.05 on seed 0, 1.3 on seed 1: the seeds' mean decides
    assert prune.per_seed == {"0": {"value": 1.05, "interval": None, "verdict": R}, "1": {"value": pytest.approx(1.3), "interval": None, "verdict": N}}
    assert prune.value == pytest.approx(1.175) and prune.verdict == U and prune.interval[0] < 1.1 < prune.interval[1]


def test_seed_interval_adds_the_prompts_half_width_in_quadrature():
    """The seeds' studies share their prompt seed: the prompts' error does not average out over seeds. Seeds that agree
    exactly keep their own prompt interval; the seeds' spread and the mean half-width add in quadrature."""
    assert cl._core.seed_interval([1.0, 1.0, 1.0], [0.05, 0.05, 0.05]) == pytest.approx([0.95, 1.05])
    t_se = 2.920 * (0.1 / 3 ** 0.5)                                       # values 0.9, 1.0, 1.1: sd 0.1, t(0.95, 2)
    half = (t_se ** 2 + 0.04 ** 2) ** 0.5                                 # mean half-width (0.02 + 0.04 + 0.06) / 3
    assert cl._core.seed_interval([0.9, 1.0, 1.1], [0.02, 0.04, 0.06]) == pytest.approx([1.0 - half, 1.0 + half])
    assert cl._core.seed_interval([0.9, 1.0, 1.1]) == pytest.approx([1.0 - t_se, 1.0 + t_se])
    with pytest.raises(ValueError, match="half_widths must hold one half-width >= 0 per value"):
        cl._core.seed_interval([0.9, 1.0], [0.1])
    with pytest.raises(ValueError, match="half_widths must hold one half-width >= 0 per value"):
        cl._core.seed_interval([0.9, 1.0], [0.1, -0.1])


def test_across_seeds_decides_every_threshold_and_part_of_the_claim_across_the_seeds():
    """A claim's other thresholds and parts are decided across seeds too, not its deciding statistic alone."""
    # the gain over the input clears on every seed (0.3), the gain over the random model only on two (0.15, 0.25; 0.04):
    # across the three, 0.147 -+ 2.92 x 0.061 straddles 0.05, so undecided, though the deciding statistic's seeds agree
    gated = cl.across_seeds({str(k): cl.layer0_preprocesses(pre(0.3, layer0=0.6, control=0.6 - over)) for k, over in enumerate((0.15, 0.25, 0.04))})
    assert [v["verdict"] for v in gated.per_seed.values()] == [R, R, N] and gated.verdict == U
    assert gated.value == pytest.approx(0.3) and gated.interval == pytest.approx([0.3, 0.3])    # the hull of three points
    low, high = gated.conditions[0]["interval"]
    assert gated.conditions[0]["value"] == pytest.approx(0.1467, abs=1e-4) and low < cl.PREPROCESS_R2_GAIN < high
    assert f"across the seeds its other threshold (above 0.05): undecided, 0.147 [{low:.3f}, {high:.3f}]" in gated.number
    # a claim whose parts disagree on every seed is mixed across them (not decided by its deciding part, which holds)
    every = cl.across_seeds({str(k): cl.seed2_prior_strong(prior_cmp(ratio, multi=0.1)) for k, ratio in enumerate((1.2, 1.3, 1.25))})
    assert {v["verdict"] for v in every.per_seed.values()} == {M} and every.verdict == M and every.value == 0.1
    # mixed on four seeds, reproduced on one: each part across the seeds; c ratio 1.378 -+ 0.26 (t(0.95, 4) x se) is not below 0.9
    mixed = cl.across_seeds({str(k): cl.seed2_prior_strong(prior_cmp(ratio, multi=0.1)) for k, ratio in enumerate((1.5, 1.5, 1.5, 1.5, 0.89))})
    assert [v["verdict"] for v in mixed.per_seed.values()] == [M, M, M, M, R] and mixed.verdict == M
    assert mixed.parts["learns theta_0"]["verdict"] == R and mixed.parts["smaller c"]["verdict"] == N
    assert mixed.parts["smaller c"]["interval"][0] == pytest.approx(1.378 - 2.132 * 0.2728 / 5 ** 0.5, abs=1e-3)
    assert "across the seeds by part: learns theta_0: reproduced (0.10 [0.10, 0.10]), smaller c: not reproduced (1.38 [1.12, 1.64])" in mixed.number
    # the same part undecided across seeds (0.85, 0.95, 0.8: c ratio mean 0.867 -+ 0.126 straddles 0.9): undecided
    part = cl.across_seeds({str(k): cl.seed2_prior_strong(prior_cmp(ratio, multi=0.1)) for k, ratio in enumerate((0.85, 0.95, 0.8))})
    assert part.verdict == U and part.parts["smaller c"]["verdict"] == U and part.parts["learns theta_0"]["verdict"] == R


def test_decide_decides_the_sibling_comparisons_on_the_training_seeds_their_studies_carry():
    """multihead_beats_single on each seed whose pruning study has a single-head model, the noise claims on the sweep's
    seeds, head_count_order on head_counts_seeds, the second seed's settings on their study's seeds."""
    r = _results()
    r["seeds"] = {"1": {"importance": importance(), "pruning": pruning(1.05, single=1.3), "preprocessing": pre(0.1), "gd": gd(0.1, 0.3)},
                  "2": {"importance": importance(), "pruning": pruning(1.05), "preprocessing": pre(0.1), "gd": gd(0.1, 0.3)}}
    r["pruning_noise"]["seeds"] = {"1": sweep((1.3, 1.25), (1.2, 1.05))}
    r["head_counts_seeds"] = {"1": {h: {"last": e, "mean": e} for h, e in ((1, 0.3), (4, 0.28))}}
    r["seed2_settings"] = {"settings": {"noisy": {"comparisons": [cmp(0.7, True)]}, "local": {"comparisons": [cmp(0.8, True)]}},
                           "seeds": {"1": {"settings": {"noisy": {"comparisons": [cmp(0.75, True)]}}}}}  # local: no seed 1
    found = {c.id: c for c in cl.decide(r)}
    beats = found["multihead_beats_single"]                                # seed 2's study has no single-head model
    assert beats.seeds == 2 and beats.per_seed == {"0": {"value": pytest.approx(1.2), "interval": None, "verdict": R},
                                                   "1": {"value": pytest.approx(1.3), "interval": None, "verdict": R}}
    assert found["layer0_all_heads"].seeds == 3
    noise = found["noise_pruning"]                                         # worst level 1.2 on seed 0, 1.3 on seed 1: not
    assert noise.seeds == 2 and noise.verdict == N and noise.per_seed["1"]["value"] == pytest.approx(1.3)
    single = found["noise_single_head"]       # seed 0: both levels hold (worst 1.2); seed 1: 1.2 holds, 1.05 not (mixed)
    assert single.seeds == 2 and [v["verdict"] for v in single.per_seed.values()] == [R, M] and single.value == pytest.approx(1.125)
    assert single.parts["noise 0.1"]["verdict"] == R and single.parts["noise 0.2"]["verdict"] == U and single.verdict == U
    heads = found["head_count_order"]                                      # h4 / h1: 0.667 (R) on seed 0, 0.933 (not) on seed 1
    assert heads.seeds == 2 and heads.per_seed["1"]["value"] == pytest.approx(0.28 / 0.3) and heads.per_seed["1"]["verdict"] == M   # ordered, gain too small
    assert heads.value == pytest.approx((0.2 / 0.3 + 0.28 / 0.3) / 2) and heads.verdict == U
    assert found["seed2_noisy"].seeds == 2 and found["seed2_noisy"].per_seed["1"]["value"] == 0.75
    assert found["seed2_local"].seeds == 1 and found["seed2_local"].per_seed is None
    assert [c.id for c in cl.decide(r)] == [c.id for c in cl.decide(_results())] + ["seed2_noisy", "seed2_local"]
