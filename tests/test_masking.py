import pytest
import torch
from _util import hook_counts

import icl_interp
from icl_interp.tools.masking import mask_heads, masked

pytestmark = pytest.mark.tl3


@pytest.fixture(params=["icl", "user"])
def any_model(request, tiny_model, user_model):
    return tiny_model if request.param == "icl" else user_model


def _run(model, batch, fwd_hooks=()):
    from icl_interp.tools.runner import predict

    with model.hooked.hooks(fwd_hooks=list(fwd_hooks)):
        return predict(model, batch)


def test_all_ones_mask_is_the_clean_model(any_model, tiny_batch):
    clean = _run(any_model, tiny_batch)
    assert torch.allclose(mask_heads(any_model, tiny_batch, torch.ones(2, 2)), clean, atol=1e-6)


@pytest.mark.parametrize("layer", [0, 1])
def test_masking_a_whole_layer_removes_its_attention_output_but_b_O(any_model, tiny_batch, layer):
    mask = torch.ones(2, 2)
    mask[layer] = 0
    b_O = any_model.hooked.blocks[layer].attn.b_O.detach()
    only_bias = _run(any_model, tiny_batch, [(f"blocks.{layer}.hook_attn_out", lambda x, hook: torch.zeros_like(x) + b_O)])
    assert torch.allclose(mask_heads(any_model, tiny_batch, mask), only_bias, atol=1e-5)
    assert not torch.allclose(only_bias, _run(any_model, tiny_batch), atol=1e-3)


def test_stack_equals_separate_runs(any_model, tiny_batch):
    masks = torch.tensor([[[1, 0], [1, 1]], [[1, 1], [0, 1]], [[0, 0], [1, 0]], [[0.5, 1], [1, 0.25]]], dtype=torch.float32)
    stacked = mask_heads(any_model, tiny_batch, masks)
    assert stacked.shape[0] == 4
    for k in range(4):
        with masked(any_model, masks[k]):
            single = _run(any_model, tiny_batch)
        assert torch.allclose(stacked[k], single, atol=1e-5)


def test_fractional_mask_interpolates_the_attention_output(tiny_model, tiny_batch):
    """hook_attn_out is linear in z: a 0.5 mask lands exactly half way between keep and ablate."""

    def attn_out(value):
        with masked(tiny_model, torch.tensor([[1.0, 1.0], [value, 1.0]])):
            return tiny_model.run_with_cache(tiny_batch)[1]["blocks.1.hook_attn_out"]

    full, off, half = attn_out(1.0), attn_out(0.0), attn_out(0.5)
    assert not torch.allclose(full, off, atol=1e-4)
    assert torch.allclose(half, (full + off) / 2, atol=1e-5)


@pytest.mark.parametrize("ablation", ["mean", "resample"])
def test_mean_and_resample_ablation_replace_z(tiny_model, tiny_task, tiny_batch, ablation):
    reference = tiny_task.sample(32, 8, seed=11)
    _, cache = tiny_model.run_with_cache(reference)
    z_ref = cache["blocks.0.attn.hook_z"]
    mask = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    got = mask_heads(tiny_model, tiny_batch, mask, ablation=ablation, reference=reference, seed=4)
    if ablation == "mean":
        repl = z_ref.mean(0, keepdim=True)
    else:
        idx = torch.randint(0, 32, (16,), generator=torch.Generator().manual_seed(4))
        repl = z_ref[idx]

    def hook(z, hook):
        z = z.clone()
        z[:, :, 0] = repl[:, :, 0]
        return z

    want = _run(tiny_model, tiny_batch, [("blocks.0.attn.hook_z", hook)])
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, mask_heads(tiny_model, tiny_batch, mask), atol=1e-4)


def test_masked_context_removes_its_hooks_even_on_error(any_model, tiny_batch):
    before = hook_counts(any_model.hooked)
    with pytest.raises(RuntimeError):
        with masked(any_model, torch.zeros(2, 2)):
            assert hook_counts(any_model.hooked) != before
            raise RuntimeError("user code failed")
    assert hook_counts(any_model.hooked) == before


@pytest.mark.parametrize(
    "mask, match",
    [
        (torch.ones(3, 2), "shape"),
        (torch.ones(2, 2) * 2, r"\[0, 1\]"),
        (torch.full((2, 2), float("nan")), "mask"),
        ("all", "mask"),
    ],
)
def test_bad_masks_raise(tiny_model, tiny_batch, mask, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mask_heads(tiny_model, tiny_batch, mask)


def test_bad_ablation_raises(tiny_model, tiny_batch):
    with pytest.raises(ValueError, match="ablation"):
        mask_heads(tiny_model, tiny_batch, torch.ones(2, 2), ablation="noise")
    with pytest.raises(ValueError, match="reference"):
        with masked(tiny_model, torch.ones(2, 2), ablation="mean"):
            pass


def test_public_names():
    assert icl_interp.mask_heads is mask_heads and icl_interp.masked is masked


def test_split_attention_path_is_taken_for_standard_blocks(any_model, tiny_batch, monkeypatch):
    """Our blocks and a user's standard ones take the within-layer reuse path (attention rebuilt from z)."""
    from icl_interp.core import fast_paths as _fast

    calls = []
    real = _fast.run_mlp_half
    monkeypatch.setattr(_fast, "run_mlp_half", lambda *a: calls.append(a[1]) or real(*a))
    masks = torch.ones(4, 2, 2)
    for i in range(4):
        masks[i, i // 2, i % 2] = 0
    mask_heads(any_model, tiny_batch, masks)
    assert calls == [0, 0, 1, 1]


def test_a_users_hook_on_the_attention_is_respected(any_model, tiny_batch):
    """With a user's hook on layer 0's attention output, masking takes the plain path and keeps the hook's effect."""
    mask = torch.ones(2, 2)
    mask[0, 1] = 0
    point = any_model.hooked.hook_dict["blocks.0.hook_attn_out"]
    handle = point.register_forward_hook(lambda mod, inp, out: out * 2.0)
    try:
        got = mask_heads(any_model, tiny_batch, mask)
        with masked(any_model, mask):
            want = _run(any_model, tiny_batch)
    finally:
        handle.remove()
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, mask_heads(any_model, tiny_batch, mask), atol=1e-4)


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_attention_only_model_masks_match_hooked_runs(tiny_task, tiny_batch, ablation):
    cfg = icl_interp.ModelConfig(d=tiny_task.d, n_layers=2, n_heads=2, d_model=16, max_points=8, attn_only=True)
    model = icl_interp.ICLTransformer(cfg, task=tiny_task)
    masks = torch.tensor([[[0, 1], [1, 1]], [[1, 1], [1, 0]], [[0.5, 0], [0, 1]]], dtype=torch.float32)
    stacked = mask_heads(model, tiny_batch, masks, ablation=ablation)
    for k in range(3):
        with masked(model, masks[k], ablation=ablation, reference=tiny_batch):
            assert torch.allclose(stacked[k], _run(model, tiny_batch), atol=1e-5)
