"""Every recipe and the report in --quick mode on the shipped zoo: the numbers they write, checked.

Each recipe's JSON must hold its figure, numbers with the shipped models' known
shape (e.g. layer 0's head 3 carries the layer; pruning hurts; the probe risk falls
with depth), and claims equal to :mod:`icl_interp.analysis.claims` decided again on the JSON's
own numbers (one source per verdict).
"""

import json
import math
import re

import pytest

import icl_interp as ii
from icl_interp.analysis import claims as cl
from icl_interp.analysis.recipes import RECIPES, run_recipe
from icl_interp.analysis.studies import gd_distance
from icl_interp.core.checkpoint import zoo_names

pytestmark = [pytest.mark.slow, pytest.mark.skipif("default" not in zoo_names(), reason="needs the shipped default model")]

BASE_IDS = ["layer0_all_heads", "later_single_head", "pruning_preserves", "layer0_preprocesses", "later_gd_steps", "steps_on_preprocessed"]
SETTINGS_IDS = ["seed2_noisy_narrow", "seed2_noisy", "seed2_correlated_narrow", "seed2_correlated", "seed2_local_narrow", "seed2_local",
                "seed2_prior_strong", "seed2_prior_weak"]
FULL_IDS = BASE_IDS + ["concat_layer0_preprocesses", "concat_later_gd_steps", "concat_steps_on_preprocessed",
                       *[f"linear_{i}" for i in BASE_IDS], "multihead_beats_single",
                       "noise_pruning", "noise_single_head", "head_count_order", "seed2_narrow", "seed2_wide", *SETTINGS_IDS]


def _claims_again(found):
    return [c.to_dict() for c in found if c is not None]


def check_risk_curves(d):
    curves, family = d["curves"], ii.zoo.siblings("default")
    assert {"default", *family.head_counts, "OLS", "Lasso (best alpha)", "oracle OLS"} <= set(curves)
    model, lasso, ols = curves["default"]["error"], curves["Lasso (best alpha)"]["error"], curves["OLS"]["error"]
    assert len(model) == 16 and model[-1] < 0.5 * model[1]          # it learns in context
    assert ols[8] > 10 * model[8]                                   # OLS's double-descent peak at n = d = 8
    ridge = curves["ridge (best alpha)"]["error"]
    assert d["quality_bar"]["ratio_to_best_lasso_at_largest_n"] == pytest.approx(model[-1] / lasso[-1])
    assert d["quality_bar"]["ratio_to_best_ridge_at_largest_n"] == pytest.approx(model[-1] / ridge[-1])
    assert 0.85 < d["quality_bar"]["ratio_to_best_lasso_at_largest_n"] < 1.3   # near Lasso (1.05 on the report's prompts)
    assert d["quality_bar"]["ratio_to_best_ridge_at_largest_n"] < 0.9       # the default is past the ridge plateau (0.77)
    for key in ("ridge", "lasso"):                                          # paired intervals around the ratios themselves
        low, high = d["quality_bar"][f"ratio_to_best_{key}_interval"]
        assert low < d["quality_bar"][f"ratio_to_best_{key}_at_largest_n"] < high < 1.4 * low
    heads = sorted(ii.load_model(n).cfg.n_heads for n in family.head_counts or ("default",))
    assert sorted(map(int, d["head_counts"])) == heads
    assert d["head_counts"]["4"]["last"] == model[-1] and d["head_counts"]["4"]["mean"] == pytest.approx(sum(model[1:]) / 15)
    assert d["claims"] == _claims_again([cl.head_count_order(d["head_counts"])] if len(heads) > 1 else [])


def check_head_importance(d):
    abl = d["ablation"]
    assert len(abl) == 4 and all(len(row) == 4 for row in abl)
    top = max(range(4), key=lambda h: abl[0][h])                   # head 2 carries layer 0, the others next to nothing
    assert top == 2 and all(abl[0][2] > 5 * abl[0][h] for h in (0, 1, 3))
    assert d["layer0_relative_increase"] == pytest.approx([v / d["clean_error"] for v in abl[0]])
    assert d["spearman_ablation_vs_gradient"] > 0.7
    assert d["claims"] == _claims_again([cl.layer0_all_heads(d), cl.later_single_head(d)])
    assert d["claims"][0]["verdict"] == "mixed"        # every head raises the error, not every one by 5%


def check_pruning_probing(d):
    assert d["mask"][0] == [1.0] * 4 and all(sum(row) == 1.0 for row in d["mask"][1:])
    assert d["error_pruned"] > 1.3 * d["error_full"] and d["pruned_over_full"] == pytest.approx(d["error_pruned"] / d["error_full"])
    assert len(d["probe_risk_full"]) == 5 and d["probe_risk_full"][-1] < 0.5 * d["probe_risk_full"][0]   # input, layers 0..3
    family, sweep = ii.zoo.siblings("default"), d["noise_sweep"]
    levels = sweep["levels"]
    assert sorted(map(float, levels)) == sorted(float(ii.load_model(full).task.noise_std) for full, _ in family.noise_sweep)
    assert levels["0.5"]["error_pruned"] == d["error_pruned"]   # the model's own level is this study, not run again
    for level in levels.values():
        assert level["noise_floor"] < level["error_full"] < level["error_pruned"]
    found = [cl.pruning_preserves(d), cl.multihead_beats_single(d) if family.single_head else None]
    if len(levels) > 1:
        found += [cl.noise_pruning(sweep), cl.noise_single_head(sweep)]
    assert ("error_single_head" in d) == bool(family.single_head)
    assert d["claims"] == _claims_again(found)
    assert d["claims"][0]["verdict"] == "not reproduced"


def check_preprocessing(d):
    assert d["rows"]["pre_identity"]["input_r2"] > 0.99          # the raw x is in the embedding, linearly
    assert d["best_candidate"] in ("pre_reweight", "pre_power2", "pre_rank_one")
    best = d["rows_all_positions"][d["best_candidate"] + "_all"]
    assert d["best_gain_over_input"] == pytest.approx(best["layer0_r2"] - best["input_r2"])
    assert d["claims"] == _claims_again([cl.layer0_preprocesses(d)])


def check_gd_steps(d):
    risk, control = d["probe_risk_per_layer"], d["probe_risk_per_layer_control"]
    assert d["steps"] == [1, 2, 3] and len(risk) == 5 and risk[-1] < risk[1]   # input, layers 0..3
    assert d["gd_risk"][-1] < d["gd_risk"][0]                       # more GD steps, lower risk
    dist = d["distance"]
    assert dist["layers"] == [1, 2, 3] and len(control) == 5
    gd_run = d["iterates"]["algorithms"][f"gd|t0={dist['gd_t0']}"]
    assert dist["gd"] == pytest.approx(gd_distance([gd_run["gaps"][str(layer)] for layer in (1, 2, 3)]))
    assert dist["gd"] < 0.5 * dist["control_gd"]                    # far closer to GD than a random model
    assert d["claims"] == _claims_again([cl.later_gd_steps(d), cl.steps_on_preprocessed(d)])


def check_algorithm(d):
    (setting,) = d["settings"]
    assert (setting["d"], setting["noise_std"]) == (8, 0.5) and len(setting["pto_choice"]) == setting["n_points"] == 17
    last = {k: c["excess_risk"][-1] for k, c in setting["curves"].items()}
    assert last["oracle OLS"] < last["Lasso (best alpha)"] < last["ridge (best alpha)"] < last["OLS"]
    assert all(choice.startswith("pto3_") for choice in setting["pto_choice"])


def check_multihead(d):
    assert set(d["models"]) == {"softmax-p16-h1", "softmax-p16-h4", "softmax-p8-h1", "softmax-p8-h4"}
    assert [(c["p"], c["h"], c["p_over_h_ge_d"]) for c in d["comparisons"]] == [(8, 4, False), (16, 4, True)]
    for c in d["comparisons"]:
        assert c["c_multi"] < c["c_single"] and c["c_multi_over_single"] == pytest.approx(c["c_multi"] / c["c_single"])
    assert d["claims"] == _claims_again([cl.seed2(c) for c in d["comparisons"]])


def check_multihead_settings(d):
    settings = d["settings"]
    assert list(settings) == ["noisy", "correlated", "local", "prior-strong", "prior-weak"]
    assert [len(s["models"]) for s in settings.values()] == [4, 4, 4, 2, 2]
    noisy = settings["noisy"]["comparisons"]
    assert all(c["c_multi"] < c["c_single"] and c["risk_at_max_D_multi"] < 0.5 * c["risk_at_max_D_single"] for c in noisy)
    for setting in ("prior-strong", "prior-weak"):
        (c,) = settings[setting]["comparisons"]
        prior = c["prior"]
        assert prior["D"] == 1 and prior["distance_bayes"] < 0.1 and 0.6 < prior["distance_no_prior"] < 0.85   # the probe's ends
        assert prior["distance_multi"] == settings[setting]["prior"]["rows"][f"softmax-{setting}-p16-h4"]["theta0_distance"][0]
    assert settings["prior-strong"]["comparisons"][0]["prior"]["distance_multi"] < 0.1   # the strong prior is learned
    assert [c["id"] for c in d["claims"]] == SETTINGS_IDS
    assert d["claims"] == _claims_again(cl.seed2_settings(d))


def check_dynamics(d):
    steps = [r["step"] for r in d["rows"]]
    assert steps == sorted(steps) and len(steps) >= 3
    base = d["baselines_at_largest_n"]
    for r in d["rows"]:
        assert r["over_ridge"] == pytest.approx(r["error_last"] / base["ridge"])
        assert r["over_lasso"] == pytest.approx(r["error_last"] / base["lasso"])
    exit_step = d["summary"]["leaves_ridge_plateau_at"]
    if exit_step is not None:  # from there on the model stays clearly below ridge
        assert all(r["over_ridge"] * cl.CLEAR_ERROR_RATIO < 1 for r in d["rows"] if r["step"] >= exit_step)
    if "llc" in d:  # with the optional extra: an LLC per snapshot, each curriculum snapshot on its stage too
        llc = d["llc"]
        assert [r["step"] for r in llc["rows"]] == steps
        for r in llc["rows"]:
            assert r["near_minimum"] == (r["llc"] >= 0) and r["se"] >= 0
            assert r["llc"] == pytest.approx(sum(r["per_chain"]) / len(r["per_chain"]))
        assert {b["step"] for b in llc["stages"]["boundaries"]} <= set(steps)


CHECKS = {name: globals()[f"check_{name}"] for name in RECIPES}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_quick(name, tmp_path):
    if name == "multihead" and not ii.zoo.siblings("default").second_seed:
        pytest.skip("the one-layer softmax models are not in the zoo")
    if name == "multihead_settings" and len(ii.zoo.siblings("default").second_seed_settings) < 5:
        pytest.skip("the models of the second seed's other settings are not in the zoo")
    if name == "dynamics" and not ii.snapshots("default"):
        pytest.skip("the shipped default carries no snapshots")
    returned = run_recipe(name, tmp_path, quick=True)
    data = json.loads((tmp_path / f"{name}.json").read_text())
    assert json.loads(json.dumps(returned)) == data                # what it returns is what it wrote
    assert (tmp_path / data["figure"]).is_file()
    CHECKS[name](data)


def test_recipe_rejects_an_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="name"):
        run_recipe("no_such_recipe", tmp_path)


HEAD_CLAIMS = {"layer0_all_heads", "later_single_head", "pruning_preserves", "noise_pruning"}


def _check_report(report, text):
    """Each claim in report.json is claims.decide on the report's own numbers, and report.md shows it with its value,
    interval, seeds and prompts; head claims under every ablation kind, the headline kind's verdict on top."""
    assert report["claims"] == [c.to_dict() for c in cl.decide(report)]
    for claim in report["claims"]:
        assert f"| `{claim['id']}` | {claim['claim']} | **{claim['verdict']}** |" in text
        assert claim["verdict"] in cl.VERDICTS and claim["seeds"] == len(claim.get("per_seed") or [0]) and claim["threshold"] is not None
        interval = claim["interval"]
        if interval is not None:                                     # the interval rule, applied once more here
            assert interval[0] <= interval[1]
            if claim["verdict"] in ("reproduced", "not reproduced") and not claim.get("conditions") and not claim.get("parts"):
                assert cl.interval_verdict(interval, claim["threshold"], claim["direction"]) == claim["verdict"]
            row = f"| {claim['value']:.3f} | [{interval[0]:.3f}, {interval[1]:.3f}] | {claim['seeds']} | {claim['n_prompts']} |"
            assert row in text.split(f"| `{claim['id']}` |")[1].split("\n")[0]
        if claim["id"].removeprefix("linear_") in HEAD_CLAIMS:
            assert claim["ablation"] == "zero" and list(claim["by_ablation"]) == ["zero", "mean", "resample"]
            # the kinds are seed 0's; a claim decided on several training seeds has the across-seed verdict on top
            top = claim["per_seed"]["0"]["verdict"] if claim["seeds"] > 1 else claim["verdict"]
            assert claim["by_ablation"]["zero"]["verdict"] == top and claim["interval"] is not None
            differ = [k for k, v in claim["by_ablation"].items() if v["verdict"] != top]
            assert all(f"{k} ablation changes the verdict" in claim["number"] for k in differ)
        assert not re.search(r"\b\d{3,}\.\d%", claim["number"])      # no share of the skill over 100%: "breaks the model"


def _keys(obj):
    """Every dict key anywhere in a parsed JSON document."""
    if isinstance(obj, dict):
        return [k for key, v in obj.items() for k in (key, *_keys(v))]
    return [k for v in obj for k in _keys(v)] if isinstance(obj, list) else []


#: the claims each sibling role makes possible: without the role (report["skipped"]) they are not decided
NEEDS = {"head_counts": ["head_count_order"], "single_head": ["multihead_beats_single"],
         "noise_sweep": ["noise_pruning", "noise_single_head"], "concat_twin": [i for i in FULL_IDS if i.startswith("concat_")],
         "linear_twin": [i for i in FULL_IDS if i.startswith("linear_")], "second_seed": ["seed2_narrow", "seed2_wide"],
         "second_seed_settings": SETTINGS_IDS}


@pytest.mark.parametrize("anchor", ["default", "default-v1"])
def test_report_quick(tmp_path, anchor):
    """The report on each anchor: every claim its siblings allow, each skip named with its reason."""
    from icl_interp.cli import main

    assert main(["report", "--out", str(tmp_path), "--quick", "--model", anchor]) == 0
    text = (tmp_path / "report.md").read_text()
    from icl_interp.analysis.report import PER_PROMPT_KEYS, load_report

    slim = json.loads((tmp_path / "report.json").read_text())         # report.json without the per-prompt numbers
    assert not PER_PROMPT_KEYS & set(_keys(slim)) and [p.name for p in tmp_path.glob("per_prompt-*.json.gz")] == [slim["per_prompt_file"]]
    report = load_report(tmp_path)                                    # they come back beside it: the claims decide again
    assert "per_prompt" in report["importance"] and report["claims"] == slim["claims"] and "per_prompt_file" not in report
    family = ii.zoo.siblings(anchor)
    present = {"head_counts": len(family.head_counts) > 1, "single_head": bool(family.single_head),
               "noise_sweep": len(family.noise_sweep) > 1, "concat_twin": bool(family.concat_twin),
               "linear_twin": bool(family.linear_twin), "second_seed": bool(family.second_seed),
               "second_seed_settings": bool(family.second_seed_settings)}
    notes = {"other_recipe": bool(family.other_recipe), "not_in_zoo": bool(family.missing)}
    assert set(report["skipped"]) == {k for k, ok in present.items() if not ok} | {k for k, any_ in notes.items() if any_}
    skipped_ids = {i for k in report["skipped"] for i in NEEDS.get(k, [])}
    assert [c["id"] for c in report["claims"]] == [i for i in FULL_IDS if i not in skipped_ids]
    _check_report(report, text)
    assert all(note in text for note in report["skipped"].values())
    assert report["gd"]["distance"]["gd"] < report["gd"]["distance"]["control_gd"]
    twin = {"curves": {**report["risk"]["curves"], "twin": {"error": report["concat"]["error"]}}} if "concat" in report else None
    expected = {v: cl.quality_bar(report["risk"], v, 8) for v in family.head_counts if v != anchor}  # each sibling's own bar
    expected.update({family.concat_twin: cl.quality_bar(twin, "twin", 8)} if twin else {})
    assert report["quality_bar_siblings"] == expected and all(f"| `{v}` |" in text for v in expected)
    q = report["quality_bar"]                                       # the ratios with their paired intervals, and what they mean
    for key in ("ridge", "lasso"):
        low, high = q[f"ratio_to_best_{key}_interval"]
        assert f"{q[f'ratio_to_best_{key}_at_largest_n']:.3f} ({low:.3f}-{high:.3f})x" in text
    unsettled = not (q["ridge_ratio_settled"] and q["lasso_ratio_settled"])
    assert ("within sampling error" in text.split("## Risk")[1].split("| n |")[0]) is unsettled
    figures = ["risk_curves.png", "head_importance.png", "pruning_probing.png", "preprocessing_probes.png", "gd_steps.png"]
    figures += ["pruning_noise.png"] * present["noise_sweep"] + ["multihead.png"] * present["second_seed"]
    figures += ["multihead_settings.png"] * present["second_seed_settings"]
    for png in figures:
        assert (tmp_path / png).is_file() and png in text


def test_report_on_a_saved_folder_takes_the_siblings_a_file_declares_and_skips_the_rest(tmp_path):
    """A model outside the zoo's index: its relatives come from --siblings FILE; the comparisons it lacks are skipped,
    with how to declare them."""
    ii.save_model(ii.load_model("default"), tmp_path / "mine")
    ii.save_model(ii.load_model("default-h1"), tmp_path / "mine-h1")
    (tmp_path / "sib.json").write_text('{"single_head": "./mine-h1"}')   # a folder: a str with a slash (the name rule)
    report = ii.write_report(tmp_path / "rep", model=str(tmp_path / "mine"), quick=True, siblings=tmp_path / "sib.json")
    text = (tmp_path / "rep" / "report.md").read_text()
    assert [c["id"] for c in report["claims"]] == BASE_IDS + ["multihead_beats_single"]
    assert set(report["skipped"]) == {"head_counts", "noise_sweep", "concat_twin", "linear_twin", "second_seed",
                                      "second_seed_settings", "how_to_add"}
    assert "--siblings FILE" in report["skipped"]["how_to_add"]
    assert all(note in text for note in report["skipped"].values())
    assert list(report["risk"]["curves"])[0] == str(tmp_path / "mine") and "pruning_noise" not in report
    _check_report(report, text)


def test_report_on_a_model_in_memory(tmp_path, tiny_task):
    model = ii.ICLTransformer(ii.ModelConfig(d=4, n_layers=2, n_heads=2, d_model=16, max_points=8, seed=3), tiny_task)
    report = ii.write_report(tmp_path, model=model, quick=True)
    assert report["model"] == "model (in memory)" and len(report["skipped"]) == 7
    assert [c["id"] for c in report["claims"]] == BASE_IDS
    assert report["gd"]["distance"]["layers"] == [1] and math.isfinite(report["gd"]["distance"]["gd"])
    _check_report(report, (tmp_path / "report.md").read_text())


@pytest.mark.parametrize("model, exc, text", [(3, TypeError, "model must be"), ("no-such-model", ValueError, "zoo name")])
def test_report_rejects_a_bad_model(tmp_path, model, exc, text):
    with pytest.raises(exc, match=text):
        ii.write_report(tmp_path, model=model)


def test_report_bars_each_noise_level_against_its_own_baselines(tmp_path):
    """A noise-sweep model trained with the anchor's recipe joins the report, and its quality bar is measured against
    ridge and Lasso tuned on its own task (lower noise, lower errors), on its own prompts."""
    from dataclasses import replace

    from icl_interp.core.checkpoint import read_config

    train = read_config("default")["training"]
    default = ii.load_model("default")
    ii.save_model(default, tmp_path / "zoo" / "default", training=train)
    # a noise-0.1 model of the anchor's architecture, recorded with the anchor's recipe (alike): the default's weights
    noisy = ii.ICLTransformer(replace(default.cfg, task=None), ii.SparseLinearRegression(d=8, s=2, noise_std=0.1))
    noisy.load_own_state_dict(default.own_state_dict())
    ii.save_model(noisy, tmp_path / "zoo" / "noise0.1-h4", training=train)
    with ii.core.checkpoint.use_zoo(tmp_path / "zoo"):
        report = ii.write_report(tmp_path / "rep", model="default", quick=True)
    assert list(report["pruning_noise"]["levels"]) == ["0.1", "0.5"] and "noise_pruning" in [c["id"] for c in report["claims"]]
    (name, bar), = report["quality_bar_noise"].items()
    assert name == "noise0.1-h4" and bar["n_largest"] == 15
    own = ii.evaluate(noisy, noisy.task, n_points=16, n_prompts=200, seed=1).error.tolist()
    assert [row["model"] for row in bar["per_n"]] == pytest.approx(own)
    assert bar["per_n"][-1]["ridge"] < 0.8 * report["quality_bar"]["per_n"][-1]["ridge"]   # noise 0.1 against 0.5
    assert "| `noise0.1-h4` |" in (tmp_path / "rep" / "report.md").read_text()


def test_report_quick_verdicts_survive_a_second_prompt_seed(tmp_path):
    """Issue 26: the quick report on two prompt seeds (every study's prompts drawn anew) never has a claim reproduced
    under one and not reproduced under the other; the prompts really differ."""
    first = ii.write_report(tmp_path / "k0", model="default", quick=True, prompt_seed=0)
    second = ii.write_report(tmp_path / "k1", model="default", quick=True, prompt_seed=1)
    assert first["prompt_seeds"]["study"] == 7 and second["prompt_seeds"]["study"] == 100_007
    assert first["importance"]["clean_error"] != second["importance"]["clean_error"]
    verdicts = [{c["id"]: c["verdict"] for c in r["claims"]} for r in (first, second)]
    assert list(verdicts[0]) == list(verdicts[1])
    flips = [i for i in verdicts[0] if {verdicts[0][i], verdicts[1][i]} == {"reproduced", "not reproduced"}]
    assert not flips, {i: (verdicts[0][i], verdicts[1][i]) for i in flips}
