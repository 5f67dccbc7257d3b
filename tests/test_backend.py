import pytest
import torch

from icl_interp.core import backend

pytestmark = pytest.mark.tl3


def test_run_blocks_equals_full_forward(tiny_model, tiny_batch):
    resid = tiny_model.encode(tiny_batch.xs, tiny_batch.ys)
    out = backend.unembed(tiny_model.hooked, backend.run_blocks(tiny_model.hooked, resid, 0, 2))
    assert torch.allclose(tiny_model.readout(out), tiny_model(tiny_batch), atol=1e-6)
    # starting half way from the cached residual gives the same
    mid = backend.run_blocks(tiny_model.hooked, resid, 0, 1)
    out2 = backend.unembed(tiny_model.hooked, backend.run_blocks(tiny_model.hooked, mid, 1, 2))
    assert torch.equal(out2, out)


def test_canonical_round_trip_is_exact(tiny_model):
    sd = backend.canonical_state_dict(tiny_model.hooked)
    assert sd["blocks.0.attn.W_Q"].shape == (2, 16, 8)
    assert sd["blocks.0.attn.W_O"].shape == (2, 8, 16)
    assert sd["unembed.W_U"].shape == (16, 1)
    # the canonical tensors are the ones TransformerLens exposes as W_Q, W_O ...
    assert torch.allclose(sd["blocks.1.attn.W_Q"], tiny_model.hooked.blocks[1].attn.W_Q)
    assert torch.allclose(sd["blocks.1.attn.W_O"], tiny_model.hooked.blocks[1].attn.W_O)
    perturbed = {k: v + 0.5 for k, v in sd.items()}
    core = backend.build_core(tiny_model.cfg)
    backend.load_canonical_state_dict(core, perturbed)
    back = backend.canonical_state_dict(core)
    assert all(torch.equal(back[k], perturbed[k]) for k in sd)


def test_canonical_load_refuses_wrong_shapes(tiny_model):
    sd = backend.canonical_state_dict(tiny_model.hooked)
    sd["blocks.0.attn.W_Q"] = torch.zeros(3, 16, 8)
    with pytest.raises(ValueError, match="W_Q"):
        backend.load_canonical_state_dict(backend.build_core(tiny_model.cfg), sd)
    sd.pop("blocks.0.attn.W_Q")
    with pytest.raises(ValueError, match="missing"):
        backend.load_canonical_state_dict(backend.build_core(tiny_model.cfg), sd)


@pytest.mark.skipif(backend.tl_major() < 4, reason="convert_tl_checkpoint exists only in transformer-lens 4.x")
def test_canonical_layout_matches_transformer_lens_converter(tiny_model, tiny_batch):
    """Our HookedTransformer-layout dict loads through TL's own 3.x->4.x converter to the same model."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    sd = backend.canonical_state_dict(tiny_model.hooked)
    cfg = TransformerBridgeConfig(**backend._tl_kwargs(tiny_model.cfg))
    bridge = TransformerBridge.boot_native(cfg)
    converted = convert_tl_checkpoint(sd, cfg)
    bridge.load_state_dict(converted, strict=False)
    resid = tiny_model.encode(tiny_batch.xs, tiny_batch.ys)
    assert torch.allclose(bridge(resid, start_at_layer=0), tiny_model.hooked(resid, start_at_layer=0), atol=1e-5)
