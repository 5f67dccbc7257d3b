import pytest
import torch

import icl_interp
from icl_interp.core.model import ICLTransformer, ModelConfig
from icl_interp.core.tasks import LinearRegression, SparseLinearRegression

pytestmark = pytest.mark.tl3


def test_interleaved_shapes_and_causality(tiny_model, tiny_batch):
    preds = tiny_model(tiny_batch.xs, tiny_batch.ys)
    assert preds.shape == (16, 8)
    # preds[:, i] may only depend on (x_j, y_j) for j < i and on x_i
    ys = tiny_batch.ys.clone()
    ys[:, 5:] += 3.0
    xs = tiny_batch.xs.clone()
    xs[:, 6:] -= 2.0
    changed = tiny_model(xs, ys)
    assert torch.allclose(changed[:, :6], preds[:, :6], atol=1e-6)
    assert not torch.allclose(changed[:, 6:], preds[:, 6:])
    # the batch form is the same call
    assert torch.equal(tiny_model(tiny_batch), preds)


def test_concatenated_returns_query_prediction(tiny_task, tiny_batch):
    model = ICLTransformer(ModelConfig(d=4, n_layers=2, n_heads=2, d_model=16, max_points=8, encoding="concatenated"), tiny_task)
    preds = model(tiny_batch)
    assert preds.shape == (16,)
    # the query's own y is never seen
    ys = tiny_batch.ys.clone()
    ys[:, -1] += 100.0
    assert torch.allclose(model(tiny_batch.xs, ys), preds)


def test_hook_on_z_changes_output(tiny_model, tiny_batch):
    """Guards against TransformerLens 4.x compatibility mode zeroing W_U (REFERENCE.md section 6)."""
    clean = tiny_model(tiny_batch)
    zeroed = tiny_model.run_with_hooks(tiny_batch, fwd_hooks=[("blocks.0.attn.hook_z", lambda z, hook: z * 0)])
    assert (clean - zeroed).abs().max() > 1e-3
    assert tiny_model.hooked.W_U.abs().sum() > 0


def test_run_with_cache_passes_through(tiny_model, tiny_batch):
    preds, cache = tiny_model.run_with_cache(tiny_batch)
    assert torch.allclose(preds, tiny_model(tiny_batch))
    assert cache["blocks.1.attn.hook_z"].shape == (16, 15, 2, 8)  # [batch, pos, head, d_head], 2n-1 tokens
    assert torch.allclose(cache["blocks.0.hook_resid_pre"], tiny_model.encode(tiny_batch.xs, tiny_batch.ys))


def test_core_dims_and_task(tiny_model, tiny_task):
    assert tiny_model.hooked.cfg.n_layers == 2 and tiny_model.hooked.cfg.n_heads == 2 and tiny_model.hooked.cfg.d_model == 16
    assert tiny_model.task == tiny_task
    assert tiny_model.cfg.task["s"] == 2


def test_same_seed_same_weights(tiny_task):
    a = ICLTransformer(ModelConfig(d=4, n_layers=1, n_heads=2, d_model=8, max_points=4, seed=5), tiny_task)
    b = ICLTransformer(ModelConfig(d=4, n_layers=1, n_heads=2, d_model=8, max_points=4, seed=5), tiny_task)
    for (ka, va), (kb, vb) in zip(a.own_state_dict().items(), b.own_state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize(
    "xs_shape, ys_shape, message",
    [
        ((2, 8, 5), (2, 8), "d=5"),  # wrong d for the model
        ((2, 9, 4), (2, 9), "max_points"),  # longer than the context
        ((2, 8), (2, 8), "xs"),  # wrong rank
        ((2, 8, 4), (2, 7), "ys"),  # shape mismatch
    ],
)
def test_bad_inputs_raise(tiny_model, xs_shape, ys_shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(torch.randn(*xs_shape), torch.randn(*ys_shape))


def test_nan_input_raises(tiny_model, tiny_batch):
    xs = tiny_batch.xs.clone()
    xs[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="xs"):
        tiny_model(xs, tiny_batch.ys)


def test_config_validation():
    with pytest.raises(ValueError, match="encoding"):
        ModelConfig(encoding="stacked")
    with pytest.raises(ValueError, match="d_head"):
        ModelConfig(d_model=10, n_heads=4)
    with pytest.raises(TypeError, match="n_layers"):
        ModelConfig(n_layers=2.5)
    with pytest.raises(ValueError, match="does not match"):
        ICLTransformer(ModelConfig(d=4), LinearRegression(d=5))
    with pytest.raises(ValueError, match="unknown fields"):
        ModelConfig.from_dict({"d": 4, "layers": 3})
    assert ModelConfig.from_dict(ModelConfig(d=3, task=SparseLinearRegression(3, s=1).to_dict()).to_dict()).d == 3


FUSED_CONFIGS = [
    {},
    {"attn_only": True, "normalization": None, "positional": "none", "encoding": "concatenated"},
    {"act_fn": "gelu_new", "n_heads": 1},
    # past 64 keys on CPU: the fused kernel instead of batched products; d_head 12, so the
    # scale folded into q (1/sqrt(12)) is not a power of two
    {"max_points": 40, "d_model": 24},
]


@pytest.mark.parametrize("extra", FUSED_CONFIGS)
def test_fused_training_forward_is_the_same_function(tiny_task, extra):
    """The training forward (fused, no hooks) gives the hooked forward's outputs and gradients."""
    from icl_interp.core import backend
    from icl_interp.core import fast_paths as _fast

    if backend.tl_major() < 4:
        pytest.skip("the fused path is for the 4.x native bridge")
    cfg = icl_interp.ModelConfig(**{"d": 4, "n_layers": 2, "n_heads": 2, "d_model": 16, "max_points": 8, **extra})
    model = icl_interp.ICLTransformer(cfg, tiny_task)
    batch = tiny_task.sample(8, cfg.max_points, seed=1)
    resid = model.encode(batch.xs, batch.ys)
    fused = _fast.fused_forward(model.hooked, resid)
    assert fused is not None
    assert torch.allclose(fused, model.hooked(resid, start_at_layer=0), atol=1e-5)

    def grads(forward):
        model.zero_grad(set_to_none=True)
        forward().pow(2).mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.train()
    fast = grads(lambda: model(batch.xs, batch.ys, fast=True))
    slow = grads(lambda: model.readout(model.hooked(model.encode(batch.xs, batch.ys), start_at_layer=0)))
    model.eval()
    assert set(fast) == set(slow) and len(fast) > 10
    for name in fast:
        assert torch.allclose(fast[name], slow[name], atol=1e-6), name


@pytest.mark.parametrize("where", ["blocks.1.hook_resid_post", "blocks.0.mlp", "blocks.0.attn", "ln_final"])
@pytest.mark.parametrize("kind", ["forward", "pre"])
def test_a_hook_turns_the_fused_path_off(tiny_model, tiny_batch, where, kind):
    """Any listener fires, even with fast=True: a hook point's hook or a plain torch hook on any module of the core."""
    from icl_interp.core import fast_paths as _fast

    module = tiny_model.hooked.hook_dict[where] if where in tiny_model.hooked.hook_dict else tiny_model.hooked.get_submodule(where)
    seen = []
    register = module.register_forward_hook if kind == "forward" else module.register_forward_pre_hook
    handle = register(lambda *a: seen.append(1))
    try:
        assert not _fast.nothing_listening(tiny_model.hooked)
        tiny_model.train()
        with torch.enable_grad():
            tiny_model(tiny_batch, fast=True)
        tiny_model.eval()
        tiny_model(tiny_batch)
    finally:
        tiny_model.eval()
        handle.remove()
    assert seen == [1, 1]
    assert _fast.nothing_listening(tiny_model.hooked)


def test_forward_runs_the_hooked_core_unless_asked(tiny_model, tiny_batch, monkeypatch):
    """Training mode alone never switches paths: only fast=True does (TrainConfig.fast)."""
    from icl_interp.core import fast_paths as _fast

    calls = []
    real = _fast.fused_forward
    monkeypatch.setattr(_fast, "fused_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    tiny_model.train()
    try:
        with torch.enable_grad():
            tiny_model(tiny_batch)
        assert calls == []
        with torch.enable_grad():
            tiny_model(tiny_batch, fast=True)
        assert calls == [1]
    finally:
        tiny_model.eval()
