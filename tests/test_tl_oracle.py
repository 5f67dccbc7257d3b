"""TransformerLens' own activation patching as the oracle for ``patch_activations``, on every architecture.

Token-input models attached with ``attach`` (as a user would), patched with TL's
``transformer_lens.patching`` functions and with ours under the same metric: equal
within 1e-5. TL's functions run under ``torch.no_grad()``: with autograd on they
clone an activation before editing it, so on the 4.x bridge, where
``hook_resid_mid`` is an alias of ``ln2.hook_in``, their edit would reach only the
MLP's input; in place (no grad) it reaches everything downstream, as on 3.x.
"""

import pytest
import torch

import icl_interp as ii
from icl_interp.core.backend import tl_major

pytestmark = pytest.mark.tl3

TASK = ii.SparseLinearRegression(d=4, s=2, noise_std=0.1)
ARCHS = {
    "mlp": {},
    "attn_only": {"attn_only": True},
    "rotary": {"positional_embedding_type": "rotary", "rotary_dim": 4},
    "no_layernorm": {"normalization_type": None},
}
ARCHS_3 = {  # HookedTransformer only
    "parallel_attn_mlp": {"parallel_attn_mlp": True},
    "use_attn_result": {"use_attn_result": True},
}


def _hooked(**extra):
    kw = dict(d_model=16, d_head=8, n_layers=2, n_heads=2, n_ctx=16, d_vocab=10, d_vocab_out=1, act_fn="gelu",
              normalization_type="LN", seed=0)
    kw.update(extra)
    if kw.get("attn_only"):
        kw["d_mlp"] = None
    if tl_major() >= 4:
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge import TransformerBridge

        return TransformerBridge.boot_native(TransformerBridgeConfig(**kw)).eval()
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    return HookedTransformer(HookedTransformerConfig(**kw)).eval()


def _encode(batch):
    """Integer tokens from the prompts' first coordinate (a token-input model, as in language-model work)."""
    return ((batch.xs[:, :, 0] * 3).round().clamp(-4, 5) + 4).long()


def _readout(out):
    return out[:, -1, 0]


def _tl_metric(logits):
    return _readout(logits).mean()


def _our_metric(preds, batch):
    return preds.mean()


# (TL function, our site, our scores -> TL's axis order)
FUNCTIONS = [
    ("get_act_patch_resid_pre", "resid_pre", lambda s: s),
    ("get_act_patch_resid_mid", "resid_mid", lambda s: s),
    ("get_act_patch_attn_out", "attn_out", lambda s: s),
    ("get_act_patch_mlp_out", "mlp_out", lambda s: s),
    ("get_act_patch_attn_head_out_all_pos", "head", lambda s: s),
    ("get_act_patch_attn_head_out_by_pos", "head_pos", lambda s: s.permute(0, 2, 1)),  # ours [layer, head, pos]
]


@pytest.mark.parametrize("arch", list(ARCHS) + (list(ARCHS_3) if tl_major() < 4 else []))
@pytest.mark.parametrize("fn_name, site, to_tl", FUNCTIONS, ids=[f[1] for f in FUNCTIONS])
def test_patching_equals_transformer_lens(arch, fn_name, site, to_tl):
    import transformer_lens.patching as tl_patching

    extra = {**ARCHS, **ARCHS_3}[arch]
    if extra.get("attn_only") and site in ("resid_mid", "mlp_out"):
        pytest.skip("an attention-only model has no MLP")
    hooked = _hooked(**extra)
    model = ii.attach(hooked, encode=_encode, readout=_readout, task=TASK)
    clean, corrupted = TASK.sample(8, 6, seed=1), TASK.sample(8, 6, seed=2)
    if f"blocks.0.hook_{site}" not in hooked.hook_dict and site.startswith("resid"):  # parallel blocks have no resid_mid
        with pytest.raises(ValueError, match="hook_resid_mid"):
            ii.patch_activations(model, clean, corrupted, site, metric=_our_metric)
        return
    _, cache = hooked.run_with_cache(_encode(clean))
    with torch.no_grad():
        want = getattr(tl_patching, fn_name)(hooked, _encode(corrupted), cache, _tl_metric)
    got = ii.patch_activations(model, clean, corrupted, site, metric=_our_metric)
    assert torch.allclose(to_tl(got.scores), want.float(), atol=1e-5, rtol=1e-5)
    assert float((want - want.mean()).abs().max()) > 1e-3  # the comparison is not between two constants


@pytest.mark.skipif(tl_major() >= 4, reason="shortformer positions are a HookedTransformer (3.x) option")
def test_shortformer_is_refused_by_name():
    hooked = _hooked(positional_embedding_type="shortformer")
    with pytest.raises(ValueError, match="shortformer"):
        ii.attach(hooked, encode=_encode, readout=_readout, task=TASK)
    model = ii.attach(hooked, encode=_encode, readout=_readout)  # no task: refused on first use
    with pytest.raises(ValueError, match="shortformer"):
        ii.mask_heads(model, TASK.sample(4, 6, seed=0), torch.ones(2, 2))


def test_the_self_check_catches_a_tool_path_that_differs():
    """A model whose block-by-block run differs from its forward (a hook only the full forward sees) is refused."""
    from icl_interp.tools import runner

    hooked = _hooked()
    model = ii.attach(hooked, encode=_encode, readout=_readout)
    real = runner.backend.run_blocks
    try:
        runner.backend.run_blocks = lambda h, resid, start, stop: real(h, resid * 1.01, start, stop)
        with pytest.raises(ValueError, match="differs from the model's own forward"):
            ii.tools.runner.check_model(model, TASK.sample(4, 6, seed=0))
    finally:
        runner.backend.run_blocks = real


@pytest.mark.parametrize("site", ["resid_pre", "resid_mid", "resid_post"])
def test_patching_every_position_recovers_exactly_one(tiny_model, tiny_task, site):
    clean = tiny_task.sample(32, 8, seed=5)
    corrupted = ii.corrupt_batch(clean, "new_w", tiny_task, seed=2)
    got = ii.patch_activations(tiny_model, clean, corrupted, site, per_position=False)
    assert torch.allclose(got.scores, torch.ones(tiny_model.cfg.n_layers), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("site", ["resid_pre", "resid_mid", "resid_post"])
def test_patching_every_position_recovers_one_on_the_shipped_default(site):
    model = ii.load_model("default")
    clean = model.task.sample(256, 16, seed=0)
    corrupted = ii.corrupt_batch(clean, "new_w", model.task, seed=1)
    got = ii.patch_activations(model, clean, corrupted, site, per_position=False)
    assert torch.allclose(got.scores, torch.ones(model.cfg.n_layers), atol=1e-5), got.scores


WRITTEN = ["hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "attn.hook_z"]


@pytest.mark.parametrize("name", WRITTEN)
def test_a_write_has_the_effect_of_transformer_lens_in_place_edit(tiny_model, tiny_batch, name):
    """Every hook name a tool writes: our write changes what flows on exactly as TL's run_with_hooks with an in-place edit."""
    from icl_interp.tools.interventions import replace_slice, scoped

    full = f"blocks.0.{name}"
    _, cache = tiny_model.run_with_cache(tiny_batch)
    value = torch.randn_like(cache[full])
    index = (slice(None), slice(1, 4))

    def in_place(act, hook):
        act[index] = value[index]
        return act

    with torch.no_grad():
        want = tiny_model.run_with_hooks(tiny_batch, fwd_hooks=[(full, in_place)])
        with scoped(tiny_model.hooked, [(full, replace_slice(value, index))]):
            got = tiny_model(tiny_batch)
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, tiny_model(tiny_batch), atol=1e-3)  # the write did change the output
