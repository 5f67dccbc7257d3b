"""Linear attention and the attention direction: the model's forward against a forward written out by hand, hooks, tools, training, saving."""

import pytest
import torch
from _util import build_user_hooked, hook_counts

import icl_interp as ii
from icl_interp.core import backend
from icl_interp.core import fast_paths as _fast
from icl_interp.core.linear_attention import has_linear_attention, linear_pattern

pytestmark = pytest.mark.tl3

TASK = ii.SparseLinearRegression(d=4, s=2, noise_std=0.1)
SETTINGS = [("interleaved", "causal"), ("concatenated", "causal"), ("concatenated", "bidirectional")]


def _model(encoding, direction, attention="linear", **kw):
    spec = dict(d=4, n_layers=2, n_heads=2, d_model=12, max_points=8, encoding=encoding, attention=attention,
                attention_dir=direction, attn_only=True, normalization=None, positional="none")
    spec.update(kw)
    return ii.ICLTransformer(ii.ModelConfig(**spec), TASK)


def _by_hand(model, batch):
    """The forward from the canonical weights, no TransformerLens: linear attention as documented in icl_interp.core.linear_attention."""
    sd = model.own_state_dict()
    cfg = model.cfg
    resid = model.encode(batch.xs, batch.ys)
    n = resid.shape[1]
    visible = torch.ones(n, n, dtype=torch.bool)
    if cfg.attention_dir == "causal":
        visible = visible.tril()
    if cfg.encoding == "concatenated":
        visible[:, -1] = False  # the query is nobody's key
    count = visible.sum(-1).clamp_min(1)
    for l in range(cfg.n_layers):
        w = {k: sd[f"hooked.blocks.{l}.attn.{k}"] for k in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O")}
        q = torch.einsum("bpm,hme->bphe", resid, w["W_Q"]) + w["b_Q"]
        k = torch.einsum("bpm,hme->bphe", resid, w["W_K"]) + w["b_K"]
        v = torch.einsum("bpm,hme->bphe", resid, w["W_V"]) + w["b_V"]
        scores = torch.einsum("bihe,bjhe->bhij", q, k) / cfg.d_head**0.5
        pattern = scores * visible / count[:, None]
        z = torch.einsum("bhij,bjhe->bihe", pattern, v)
        resid = resid + torch.einsum("bihe,hem->bim", z, w["W_O"]) + w["b_O"]
    return model.readout(resid @ sd["hooked.unembed.W_U"] + sd["hooked.unembed.b_U"], batch)


@pytest.mark.parametrize("encoding,direction", SETTINGS)
def test_forward_matches_the_formula_written_out(encoding, direction):
    model = _model(encoding, direction)
    batch = TASK.sample(16, 8, seed=1)
    with torch.no_grad():
        assert torch.allclose(model(batch), _by_hand(model, batch), rtol=1e-5, atol=1e-6)
        softmax = _model(encoding, direction, attention="softmax")
        softmax.load_own_state_dict(model.own_state_dict())
        assert not torch.allclose(softmax(batch), model(batch), atol=1e-3)  # the same weights, another function


@pytest.mark.parametrize("encoding,direction", SETTINGS)
def test_hook_pattern_holds_the_linear_pattern(encoding, direction):
    model = _model(encoding, direction)
    batch = TASK.sample(4, 6, seed=2)
    _, cache = model.run_with_cache(batch)
    for l in range(2):
        pattern = cache[f"blocks.{l}.attn.hook_pattern"]
        want = linear_pattern(cache[f"blocks.{l}.attn.hook_q"], cache[f"blocks.{l}.attn.hook_k"], scale=6 ** 0.5,
                              causal=direction == "causal", query_key=encoding == "interleaved")
        assert torch.allclose(pattern, want, atol=1e-6)
        assert not torch.allclose(pattern.sum(-1), torch.ones(()))  # not a softmax
        if direction == "causal":
            assert torch.all(pattern.triu(1) == 0)
        if encoding == "concatenated":
            assert torch.all(pattern[..., -1] == 0)
            assert (pattern[..., :-1] != 0).all() if direction == "bidirectional" else True


def test_normaliser_is_the_number_of_keys_seen():
    q = torch.ones(1, 5, 1, 1)
    k = torch.ones(1, 5, 1, 1)
    causal = linear_pattern(q, k, scale=1.0, causal=True)
    assert torch.allclose(causal[0, 0].sum(-1), torch.ones(5))  # constant scores: each row averages its keys
    assert torch.allclose(causal[0, 0, 2], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0, 0]))
    context = linear_pattern(q, k, scale=1.0, causal=False, query_key=False)
    assert torch.allclose(context[0, 0], torch.tensor([[0.25] * 4 + [0.0]] * 5))  # n = 4 context keys for every token
    raw = linear_pattern(2 * q, k, scale=1.0, causal=False, normalise="none")
    assert torch.all(raw == 2)


def test_user_hooks_see_and_edit_the_linear_pattern_and_qk():
    model = _model("concatenated", "bidirectional")
    batch = TASK.sample(8, 6, seed=3)
    clean = model(batch)
    seen = {}
    zeroed = model.run_with_hooks(batch, fwd_hooks=[("blocks.0.attn.hook_pattern", lambda p, hook: seen.setdefault("p", p) * 0),
                                                    ("blocks.1.attn.hook_pattern", lambda p, hook: p * 0)])
    assert torch.all(seen["p"][..., -1] == 0)  # the user's hook ran after ours: it saw the linear pattern
    with torch.no_grad():  # all attention off: the output is the read-in of the query through W_U
        resid = model.encode(batch.xs, batch.ys)
        sd = model.own_state_dict()
        bias = sum(sd[f"hooked.blocks.{l}.attn.b_O"] for l in range(2))
        assert torch.allclose(zeroed, ((resid + bias) @ sd["hooked.unembed.W_U"] + sd["hooked.unembed.b_U"])[:, -1, 0], atol=1e-6)
    # an edit of q reaches the pattern (our recorder runs after the user's hook)
    doubled = model.run_with_hooks(batch, fwd_hooks=[("blocks.1.attn.hook_q", lambda q, hook: 2 * q)])
    by_pattern = model.run_with_hooks(batch, fwd_hooks=[("blocks.1.attn.hook_pattern", lambda p, hook: 2 * p)])
    assert torch.allclose(doubled, by_pattern, atol=1e-6) and not torch.allclose(doubled, clean)


def test_hook_resets_keep_linear_attention_and_tools_leave_no_hooks():
    model = _model("concatenated", "causal")
    batch = TASK.sample(8, 6, seed=4)
    before, counts = model(batch), hook_counts(model.hooked)
    with backend.quiet_tl():
        model.hooked.reset_hooks(including_permanent=True)
    assert torch.equal(model(batch), before) and has_linear_attention(model.hooked)
    ii.head_importance(model, batch)
    ii.patch_activations(model, batch, ii.corrupt_batch(batch, "new_w", TASK, seed=0), site="head")
    assert hook_counts(model.hooked) == counts


@pytest.mark.parametrize("encoding,direction", SETTINGS)
def test_fast_paths_step_aside_and_the_self_check_passes(encoding, direction):
    for attention in ("linear", "softmax"):
        model = _model(encoding, direction, attention=attention, n_layers=1)  # the constructor runs runner.check_model
        if attention == "linear" or direction == "bidirectional":
            assert not _fast.usable(model.hooked)
            sample = TASK.sample(2, 4, seed=0)
            assert _fast.fused_forward(model.hooked, model.encode(sample.xs, sample.ys)) is None
            with torch.no_grad():  # what training asks for runs the model's own function
                assert torch.equal(model(sample, fast=True), model(sample))
    if backend.is_bridge(model.hooked):
        assert _fast.usable(model.hooked) == (direction == "causal")  # a softmax native bridge: fast only when causal


def test_bidirectional_sees_later_examples_but_never_the_query_y():
    model = _model("concatenated", "bidirectional", attention="softmax", n_layers=2, normalization="LN", attn_only=False)
    batch = TASK.sample(8, 6, seed=5)
    preds = model(batch)
    ys = batch.ys.clone()
    ys[:, -1] += 50.0
    assert torch.allclose(model(batch.xs, ys), preds)
    _, cache = model.run_with_cache(batch)
    assert (cache["blocks.0.attn.hook_pattern"][:, :, 0, 1:] > 0).all()  # token 0 attends to later tokens


def test_interleaved_bidirectional_and_bad_values_are_refused():
    with pytest.raises(ValueError, match="attention_dir='bidirectional' needs encoding='concatenated'"):
        ii.ModelConfig(d=4, encoding="interleaved", attention_dir="bidirectional")
    with pytest.raises(ValueError, match="attention"):
        ii.ModelConfig(d=4, attention="relu")
    with pytest.raises(ValueError, match="attention_dir"):
        ii.ModelConfig(d=4, encoding="concatenated", attention_dir="forward")


def test_trains_saves_and_loads(tmp_path):
    model = _model("concatenated", "bidirectional", n_heads=2)
    cfg = ii.TrainConfig(steps=30, batch_size=32, lr=3e-3, warmup_steps=5, progress=False)
    log = ii.train(model, TASK, cfg)["log"]
    assert log[-1]["loss"] < log[0]["loss"]
    ii.save_model(model, tmp_path / "m")
    loaded = ii.load_model(tmp_path / "m")
    assert (loaded.cfg.attention, loaded.cfg.attention_dir) == ("linear", "bidirectional")
    assert has_linear_attention(loaded.hooked)
    batch = TASK.sample(16, 8, seed=6)
    with torch.no_grad():
        assert torch.allclose(loaded(batch), model(batch), atol=1e-6)
        assert torch.allclose(loaded(batch), _by_hand(loaded, batch), rtol=1e-5, atol=1e-6)


def test_tools_run_on_a_linear_model():
    model = _model("interleaved", "causal", n_layers=2)
    batch = TASK.sample(64, 8, seed=7)
    assert ii.head_importance(model, batch).shape == (2, 2)
    assert ii.head_importance(model, batch, method="gradient").shape == (2, 2)
    assert ii.mask_heads(model, batch, torch.tensor([[0.0, 1.0], [1.0, 1.0]])).shape == (64, 8)
    assert ii.patch_activations(model, batch, ii.corrupt_batch(batch, "new_w", TASK, seed=0), site="resid_pre").scores.shape[0] == 2
    assert ii.probe_layer(model, batch, 1, "y_query").n_test > 0


def test_linear_attention_on_a_users_model():
    hooked = build_user_hooked(n_layers=2, n_heads=2, d_model=16)
    resid = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), backend.quiet_tl():
        softmax_out = hooked(resid, start_at_layer=0)
        assert ii.core.linear_attention.linear_attention(hooked, normalise="none") is hooked
        out, cache = hooked.run_with_cache(resid, start_at_layer=0)
    assert not torch.allclose(out, softmax_out, atol=1e-4)
    want = linear_pattern(cache["blocks.1.attn.hook_q"], cache["blocks.1.attn.hook_k"], scale=8 ** 0.5, causal=True, normalise="none")
    assert torch.allclose(cache["blocks.1.attn.hook_pattern"], want, atol=1e-6)
    with pytest.raises(ValueError, match="already has linear attention"):
        ii.core.linear_attention.linear_attention(hooked)
    mine = ii.attach(hooked, encode=lambda b: torch.cat([b.xs, b.ys[..., None]], -1) @ torch.ones(5, 16) / 5,
                     readout=lambda o: o[:, -1, 0], task=TASK)
    assert ii.head_importance(mine, TASK.sample(16, 4, seed=0)).shape == (2, 2)


def test_helper_checks_its_arguments():
    with pytest.raises(TypeError, match="hooked must be a TransformerLens"):
        ii.core.linear_attention.linear_attention(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="normalise"):
        ii.core.linear_attention.linear_attention(build_user_hooked(), normalise="softmax")
    with pytest.raises(TypeError, match="query_key must be a bool"):
        ii.core.linear_attention.linear_attention(build_user_hooked(), query_key="no")
    q = torch.ones(1, 3, 2, 4)
    with pytest.raises(ValueError, match="k must have shape"):
        linear_pattern(q, torch.ones(1, 4, 2, 4), scale=1.0, causal=True)
    with pytest.raises(ValueError, match="scale must be > 0"):
        linear_pattern(q, q, scale=0.0, causal=True)
