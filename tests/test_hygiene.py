"""Every hook-using function leaves no hook behind when the user's code raises, and is deterministic."""

import pytest
import torch
from _util import hook_counts

import icl_interp as ii
from icl_interp.tools.runner import predict

pytestmark = pytest.mark.tl3


def _boom(*args, **kwargs):
    raise RuntimeError("user code failed")


def _raising_hook(model):
    """A user's hook, active in TransformerLens' own context, that raises inside the forward."""
    return model.hooked.hooks(fwd_hooks=[("blocks.1.hook_resid_post", _boom)])


CALLS = {
    "mask_heads": lambda m, b, c: ii.mask_heads(m, b, torch.tensor([[0.0, 1.0], [1.0, 1.0]])),
    "mask_heads_mean": lambda m, b, c: ii.mask_heads(m, b, torch.tensor([[0.0, 1.0], [1.0, 1.0]]), ablation="mean"),
    "head_importance": lambda m, b, c: ii.head_importance(m, b),
    "head_importance_gradient": lambda m, b, c: ii.head_importance(m, b, method="gradient"),
    "patch_activations": lambda m, b, c: ii.patch_activations(m, b, c, site="head"),
    "probe_layer": lambda m, b, c: ii.probe_layer(m, b, 1, "y_query"),
    "probe_all_layers": lambda m, b, c: ii.probe_all_layers(m, b),
    "gd_alignment": lambda m, b, c: ii.gd_alignment(m, b, steps=(1,)),
}


@pytest.fixture(scope="module")
def pair(tiny_task):
    clean = tiny_task.sample(16, 8, seed=21)
    return clean, ii.corrupt_batch(clean, "new_w", tiny_task, seed=1)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_raising_user_hook_leaves_no_hook_behind(tiny_model, pair, name):
    clean, corrupted = pair
    before = hook_counts(tiny_model.hooked)
    fresh = predict(tiny_model, clean)
    with pytest.raises(RuntimeError, match="user code failed"):
        with _raising_hook(tiny_model):
            CALLS[name](tiny_model, clean, corrupted)
    assert hook_counts(tiny_model.hooked) == before
    assert torch.equal(predict(tiny_model, clean), fresh)


@pytest.mark.parametrize("name", ["probe_layer", "probe_all_layers"])
def test_a_raising_target_leaves_no_hook_behind(tiny_model, pair, name):
    clean, _ = pair
    before = hook_counts(tiny_model.hooked)
    with pytest.raises(RuntimeError, match="user code failed"):
        if name == "probe_layer":
            ii.probe_layer(tiny_model, clean, 0, _boom)
        else:
            ii.probe_all_layers(tiny_model, clean, targets=[_boom])
    assert hook_counts(tiny_model.hooked) == before


@pytest.mark.parametrize("name", sorted(CALLS))
def test_same_inputs_same_numbers(tiny_model, pair, name):
    clean, corrupted = pair
    a, b = CALLS[name](tiny_model, clean, corrupted), CALLS[name](tiny_model, clean, corrupted)

    def flat(x):
        if isinstance(x, torch.Tensor):
            return x.reshape(-1).tolist()
        if hasattr(x, "scores"):
            return x.scores.reshape(-1).tolist()
        if hasattr(x, "to_dicts"):
            return [row["r2"] for row in x.to_dicts()]
        if hasattr(x, "r2"):
            return [x.r2, x.mse]
        return str(x.to_dict())

    assert flat(a) == flat(b)


def test_an_interrupt_inside_a_tool_leaves_no_hook_behind(tiny_model, pair):
    """Ctrl-C (KeyboardInterrupt, a BaseException) during a sweep: our hooks still come off."""
    clean, corrupted = pair
    before = hook_counts(tiny_model.hooked)

    def interrupt(x, hook):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with tiny_model.hooked.hooks(fwd_hooks=[("blocks.1.hook_resid_post", interrupt)]):
            ii.patch_activations(tiny_model, clean, corrupted, site="resid_pre")
    assert hook_counts(tiny_model.hooked) == before
