import pytest
import torch
from _util import hook_counts

from icl_interp.tools.importance import head_importance, prune_heads
from icl_interp.tools.masking import mask_heads, masked
from icl_interp.tools.runner import default_metric, model_norm, normalised_error, predict

pytestmark = pytest.mark.tl3


@pytest.fixture(params=["icl", "user"])
def any_model(request, tiny_model, user_model):
    return tiny_model if request.param == "icl" else user_model


def test_ablation_importance_equals_loop_of_single_head_runs(any_model, tiny_batch):
    imp = head_importance(any_model, tiny_batch)
    metric = default_metric(any_model)
    with torch.no_grad():
        clean = metric(predict(any_model, tiny_batch), tiny_batch)
    for layer in range(2):
        for head in range(2):
            mask = torch.ones(2, 2)
            mask[layer, head] = 0
            with masked(any_model, mask), torch.no_grad():
                loop = metric(predict(any_model, tiny_batch), tiny_batch) - clean
            assert imp[layer, head] == pytest.approx(float(loop), abs=1e-5)


def test_gradient_importance_matches_finite_difference(tiny_model, tiny_task):
    """Per-prompt |d loss / d mask| at mask=1, checked head by head against a 2nd-order one-sided difference."""
    batch = tiny_task.sample(1, 8, seed=5)
    grad = head_importance(tiny_model, batch, method="gradient")
    norm = model_norm(tiny_model)
    h = 1e-2
    for layer in range(2):
        for head in range(2):
            def loss(value, layer=layer, head=head):
                mask = torch.ones(2, 2, dtype=torch.float32)
                mask[layer, head] = value
                return float(normalised_error(mask_heads(tiny_model, batch, mask), batch, norm))

            fd = (3 * loss(1.0) - 4 * loss(1 - h) + loss(1 - 2 * h)) / (2 * h)
            assert grad[layer, head] == pytest.approx(abs(fd), rel=0.05, abs=1e-4)


def test_gradient_importance_with_batch_metric(tiny_model, tiny_batch):
    metric = default_metric(tiny_model)
    g = head_importance(tiny_model, tiny_batch, method="gradient", metric=metric)
    assert g.shape == (2, 2) and torch.isfinite(g).all() and (g > 0).any()
    with pytest.raises(ValueError, match="differentiable"):
        head_importance(tiny_model, tiny_batch, method="gradient", metric=lambda p, b: 1.0)


@pytest.mark.parametrize("method", ["ablation", "gradient"])
def test_raising_metric_leaves_no_hooks(any_model, tiny_batch, method):
    before = hook_counts(any_model.hooked)
    clean = predict(any_model, tiny_batch)

    def bad_metric(preds, batch):
        raise RuntimeError("metric failed")

    with pytest.raises(RuntimeError, match="metric failed"):
        head_importance(any_model, tiny_batch, method=method, metric=bad_metric)
    assert hook_counts(any_model.hooked) == before
    assert torch.equal(predict(any_model, tiny_batch), clean)


def test_prune_heads_policies():
    imp = torch.tensor([[0.1, 0.5, 0.3], [0.9, 0.2, 0.4], [0.0, 0.1, 0.05]])
    assert prune_heads(imp, keep=1).tolist() == [[0, 1, 0], [1, 0, 0], [0, 1, 0]]
    assert prune_heads(imp, keep={0: "all", "rest": 1}).tolist() == [[1, 1, 1], [1, 0, 0], [0, 1, 0]]
    assert prune_heads(imp, keep=["all", 2, 0]).tolist() == [[1, 1, 1], [1, 0, 1], [0, 0, 0]]
    assert prune_heads(imp, keep_total=2).tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"keep": 4}, "keep"),
        ({"keep": [1, 1]}, "one entry per layer"),
        ({"keep": {0: "all"}}, "rest"),
        ({"keep": {5: 1, "rest": 1}}, "layer indices"),
        ({"keep": "most"}, "keep"),
        ({}, "exactly one"),
        ({"keep": 1, "keep_total": 2}, "exactly one"),
        ({"keep_total": 10}, "keep_total"),
    ],
)
def test_prune_heads_rejects_bad_keep(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        prune_heads(torch.rand(3, 3), **kwargs)


def test_noise_pruning_study_numbers_are_the_pruning_studys(tiny_task, tmp_path):
    """Each noise level's row is pruning_study on that level's pair; the noise floor is sigma^2 / norm."""
    from icl_interp.analysis.studies import noise_pruning_study, pruning_study
    from icl_interp.core.model import ICLTransformer, ModelConfig
    from icl_interp.core.tasks import SparseLinearRegression

    pairs = {}
    for sigma in (0.1, 1.0):
        task = SparseLinearRegression(d=4, s=1, noise_std=sigma)
        full = ICLTransformer(ModelConfig(d=4, n_layers=2, n_heads=2, d_model=16, max_points=8, seed=1), task)
        single = ICLTransformer(ModelConfig(d=4, n_layers=2, n_heads=1, d_model=16, max_points=8, seed=2), task)
        pairs[sigma] = (full, single)
    res = noise_pruning_study(pairs, n_prompts=64, out=tmp_path)
    assert list(res["levels"]) == ["0.1", "1"] and (tmp_path / res["figure"]).is_file()
    for sigma, (full, single) in pairs.items():
        row = res["levels"][f"{sigma:g}"]
        ref = pruning_study(full, full.task.sample(64, 8, seed=7), single_head=single)
        assert row["error_pruned"] == pytest.approx(ref["error_pruned"], rel=1e-6)
        assert row["single_over_full"] == pytest.approx(ref["error_single_head"] / ref["error_full"], rel=1e-6)
        assert row["noise_floor"] == pytest.approx(sigma**2 / full.task.norm)


def test_gradient_importance_equals_plain_autograd_with_a_mask_multiplier(tiny_model, tiny_task):
    """The oracle: a per-prompt head-mask multiplier on hook_z through TL's run_with_hooks, and torch.autograd."""
    data = tiny_task.sample(12, 8, seed=9)
    mask = torch.ones(12, 2, 2, requires_grad=True)

    def hook(layer):
        return lambda z, hook: z * mask[:, layer][:, None, :, None]

    preds = tiny_model.run_with_hooks(data, fwd_hooks=[(f"blocks.{l}.attn.hook_z", hook(l)) for l in range(2)])
    loss = (((preds - data.ys) ** 2).mean(-1) / tiny_task.norm).sum()
    (grad,) = torch.autograd.grad(loss, mask)
    got = head_importance(tiny_model, data, method="gradient")
    assert torch.allclose(got, grad.abs().mean(0), rtol=1e-5, atol=1e-7)


def test_heads_studies_keep_per_prompt_errors_under_each_ablation_kind(tiny_model, tiny_task):
    """importance_study's and pruning_study's per-prompt errors (issue 26) are head_importance's and mask_heads' under
    each kind: their means give the importances, the pruned error, and the context-free error."""
    from icl_interp.analysis.studies import importance_study, pruning_study
    from icl_interp.analysis.studies.heads import context_free_error
    from icl_interp.tools.runner import prepare

    batch = tiny_task.sample(48, 8, seed=3)
    imp = importance_study(tiny_model, batch)
    assert list(imp["by_ablation"]) == ["zero", "mean", "resample"] and imp["n_prompts"] == 48 and imp["headline_ablation"] == "zero"
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    assert mean(imp["per_prompt"]["context_free"]) == pytest.approx(context_free_error(tiny_model, prepare(tiny_model, batch)), rel=1e-5)
    for kind, by in imp["by_ablation"].items():
        ref = head_importance(tiny_model, batch, ablation=kind)
        assert torch.tensor(by["ablation"]) == pytest.approx(ref.double(), abs=1e-5)
        assert [mean(e) - mean(imp["per_prompt"]["clean"]) for e in by["per_prompt"]] == pytest.approx(ref.flatten().tolist(), abs=1e-5)
    assert imp["ablation"] == imp["by_ablation"]["zero"]["ablation"]
    pr = pruning_study(tiny_model, batch, importance={k: torch.tensor(v["ablation"]) for k, v in imp["by_ablation"].items()})
    for kind, by in pr["by_ablation"].items():
        preds = mask_heads(tiny_model, batch, torch.tensor(by["mask"]), ablation=kind)
        errs = normalised_error(preds, batch, model_norm(tiny_model), per_prompt=True)
        assert by["per_prompt"] == pytest.approx(errs.tolist(), rel=1e-5) and by["error_pruned"] == pytest.approx(float(errs.mean()), rel=1e-5)
    assert pr["error_pruned"] == pr["by_ablation"]["zero"]["error_pruned"] and len(pr["per_prompt"]["full"]) == 48
    with pytest.raises(ValueError, match="ablations"):
        importance_study(tiny_model, batch, ablations=("zero", "median"))
