"""The zoo index (icl_interp/zoo/index.json) and siblings(): which models the report compares with which."""

import json

import pytest
import torch

import icl_interp as ii
from icl_interp.core.checkpoint import zoo_names
from icl_interp.core.zoo_store import INDEX
from icl_interp.training.presets import PRESETS
from icl_interp.zoo import Siblings, siblings

INDEXED = json.loads(INDEX.read_text())["siblings"]


def test_every_declared_model_is_shipped_or_a_preset_and_roles_agree():
    shipped = set(zoo_names())
    for anchor, roles in INDEXED.items():
        names = {anchor, roles["single_head"], roles["concat_twin"], *roles["head_counts"], *roles.get("second_seed", [])}
        names |= {n for pair in roles["noise_sweep"] for n in pair}
        assert names <= shipped | set(PRESETS), names - shipped - set(PRESETS)   # one not shipped can be trained
        assert set(siblings(anchor).missing) == {n for n in names if n not in shipped} - {anchor}
        assert anchor in roles["head_counts"] and [anchor, roles["single_head"]] in roles["noise_sweep"]


def test_default_siblings_in_the_shipped_zoo():
    """The 4-layer default is compared only with siblings trained with its recipe at its depth; the v2 (3-layer) and v1
    siblings are their own defaults' (default-v2, default-v1); the v1 noise pairs trained 5,000 steps and so are named,
    not compared."""
    got = siblings("default")
    retrained = [n for n in ("default-h1", "default-h2", "default-h8") if n in zoo_names()]
    assert got.head_counts == ("default", *retrained) and got.other_recipe == ()
    assert got.single_head == ("default-h1" if "default-h1" in retrained else None)
    assert set(got.missing).isdisjoint(zoo_names()) and "default-concat" in got.missing + (got.concat_twin,)
    assert len(got.second_seed) == 4 and got.linear_twin == "linear-concat" and ii.zoo.siblings is siblings
    v2 = siblings("default-v2")
    assert v2.head_counts == ("default-v2", "default-v2-h1", "default-v2-h2", "default-v2-h8") and v2.missing == ()
    assert v2.noise_sweep == (("noise0.1-v2-h4", "noise0.1-v2-h1"), ("default-v2", "default-v2-h1"),
                              ("noise1.0-v2-h4", "noise1.0-v2-h1")) and v2.concat_twin == "default-v2-concat"
    assert v2.other_recipe == () and ii.zoo.recipe("default") != ii.zoo.recipe("default-v2")   # equal schedules, 4 vs 3 layers
    v1 = siblings("default-v1")
    assert v1.head_counts == ("default-v1", "default-v1-h1", "default-v1-h2", "default-v1-h8") and v1.missing == ()
    assert v1.single_head == "default-v1-h1" and v1.concat_twin == "default-v1-concat"
    assert v1.noise_sweep == (("default-v1", "default-v1-h1"),)   # the v1 noise pairs trained 5,000 steps, not 16,000
    assert set(v1.other_recipe) == {"noise0.1-v1-h4", "noise1.0-v1-h4"}


@pytest.mark.parametrize("name", ["default-v1-h1", "./default", None, 3])
def test_models_that_are_no_anchor_have_no_siblings(name):
    assert siblings(name) == Siblings()


def test_only_models_of_the_zoo_in_use_count(tmp_path):
    for name, source in (("default", "default"), ("default-h2", "default-v1-h2"), ("noise0.1-h4", "noise0.1-v1-h4"),
                         ("softmax-p8-h1", "softmax-p8-h1")):
        ii.save_model(ii.load_model(source), tmp_path / name)  # saved without their training record: no recipe to compare
    with ii.core.checkpoint.use_zoo(tmp_path):
        got = siblings("default")
    assert got.head_counts == ("default", "default-h2") and got.single_head is None and got.concat_twin is None
    assert got.noise_sweep == (("noise0.1-h4", None), ("default", None))   # the pairs present, singles absent
    assert got.second_seed == ()               # a partial second-seed set is no set
    assert {"default-h1", "default-h8", "noise0.1-h1", "softmax-p8-h4", "linear-concat"} <= set(got.missing)
    assert not {"default", "default-h2", "noise0.1-h4"} & set(got.missing)


def test_siblings_trained_with_another_recipe_are_left_out_and_named(tmp_path):
    """Comparisons need models trained alike: head-count/single-head/concat siblings and each noise level's all-heads
    model share the anchor's recipe and architecture size, each level's single-head model its pair's (bookkeeping
    fields do not count)."""
    base = ii.TrainConfig(steps=100, lr=1e-3, schedule="wsd").to_dict()
    recipes = {
        "default": base,
        "default-h1": {**base, "threads": 2, "eval_prompts": 99},   # only bookkeeping differs: alike
        "default-h2": {**base, "steps": 50},                       # another recipe
        "default-concat": {**base, "min_points": 2},               # the twin's declared difference
        "noise0.1-h4": base, "noise0.1-h1": {**base, "lr": 3e-4},  # the pair's single head differs from its all-heads model
        "noise1.0-h4": {**base, "schedule": "cosine"}, "noise1.0-h1": {**base, "schedule": "cosine"},
        "default-h8": base,                                        # the same schedule at another width (below)
    }
    model = ii.load_model("softmax-p8-h1")
    for name, train in recipes.items():
        ii.save_model(ii.load_model("softmax-p16-h1") if name == "default-h8" else model, tmp_path / name,
                      training={"train_config": train})
    with ii.core.checkpoint.use_zoo(tmp_path):
        got = siblings("default")
        assert ii.zoo.recipe("default") == ii.zoo.recipe("default-h1") != ii.zoo.recipe("default-h2")
    assert got.head_counts == ("default", "default-h1") and got.single_head == "default-h1"
    assert got.concat_twin == "default-concat"
    assert got.noise_sweep == (("noise0.1-h4", None), ("default", "default-h1"))
    assert got.other_recipe == ("default-h2", "default-h8", "noise0.1-h1", "noise1.0-h4")


def test_seeds_lists_a_models_training_seeds_present_in_the_zoo_in_use(tmp_path, monkeypatch):
    """index.json's "seeds" names each model's seed-k twins; only those in the zoo in use count, and a seed is no other
    recipe: a seed-1 single-head sibling stays a sibling of a seed-1 anchor."""
    from icl_interp import zoo
    from icl_interp.core import zoo_store

    index = json.loads(INDEX.read_text())
    index["seeds"] = {"default": {"1": "default-seed1", "2": "default-seed2"}}
    monkeypatch.setattr(zoo_store, "INDEX", tmp_path / "index.json")
    (tmp_path / "index.json").write_text(json.dumps(index))
    base = ii.TrainConfig(steps=100).to_dict()
    model = ii.load_model("softmax-p8-h1")
    for name, seed in (("default", 0), ("default-seed1", 1), ("default-h1", 0)):
        ii.save_model(model, tmp_path / "zoo" / name, training={"train_config": {**base, "seed": seed}})
    with ii.core.checkpoint.use_zoo(tmp_path / "zoo"):
        assert zoo.seeds("default") == {0: "default", 1: "default-seed1"}   # seed 2 not in this zoo
        assert zoo.seeds("default-h1") == {0: "default-h1"} and zoo.seeds("nothing") == {} and zoo.seeds(None) == {}
        assert zoo.recipe("default") == zoo.recipe("default-seed1")   # the seed is not part of the recipe


def test_every_declared_seed_is_shipped_and_trained_by_its_preset_with_that_seed():
    """index.json's seeds: each one in the zoo, trained with its base model's recipe (ii.zoo.recipe) and the
    declared seed for both the data order and the initial weights (icl-interp train --preset NAME --seed K)."""
    from icl_interp import zoo
    from icl_interp.core.checkpoint import read_config

    declared = json.loads(INDEX.read_text()).get("seeds", {})
    for base, by_seed in declared.items():
        assert base in zoo_names() and base in PRESETS
        assert zoo.seeds(base) == {0: base, **{int(k): n for k, n in by_seed.items()}}
        for k, name in by_seed.items():
            cfg = read_config(name)
            assert name == f"{base}-seed{k}" and cfg["training"]["train_config"]["seed"] == int(k) == cfg["model"]["seed"]
            assert zoo.recipe(name) == zoo.recipe(base)


def test_a_model_outside_the_index_gets_the_siblings_a_file_declares(tmp_path):
    """An imported or locally trained model: its relatives in a JSON file (paths from the file's folder, or zoo names)."""
    from icl_interp.zoo import siblings_from

    runs = tmp_path / "runs"
    ii.save_model(ii.load_model("softmax-p16-h4"), runs / "h4")
    ii.save_model(ii.load_model("softmax-p16-h1"), runs / "h1")
    (tmp_path / "sib.json").write_text(json.dumps({"head_counts": ["runs/h4", "runs/h1"], "single_head": "runs/h1",
                                                   "concat_twin": "runs/not-trained", "linear_twin": "zoo:linear-concat"}))
    anchor = str(runs / "h4")
    got = siblings_from(anchor, tmp_path / "sib.json")
    h1 = str((runs / "h1").resolve())
    assert got.head_counts == (anchor, h1) and got.single_head == h1 and got.concat_twin is None
    assert got.missing == (str((runs / "not-trained").resolve()),) and got.linear_twin == "zoo:linear-concat"
    assert siblings_from(anchor, {"single_head": h1}).single_head == h1
    with pytest.raises(ValueError, match="unknown roles \\['single_heads'\\]"):
        siblings_from(anchor, {"single_heads": h1})
    with pytest.raises(ValueError, match="not a readable JSON file"):
        siblings_from(anchor, tmp_path / "none.json")


def _plant_seeded_zoo(tmp_path, monkeypatch):
    """A zoo of tiny untrained models whose index declares training seeds (issue 26): seed k of each model a copy of it,
    except ``default-h1-seed1``, another single-head model (``other``). Seed 1: every model; seed 2: ``default`` and
    the noisy setting's p = 16 pair only. Returns (other, its task)."""
    from icl_interp.core import zoo_store

    task, noisy = ii.LinearRegression(d=4, noise_std=0.5), ii.LinearRegression(d=4, noise_std=0.1)

    def net(h, t=task, seed=0):
        return ii.ICLTransformer(ii.ModelConfig(d=4, n_layers=2, n_heads=h, d_model=16, max_points=8, seed=seed), t)

    def softmax(p, h):
        return ii.ICLTransformer(ii.ModelConfig(d=4, n_layers=1, n_heads=h, d_model=p, attn_only=True, normalization=None,
                                                positional="none", encoding="concatenated", max_points=10, seed=p + h), task)

    models = {"default": net(2), "default-h1": net(1, seed=1), "default-h4": net(4, seed=2), "noise0.1-h2": net(2, noisy, 3),
              "noise0.1-h1": net(1, noisy, 4), **{f"sm-p{p}-h{h}": softmax(p, h) for p in (8, 16) for h in (1, 4)}}
    seeds = {n: {"1": f"{n}-seed1"} for n in models}
    for n in ("default", "sm-p16-h1", "sm-p16-h4"):
        seeds[n]["2"] = f"{n}-seed2"
    other = net(1, seed=9)
    for name, m in models.items():
        for k in ("", *(f"-seed{s}" for s in seeds[name])):
            ii.save_model(other if name + k == "default-h1-seed1" else m, tmp_path / "zoo" / (name + k))
    index = json.loads(INDEX.read_text())
    index["siblings"] = {"default": {"head_counts": ["default", "default-h1", "default-h4"], "single_head": "default-h1",
                                     "noise_sweep": [["noise0.1-h2", "noise0.1-h1"], ["default", "default-h1"]],
                                     "second_seed_settings": {"noisy": [f"sm-p{p}-h{h}" for p in (8, 16) for h in (1, 4)]}}}
    index["seeds"] = seeds
    (tmp_path / "index.json").write_text(json.dumps(index))
    monkeypatch.setattr(zoo_store, "INDEX", tmp_path / "index.json")
    return other, task


def test_report_decides_the_sibling_comparisons_on_every_training_seed_all_their_models_have(tmp_path, monkeypatch):
    """Issue 26: multihead_beats_single, head_count_order, the noise claims and the second seed's settings are computed on
    each training seed k that every model of the comparison has (seed k paired with seed k), and decided across them.
    Seeds that are copies give seed 0's numbers; the seed-1 single-head model that is another model gives its own."""
    from icl_interp.analysis.report import SEED_PROMPTS, prompt_seeds

    other, task = _plant_seeded_zoo(tmp_path, monkeypatch)
    with ii.core.checkpoint.use_zoo(tmp_path / "zoo"):
        r = ii.write_report(tmp_path / "rep", model="default", quick=True)
    claims = {c["id"]: c for c in r["claims"]}
    # the model's own claims: seeds 1 and 2; multihead_beats_single: seed 1 only (default-h1 has no seed 2)
    assert claims["pruning_preserves"]["seeds"] == 3 and set(r["seeds"]) == {"1", "2"}
    assert "error_single_head" in r["seeds"]["1"]["pruning"] and "error_single_head" not in r["seeds"]["2"]["pruning"]
    beats = claims["multihead_beats_single"]
    assert beats["seeds"] == 2 and list(beats["per_seed"]) == ["0", "1"]
    # seed 1's single-head model is `other`, on the seed studies' prompts (quick: the shipped model's 256, study seed)
    batch = task.sample(256, 8, seed=prompt_seeds(0)["study"])
    with ii.core.checkpoint.use_zoo(tmp_path / "zoo"):
        default = ii.load_model("default")
    with torch.no_grad():                           # the error over every predicted position, over the task's norm
        err = {m: float(((mdl(batch.xs, batch.ys) - batch.ys) ** 2).mean() / task.norm) for m, mdl in (("default", default), ("other", other))}
    assert r["seeds"]["1"]["pruning"]["error_single_head"] == pytest.approx(err["other"], rel=1e-4)
    assert beats["per_seed"]["1"]["value"] == pytest.approx(err["other"] / err["default"], rel=1e-4)
    assert beats["per_seed"]["0"]["value"] == pytest.approx(r["pruning"]["error_single_head"] / r["pruning"]["error_full"], rel=1e-9)
    assert beats["per_seed"]["0"]["value"] != pytest.approx(beats["per_seed"]["1"]["value"])
    # head counts on seed 1 (every head count has it), on SEED_PROMPTS risk prompts (quick: 256)
    hc = claims["head_count_order"]
    assert hc["seeds"] == 2 and set(r["head_counts_seeds"]) == {"1"} and sorted(map(int, r["head_counts_seeds"]["1"])) == [1, 2, 4]  # a stored section: JSON keys
    curve = ii.evaluate(other, task, n_points=8, n_prompts=min(256, SEED_PROMPTS), seed=prompt_seeds(0)["risk"])
    assert r["head_counts_seeds"]["1"]["1"]["last"] == pytest.approx(float(curve.error[-1]), rel=1e-5)
    # the noise sweep on seed 1: the copies' level as seed 0's, the anchor's level with seed 1's single head
    sweep = r["pruning_noise"]
    assert set(sweep["seeds"]) == {"1"} and claims["noise_pruning"]["seeds"] == claims["noise_single_head"]["seeds"] == 2
    level0, level1 = sweep["levels"], sweep["seeds"]["1"]["levels"]
    assert level1["0.1"]["single_over_full"] == level0["0.1"]["single_over_full"]
    assert level1["0.5"]["single_over_full"] == pytest.approx(err["other"] / err["default"], rel=1e-4)
    assert claims["noise_pruning"]["per_seed"]["1"]["value"] == claims["noise_pruning"]["per_seed"]["0"]["value"]   # copies
    # the noisy setting: seed 1 (all four models), not seed 2 (only the p = 16 pair): copies, so seed 0's numbers
    settings = r["seed2_settings"]
    assert set(settings["seeds"]) == {"1"} and set(settings["seeds"]["1"]["settings"]) == {"noisy"}
    for cid in ("seed2_noisy", "seed2_noisy_narrow"):
        c = claims[cid]
        assert c["seeds"] == 2 and c["per_seed"]["1"] == c["per_seed"]["0"] and c["verdict"] == c["per_seed"]["0"]["verdict"]
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| 0.5 (training seed 1) |" in text and "| noisy | sm-p16-h4-seed1 |" in text


def test_single_model_studies_refuse_a_single_head_model_of_another_task():
    from dataclasses import replace

    from icl_interp.analysis.studies import single_model_studies

    model = ii.load_model("softmax-p8-h4")
    other = ii.ICLTransformer(replace(model.cfg, task=None), ii.LinearRegression(d=model.task.d, noise_std=0.7))
    with pytest.raises(ValueError, match="single_head must be a model of model's task"):
        single_model_studies(model, n_prompts=8, single_head=other)
    with pytest.raises(ValueError, match="got one of task None"):
        single_model_studies(model, n_prompts=8, single_head=lambda xs, ys: xs)
