"""Hand-built transformers against the algorithms they implement (baselines.GD, PreprocessThenOptimize), heads, tools, the zoo."""

import json

import pytest
import torch

import icl_interp as ii
from icl_interp.baselines.estimators import GD, PreprocessThenOptimize
from icl_interp.core.constructions import CONSTRUCTIONS, gd_model, pto_model, zoo_construction

pytestmark = pytest.mark.tl3

TASK = ii.SparseLinearRegression(d=8, s=2, noise_std=0.5)


@pytest.fixture(scope="module")
def data():
    return TASK.sample(512, 16, seed=11)


def _baseline(est, batch):
    return est.fit(batch.xs[:, :-1], batch.ys[:, :-1]).predict(batch.xs[:, -1])


def _assert_matches(model, est, batch):
    with torch.no_grad():
        preds = model(batch)
    want = _baseline(est, batch)
    assert preds.shape == want.shape == (batch.batch_size,)
    gap = float((preds - want).abs().max() / want.abs().max())
    assert gap < 1e-4, f"relative gap {gap:.2g}"


@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("n_heads", [1, 3])
def test_gd_model_is_gd(data, steps, n_heads):
    _assert_matches(gd_model(8, steps, 0.3, n_heads=n_heads, task=TASK), GD(steps, 0.3), data)


@pytest.mark.parametrize("steps,lr", [(1, 0.03), (2, 0.2), (3, 0.03)])
def test_pto_model_is_preprocess_then_optimize(data, steps, lr):
    _assert_matches(pto_model(8, steps, lr, task=TASK), PreprocessThenOptimize("reweight", steps, lr), data)


def test_other_sizes_and_prompt_lengths():
    task = ii.LinearRegression(d=3, noise_std=0.1)
    for n_points in (2, 5, 30):
        batch = task.sample(64, n_points, seed=n_points)
        _assert_matches(gd_model(3, 4, 0.5, task=task, max_points=30), GD(4, 0.5), batch)
        _assert_matches(pto_model(3, 2, 0.5, n_heads=5, max_points=30), PreprocessThenOptimize("reweight", 2, 0.5), batch)


def test_every_layer0_head_of_pto_is_indispensable(data):
    model = ii.load_model("construction-pto")
    full = ii.mask_heads(model, data, torch.ones(4, 8))
    for k in range(8):
        mask = torch.ones(4, 8)
        mask[0, k] = 0
        changed = ii.mask_heads(model, data, mask) - full
        uses_k = data.w[:, k] != 0  # prompts whose weights use coordinate k
        assert changed[uses_k].abs().mean() > 0.3 * full[uses_k].abs().mean(), f"layer-0 head {k}"
    assert (ii.head_importance(model, data)[0] > 0).all()  # each one's ablation raises the error


@pytest.mark.parametrize("name", ["construction-pto", "construction-gd"])
def test_later_extra_heads_are_inert(data, name):
    model = ii.load_model(name)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    full = ii.mask_heads(model, data, torch.ones(n_layers, n_heads))
    mask = torch.ones(n_layers, n_heads)
    mask[1:, 1:] = 0
    assert torch.allclose(ii.mask_heads(model, data, mask), full, atol=1e-6)
    mask[1:, 0] = 0  # the one working head of a later layer is not
    assert not torch.allclose(ii.mask_heads(model, data, mask), full, atol=1e-3)
    imp = ii.head_importance(model, data)
    assert torch.all(imp[1:, 1:].abs() < 1e-6) and torch.all(imp[1:, 0] > 0.01)


@pytest.mark.parametrize("name", ["construction-pto", "construction-gd"])
def test_tools_run_on_constructions(data, name):
    model = ii.load_model(name)
    batch = data[:128]
    corrupted = ii.corrupt_batch(batch, "new_w", TASK, seed=0)
    assert ii.patch_activations(model, batch, corrupted, site="head").scores.shape == (model.cfg.n_layers, model.cfg.n_heads)
    assert ii.patch_activations(model, batch, corrupted, site="resid_pre").scores.shape == (model.cfg.n_layers, 16)
    assert ii.head_importance(model, batch, method="gradient").shape == (model.cfg.n_layers, model.cfg.n_heads)
    row = ii.probe_layer(model, data, 0, "pre_reweight")
    if name == "construction-pto":  # layer 0 writes r * x_query into the query token's x~ slots
        assert row.r2 > 0.999
    else:
        assert row.r2 < 0.5


def test_zoo_constructions_rebuild_bitwise(tmp_path):
    from icl_interp.cli import main

    for name, spec in CONSTRUCTIONS.items():
        shipped = ii.load_model(name)
        assert shipped.saved_config["construction"] == spec
        assert (shipped.cfg.attention, shipped.cfg.attention_dir, shipped.cfg.encoding) == ("linear", "bidirectional", "concatenated")
        built, _ = zoo_construction(name)
        for key, value in built.own_state_dict().items():
            assert torch.equal(value, shipped.own_state_dict()[key]), key
        assert main(["build-construction", name, "--out", str(tmp_path / name)]) == 0
        saved = json.loads((tmp_path / name / "config.json").read_text())
        assert saved["construction"] == spec and saved["weights_sha256"] == shipped.saved_config["weights_sha256"]


def test_readout_sign_and_slots():
    """The query's y slot holds minus the prediction; x~ sits in slots d+1..2d (what probes read)."""
    model = pto_model(2, 1, 0.5, task=ii.LinearRegression(d=2))
    batch = ii.LinearRegression(d=2).sample(4, 6, seed=0)
    preds, cache = model.run_with_cache(batch)
    final = cache["blocks.1.hook_resid_post"][:, -1]
    assert torch.allclose(final[:, 2], -preds, atol=1e-6)
    r = torch.einsum("bnd,bn->bd", batch.xs[:, :-1], batch.ys[:, :-1]) / 5
    assert torch.allclose(cache["blocks.0.hook_resid_post"][:, :, 3:5], r[:, None] * batch.xs, atol=1e-5)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="d must be >= 1"):
        gd_model(0, 1, 0.1)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        pto_model(4, 0, 0.1)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        gd_model(4, 1, -0.1)
    with pytest.raises(ValueError, match="preprocessing"):
        pto_model(4, 1, 0.1, preprocessing="power")
    with pytest.raises(ValueError, match="n_heads must be >= 4"):
        pto_model(4, 1, 0.1, n_heads=2)
    with pytest.raises(ValueError, match="task d"):
        gd_model(4, 1, 0.1, task=TASK)
    with pytest.raises(ValueError, match="unknown fields"):
        ii.core.constructions.build_construction({"kind": "gd", "d": 4, "steps": 1, "lr": 0.1, "preprocessing": "reweight"})


@pytest.mark.slow
def test_shipped_step_sizes():
    """GD: the tuned baseline's choice at n = 15; PtO: below its neighbours in mean error at n = 15 (see CONSTRUCTIONS)."""
    assert ii.baselines.tuning.best_gd(TASK, 16, 3).chosen(15) == f"gd3_{CONSTRUCTIONS['construction-gd']['lr']:g}"
    lr = CONSTRUCTIONS["construction-pto"]["lr"]
    batch = TASK.sample(20_000, 16, seed=999)

    def error(step):
        return float(((_baseline(PreprocessThenOptimize("reweight", 3, step), batch) - batch.ys[:, -1]) ** 2).mean())

    assert error(lr) < min(error(lr / 2), error(1.5 * lr))
