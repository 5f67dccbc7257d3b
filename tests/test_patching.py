import pytest
import torch
from _util import hook_counts

from icl_interp.tools.patching import corrupt_batch, patch_activations, patched
from icl_interp.tools.runner import predict

pytestmark = pytest.mark.tl3


@pytest.fixture(params=["icl", "user"])
def any_model(request, tiny_model, user_model):
    return tiny_model if request.param == "icl" else user_model


@pytest.fixture(scope="module")
def pair(tiny_task):
    clean = tiny_task.sample(16, 8, seed=21)
    return clean, corrupt_batch(clean, "new_w", tiny_task, seed=1)


def _cache(model, batch):
    inp = model.encode_batch(batch)
    kwargs = {"start_at_layer": 0} if inp.is_floating_point() else {}
    return model.hooked.run_with_cache(inp, **kwargs)[1]


def test_patching_all_of_resid_pre_at_layer_0_gives_the_clean_output(any_model, pair):
    clean, corrupted = pair
    with patched(any_model, _cache(any_model, clean), "resid_pre", (0,)):
        out = predict(any_model, corrupted)
    assert torch.allclose(out, predict(any_model, clean), atol=1e-5)
    result = patch_activations(any_model, clean, corrupted, site="resid_pre", per_position=False)
    assert result.axes == ("layer",)
    assert torch.allclose(result.scores, torch.ones(2), atol=1e-4)


def test_patching_from_its_own_cache_changes_nothing(any_model, pair):
    _, corrupted = pair
    with patched(any_model, _cache(any_model, corrupted), "head_pos", (1, 0, 3)):
        out = predict(any_model, corrupted)
    assert torch.allclose(out, predict(any_model, corrupted), atol=1e-6)


def test_patching_the_last_residual_at_one_position_changes_only_that_prediction(tiny_model, pair):
    clean, corrupted = pair
    with patched(tiny_model, _cache(tiny_model, clean), "resid_post", (1, 6)):
        out = predict(tiny_model, corrupted)
    base, target = predict(tiny_model, corrupted), predict(tiny_model, clean)
    assert torch.allclose(out[:, 3], target[:, 3], atol=1e-5)  # token 6 predicts y_3
    others = [i for i in range(8) if i != 3]
    assert torch.allclose(out[:, others], base[:, others], atol=1e-6)


@pytest.mark.parametrize(
    "site, shape, axes",
    [
        ("resid_pre", (2, 15), ("layer", "pos")),
        ("resid_mid", (2, 15), ("layer", "pos")),
        ("attn_out", (2, 15), ("layer", "pos")),
        ("mlp_out", (2, 15), ("layer", "pos")),
        ("head", (2, 2), ("layer", "head")),
        ("head_pos", (2, 2, 15), ("layer", "head", "pos")),
    ],
)
def test_scores_shapes_and_reuse_match_full_forwards(tiny_model, pair, site, shape, axes):
    clean, corrupted = pair
    result = patch_activations(tiny_model, clean, corrupted, site=site)
    assert result.scores.shape == shape and result.axes == axes
    assert torch.isfinite(result.scores).all()
    # spot-check one index against a full forward with the patch applied
    index = {"head": (1, 1), "head_pos": (1, 1, 14)}.get(site, (1, 14))
    with patched(tiny_model, _cache(tiny_model, clean), site, index), torch.no_grad():
        preds = predict(tiny_model, corrupted)
    from icl_interp.tools.runner import default_metric

    m = default_metric(tiny_model)
    frac = (result.corrupted_value - float(m(preds, clean))) / (result.corrupted_value - result.clean_value)
    assert result.scores[index] == pytest.approx(frac, abs=1e-4)


@pytest.mark.tl3
@pytest.mark.parametrize("site", ["head", "head_pos"])
def test_every_head_patch_equals_a_full_forward_with_the_patch(any_model, pair, site):
    """The head sweep restarts at the layer with its attention reused and the later blocks fused: every score equals the
    metric of a full hooked forward with that head's z patched (layer 0 too, where every later block runs)."""
    clean, corrupted = pair
    metric = lambda p, b: ((p - b.ys) ** 2).mean() if p.ndim == 2 else ((p - b.ys[:, -1]) ** 2).mean()  # noqa: E731
    result = patch_activations(any_model, clean, corrupted, site=site, metric=metric)
    cache = _cache(any_model, clean)
    n_layers, n_heads = any_model.hooked.cfg.n_layers, any_model.hooked.cfg.n_heads
    for layer in range(n_layers):
        for head in range(n_heads):
            index = (layer, head) if site == "head" else (layer, head, 5)
            with patched(any_model, cache, site, index), torch.no_grad():
                want = float(metric(predict(any_model, corrupted), clean))
            assert float(result.scores[index]) == pytest.approx(want, rel=1e-5, abs=1e-7), index


def test_custom_metric_and_hook_hygiene(any_model, pair):
    clean, corrupted = pair
    before = hook_counts(any_model.hooked)
    res = patch_activations(any_model, clean, corrupted, site="head", metric=lambda p, b: p.mean())
    assert res.metric_name == "custom" and res.scores.shape == (2, 2)

    def bad(preds, batch):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        patch_activations(any_model, clean, corrupted, site="resid_pre", metric=bad)
    assert hook_counts(any_model.hooked) == before


def test_corruptions(tiny_task):
    clean = tiny_task.sample(32, 8, seed=2)
    shuffled = corrupt_batch(clean, "shuffle_y", seed=1)
    assert torch.equal(shuffled.ys.sort(1).values, clean.ys.sort(1).values) and not torch.equal(shuffled.ys, clean.ys)
    moved = corrupt_batch(clean, "new_support", tiny_task, seed=1)
    assert torch.equal(moved.w.abs().sort(1).values, clean.w.abs().sort(1).values)
    assert ((moved.w != 0) != (clean.w != 0)).any(1).all()  # d=4, s=2: a different support always exists
    fresh = corrupt_batch(clean, "new_w", tiny_task, seed=1)
    noise_clean = clean.ys - torch.einsum("bnd,bd->bn", clean.xs, clean.w)
    noise_fresh = fresh.ys - torch.einsum("bnd,bd->bn", fresh.xs, fresh.w)
    assert torch.allclose(noise_clean, noise_fresh, atol=1e-5)


def test_bad_patching_input(tiny_model, pair, tiny_task):
    clean, corrupted = pair
    with pytest.raises(ValueError, match="site"):
        patch_activations(tiny_model, clean, corrupted, site="embed")
    with pytest.raises(ValueError, match="same shape"):
        patch_activations(tiny_model, clean, tiny_task.sample(16, 7, seed=0))
    with pytest.raises(ValueError, match="layer"):
        with patched(tiny_model, {}, "resid_pre", (5, 0)):
            pass
    with pytest.raises(TypeError, match="corrupted"):
        patch_activations(tiny_model, clean, corrupted.xs)


@pytest.mark.parametrize("site", ["resid_pre", "resid_post"])
def test_residual_sweep_equals_one_full_forward_per_patch(any_model, pair, site):
    """Every (layer, pos) score, suffix-only path included, equals a full patched forward's."""
    clean, corrupted = pair
    weights = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))

    def metric(preds, batch):  # sensitive to every prediction
        return (preds.reshape(16, -1) * weights[:, : preds.reshape(16, -1).shape[1]]).sum()

    result = patch_activations(any_model, clean, corrupted, site=site, metric=metric)
    cache = _cache(any_model, clean)
    n_pos = cache["blocks.0.hook_resid_pre"].shape[1]
    for layer in range(2):
        for pos in range(n_pos):
            with patched(any_model, cache, site, (layer, pos)), torch.no_grad():
                want = float(metric(predict(any_model, corrupted), clean))
            assert float(result.scores[layer, pos]) == pytest.approx(want, abs=1e-4), (layer, pos)


def test_residual_sweep_runs_only_the_suffix_on_native_blocks(tiny_model, pair, monkeypatch):
    from icl_interp.core import backend
    from icl_interp.core import fast_paths as _fast

    if backend.tl_major() < 4:
        pytest.skip("the suffix path is for native 4.x blocks")
    lengths = []
    real = _fast.fused_forward
    monkeypatch.setattr(_fast, "fused_forward", lambda h, resid, *a: lengths.append(resid.shape[1]) or real(h, resid, *a))
    clean, corrupted = pair
    patch_activations(tiny_model, clean, corrupted, site="resid_pre")
    assert lengths == list(range(15, 0, -1)) * 2


@pytest.mark.parametrize("site", ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head", "head_pos"])
def test_attribution_is_the_first_order_term_of_exact_patching(tiny_model, tiny_task, site):
    """Attribution equals exact patching to first order: scale the clean-corrupted difference by eps and compare slopes."""
    import copy

    from icl_interp.tools.interventions import replace_slice, scoped

    tiny_model = copy.deepcopy(tiny_model).double()  # float64 (3.x keeps a few float32 casts: eps stays at 1e-2)
    clean = tiny_task.sample(16, 8, seed=21).to(dtype=torch.float64)
    corrupted = corrupt_batch(clean, "new_w", tiny_task, seed=1)
    metric = lambda p, b: p.mean()  # noqa: E731
    attr = patch_activations(tiny_model, clean, corrupted, site, metric=metric, method="attribution")
    exact = patch_activations(tiny_model, clean, corrupted, site, metric=metric)
    assert attr.scores.shape == exact.scores.shape and attr.method == "attribution"
    base = attr.corrupted_value
    # the oracle: the directional derivative by finite differences, patching corrupted + eps * (clean - corrupted)
    name = {"head": "attn.hook_z", "head_pos": "attn.hook_z"}.get(site, f"hook_{site}")
    _, c_cache = tiny_model.run_with_cache(clean)
    _, r_cache = tiny_model.run_with_cache(corrupted)
    eps = 1e-2  # central differences at eps and eps / 2, Richardson-combined: O(eps^4) error
    for layer in range(2):
        full = f"blocks.{layer}.{name}"
        index = (slice(None), 3) if site not in ("head", "head_pos") else ((slice(None), slice(None), 1) if site == "head" else (slice(None), 3, 1))

        def central(h, full=full, index=index):
            values = []
            for sign in (1, -1):
                mixed = r_cache[full] + sign * h * (c_cache[full] - r_cache[full])
                with torch.no_grad(), scoped(tiny_model.hooked, [(full, replace_slice(mixed, index))]):
                    values.append(float(tiny_model(corrupted).mean()))
            return (values[0] - values[1]) / (2 * h)

        slope = (4 * central(eps / 2) - central(eps)) / 3
        got = attr.scores[layer, 3] if site not in ("head", "head_pos") else (attr.scores[layer, 1] if site == "head" else attr.scores[layer, 1, 3])
        assert float(got) - base == pytest.approx(slope, rel=1e-3, abs=1e-7)


def test_attribution_is_exact_where_the_metric_is_linear_in_the_site(tiny_task):
    """No LayerNorm, attention only, metric = mean prediction: linear in the last residual, so attribution = exact."""
    from icl_interp.core.model import ICLTransformer, ModelConfig

    model = ICLTransformer(ModelConfig(d=4, n_layers=2, n_heads=2, d_model=16, max_points=8, attn_only=True, normalization=None))
    clean = tiny_task.sample(16, 8, seed=2)
    corrupted = corrupt_batch(clean, "new_w", tiny_task, seed=3)
    metric = lambda p, b: p.mean()  # noqa: E731
    exact = patch_activations(model, clean, corrupted, "resid_post", metric=metric, layers=[1])
    attr = patch_activations(model, clean, corrupted, "resid_post", metric=metric, layers=[1], method="attribution")
    assert torch.allclose(attr.scores, exact.scores, atol=1e-5)
    frac = patch_activations(model, clean, corrupted, "resid_post", layers=[1], method="attribution")
    assert frac.metric_name == "fraction_recovered" and torch.isfinite(frac.scores).all()
    with pytest.raises(ValueError, match="differentiable"):
        patch_activations(model, clean, corrupted, "head", metric=lambda p, b: float(p.detach().mean()), method="attribution")
    with pytest.raises(ValueError, match="method"):
        patch_activations(model, clean, corrupted, "head", method="second_order")
