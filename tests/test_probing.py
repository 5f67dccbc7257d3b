"""P-probing: planted features are found, noise is not, splits are clean, hooks never leak."""


import pytest
import torch
from _util import hook_counts

import probes
from icl_interp.tools.probing import RidgeProbe, _plan, collect_activations, probe_all_layers, probe_layer
from icl_interp.tools.runner import prepare

pytestmark = pytest.mark.tl3

SCALE = 100.0  # the planted feature dwarfs the random model's own activations


@pytest.fixture(scope="module")
def data(tiny_task):
    return tiny_task.sample(64, 8, seed=11)


def _direction(d_model=16, seed=0):
    u = torch.randn(d_model, generator=torch.Generator().manual_seed(seed))
    return u / u.norm()


def _plant_prompt(values, u):
    """A user hook adding ``SCALE * values[b] * u`` to every position of prompt b."""
    return lambda x, hook: x + SCALE * values[:, None, None] * u


# -- RidgeProbe (no TransformerLens) ---------------------------------------------------


def _regression(n=40, f=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = (torch.randn(n, f, generator=g) * 3 + 1).double()
    Y = X @ torch.randn(f, k, generator=g).double() + torch.randn(n, k, generator=g).double() + 2
    return X, Y, g


def test_ridge_probe_matches_sklearn():
    from sklearn.linear_model import Ridge

    X, Y, g = _regression()
    X_new = torch.randn(10, 6, generator=g).double()
    for y in (Y, Y[:, 0]):
        ours = RidgeProbe(alpha=0.7).fit(X.float(), y.float())
        theirs = Ridge(alpha=0.7, fit_intercept=True).fit(X.numpy(), y.numpy())
        expected = torch.from_numpy(theirs.predict(X_new.numpy()))
        got = ours.predict(X_new.float()).double()
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-4)
        assert ours.score(X.float(), y.float()) == pytest.approx(theirs.score(X.numpy(), y.numpy()), abs=1e-5)


@pytest.mark.parametrize("n,f", [(20, 5), (10, 30)])
def test_leave_one_out_is_exact(n, f):
    X, Y, _ = _regression(n, f, 2, seed=1)
    alphas = (0.01, 1.0, 100.0)
    probe = RidgeProbe(alphas=alphas).fit(X, Y)
    for i, alpha in enumerate(alphas):
        errs = []
        for j in range(n):
            keep = torch.arange(n) != j
            fit = RidgeProbe(alpha=alpha).fit(X[keep], Y[keep])
            errs.append((fit.predict(X[j : j + 1]) - Y[j : j + 1]) ** 2)
        assert float(probe.loo_mse_[i]) == pytest.approx(float(torch.cat(errs).mean()), rel=1e-6)
    assert probe.alpha_ == alphas[int(probe.loo_mse_.argmin())]


def test_leave_one_out_picks_small_alpha_for_clean_signal_and_large_for_noise():
    g = torch.Generator().manual_seed(2)
    X = torch.randn(60, 8, generator=g).double()
    clean = RidgeProbe().fit(X, X @ torch.randn(8, generator=g).double())
    noise = RidgeProbe().fit(X, torch.randn(60, generator=g).double())
    assert clean.alpha_ < 1e-2 < 10 < noise.alpha_


def test_reduced_rank_probe():
    X, Y, _ = _regression(k=3)
    probe = RidgeProbe(alpha=1.0, rank=1).fit(X, Y)
    assert int(torch.linalg.matrix_rank(probe.coef_)) == 1
    assert probe.predict(X).shape == (40, 3)


def test_ridge_probe_validates():
    X, Y, _ = _regression()
    with pytest.raises(ValueError, match="at least 2 rows"):
        RidgeProbe().fit(X[:1], Y[:1])
    with pytest.raises(ValueError, match="same number of rows"):
        RidgeProbe().fit(X, Y[:5])
    with pytest.raises(RuntimeError, match="not fitted"):
        RidgeProbe().predict(X)
    with pytest.raises(ValueError, match="alpha"):
        RidgeProbe(alpha=-1.0)
    with pytest.raises(ValueError, match="alphas"):
        RidgeProbe(alphas=())
    with pytest.raises(ValueError, match="features"):
        RidgeProbe(alpha=1.0).fit(X, Y).predict(X[:, :2])


# -- probing a model ------------------------------------------------------------------


def test_planted_feature_is_probed_under_the_users_hook(tiny_model, data):
    hooked = tiny_model.hooked
    u, values = _direction(), torch.randn(64, generator=torch.Generator().manual_seed(1))
    feature = probes.register("_planted_feature", lambda b: values, "planted in blocks.1.hook_resid_post")
    prepare(tiny_model, data)  # the tools' one-time self-check (on 2 prompts) before a hook that only fits 64 prompts
    before = hook_counts(hooked)
    try:
        with hooked.hooks(fwd_hooks=[("blocks.1.hook_resid_post", _plant_prompt(values, u))]):
            inside = hook_counts(hooked)
            assert inside != before
            found = probe_layer(tiny_model, data, 1, "_planted_feature", control=True)
            assert hook_counts(hooked) == inside  # the user's hook is still there, none of ours is
            below = probe_layer(tiny_model, data, 0, feature)
        assert hook_counts(hooked) == before
    finally:
        probes.unregister("_planted_feature")
    assert found.r2 > 0.99 and found.r2_per_output.shape == (1,)
    assert found.control_r2 is not None and found.control_r2 < 0.5  # a random model has no such feature
    assert below.r2 < 0.5  # planted after layer 0, not before


def test_our_hooks_are_removed_when_the_forward_fails(tiny_model, data):
    hooked = tiny_model.hooked
    before = hook_counts(hooked)

    def boom(x, hook):
        raise RuntimeError("user hook failed")

    with hooked.hooks(fwd_hooks=[("blocks.0.hook_resid_post", boom)]):
        inside = hook_counts(hooked)
        with pytest.raises(RuntimeError, match="user hook failed"):
            probe_layer(tiny_model, data, 1, "y_query")
        assert hook_counts(hooked) == inside
    assert hook_counts(hooked) == before


def test_independent_random_target_is_not_decodable(tiny_model, data):
    noise = torch.randn(64, generator=torch.Generator().manual_seed(5))
    for layer in ("embed", 0, 1):
        result = probe_layer(tiny_model, data, layer, lambda b: noise)
        assert result.r2 < 0.1


def test_prompts_are_split_not_positions(tiny_model, data):
    result = probe_layer(tiny_model, data, 0, "y", positions="all", seed=3)
    train, test = set(result.train_prompts.tolist()), set(result.test_prompts.tolist())
    assert not train & test and train | test == set(range(64))
    assert (result.n_train, result.n_test) == (48, 16) == (len(train), len(test))
    other = probe_layer(tiny_model, data, 0, "y", positions="all", seed=4)
    assert set(other.test_prompts.tolist()) != test


def test_per_example_feature_lines_up_with_x_tokens(tiny_model, data):
    u, values = _direction(seed=2), torch.randn(64, 8, generator=torch.Generator().manual_seed(2))

    def plant(x, hook):  # example i's value at its x token 2i
        out = x.clone()
        out[:, 0::2] += SCALE * values[..., None] * u
        return out

    target = probes.Target("per_example", lambda b: values, per="example")
    with tiny_model.hooked.hooks(fwd_hooks=[("blocks.0.hook_resid_post", plant)]):
        at_x = probe_layer(tiny_model, data, 0, target, positions="all")
        at_query = probe_layer(tiny_model, data, 0, target, positions="query")
        listed = probe_layer(tiny_model, data, 0, target, positions=[0, 2, -1])
        at_y = probe_layer(tiny_model, data, 0, target, positions=[1, 3])
    assert min(at_x.r2, at_query.r2, listed.r2) > 0.99
    assert at_y.r2 < 0.5


def test_position_plans(tiny_model):
    from icl_interp.core.model import ICLTransformer, ModelConfig
    from icl_interp.core.protocol import Layout

    inter = tiny_model.layout(8)
    concat = ICLTransformer(ModelConfig(d=4, n_layers=1, n_heads=1, d_model=8, max_points=8, encoding="concatenated")).layout(8)
    other = Layout(20, 19)  # an attached model without a layout: only the query is known
    assert _plan(inter, "query", 8).tokens.tolist() == [14]
    assert _plan(inter, "all", 8).tokens.tolist() == list(range(0, 15, 2))
    assert _plan(inter, [1, -1], 8).examples.tolist() == [0, 7]
    assert _plan(concat, "query", 8).tokens.tolist() == [7]
    assert _plan(concat, "all", 8).examples.tolist() == list(range(8))
    assert _plan(other, "query", 8).tokens.tolist() == [19]
    assert _plan(other, [3], 8).examples is None
    with pytest.raises(ValueError, match="positions='all'"):
        _plan(other, "all", 8)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(layer=2), "layer"),
        (dict(layer=-1), "layer"),
        (dict(layer="emb"), "layer"),
        (dict(site="resid"), "site"),
        (dict(positions="middle"), "positions"),
        (dict(positions=[40]), "positions"),
        (dict(positions=[]), "positions"),
        (dict(target="y_qeury"), "known targets are"),
        (dict(test_fraction=1.5), "test_fraction"),
        (dict(probe="lasso"), "probe"),
        (dict(target="y", positions=[0], model="attached"), "per example"),
    ],
)
def test_probe_layer_validates(tiny_model, data, kwargs, match):
    from icl_interp.tools.runner import attach

    args = dict(model=tiny_model, data=data, layer=0, target="y_query")
    args.update(kwargs)
    if args["model"] == "attached":
        args["model"] = attach(tiny_model.hooked, lambda b: tiny_model.encode(b.xs, b.ys), lambda o: o[:, 0::2, 0])
    with pytest.raises(ValueError, match=match):
        probe_layer(**args)


def test_too_little_data(tiny_model, tiny_task):
    with pytest.raises(ValueError, match="data"):
        probe_layer(tiny_model, tiny_task.sample(5, 8, seed=0), 0, "y_query")
    with pytest.raises(ValueError, match="data"):
        probe_all_layers(tiny_model, tiny_task.sample(3, 8, seed=0), test_fraction=0.5)


def test_control_needs_an_icl_transformer(tiny_model, data):
    from icl_interp.tools.runner import attach

    attached = attach(tiny_model.hooked, lambda b: tiny_model.encode(b.xs, b.ys), lambda o: o[:, 0::2, 0])
    with pytest.raises(ValueError, match="control"):
        probe_layer(attached, data, 0, "y_query", control=True)


def test_all_layers_equals_probe_layer(tiny_model, data):
    table = probe_all_layers(tiny_model, data, targets=("y_query", "r"), sites=("resid_post", "attn_out"), control=True)
    assert len(table) == 2 * (1 + 2 * 2)
    assert [(r.layer, r.site) for r in table][:5] == [
        (-1, "embed"),
        (0, "resid_post"),
        (0, "attn_out"),
        (1, "resid_post"),
        (1, "attn_out"),
    ]
    for row in table:
        layer = "embed" if row.layer == -1 else row.layer
        single = probe_layer(tiny_model, data, layer, row.target, site=row.site, control=True)
        assert single.r2 == pytest.approx(row.r2, abs=1e-9)
        assert single.mse == pytest.approx(row.mse, abs=1e-9)
        assert single.control_r2 == pytest.approx(row.control_r2, abs=1e-9)
    assert table.get(1, "attn_out", "r") is table.rows[9]
    dicts = table.to_dicts()
    assert {"target", "layer", "site", "r2", "mse", "alpha", "control_r2", "n_train", "n_test"} <= set(dicts[0])
    assert len(dicts[5]["r2_per_output"]) == 4
    assert "embed" in str(table) and "ctrl_r2" in str(table)


def test_probing_an_attached_bridge(tiny_task, data):
    """A user-built TransformerBridge (TL 4.x; HookedTransformer on 3.x) with a float encoding."""
    from icl_interp.core.backend import tl_major
    from icl_interp.tools.runner import attach

    if tl_major() >= 4:
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge import TransformerBridge

        cfg = TransformerBridgeConfig(
            d_model=16, d_head=8, n_layers=2, n_ctx=20, n_heads=2, d_vocab=1, d_vocab_out=1, act_fn="gelu", seed=0
        )
        hooked = TransformerBridge.boot_native(cfg)
    else:
        from _util import build_user_hooked

        hooked = build_user_hooked(n_ctx=20)
    proj = torch.randn(4, 16, generator=torch.Generator().manual_seed(5))

    def encode(batch):
        b, n, d = batch.xs.shape
        y_tok = torch.cat([batch.ys[..., None], batch.xs.new_zeros(b, n, d - 1)], -1)
        return torch.stack([batch.xs, y_tok], 2).reshape(b, 2 * n, d)[:, : 2 * n - 1] @ proj

    model = attach(hooked, encode=encode, readout=lambda out: out[:, 0::2, 0], task=tiny_task)
    u, values = _direction(seed=4), torch.randn(64, generator=torch.Generator().manual_seed(4))
    before = hook_counts(hooked)
    with hooked.hooks(fwd_hooks=[("blocks.1.hook_resid_post", _plant_prompt(values, u))]):
        inside = hook_counts(hooked)
        found = probe_layer(model, data, 1, lambda b: values)  # "query" = the last token here
        table = probe_all_layers(model, data, targets=[lambda b: values, "y_query"], positions=[-1, -3])
        assert hook_counts(hooked) == inside
    assert hook_counts(hooked) == before
    assert found.r2 > 0.99
    assert table.get(1, target="<lambda>").r2 > 0.99 and table.get(0, target="<lambda>").r2 < 0.5
    assert table.get(-1, target="y_query").n_test == 16


def test_one_svd_serves_every_target_of_the_same_activations(tiny_model, tiny_task):
    """fit(X, Y, decomposition=decompose(X)) is fit(X, Y); probe_all_layers (which shares one SVD per layer across its
    targets) gives each target's row exactly as a probe of that target alone; a decomposition of another X is refused."""
    X, Y, _ = _regression()
    alone, shared = RidgeProbe().fit(X, Y), RidgeProbe().fit(X, Y, decomposition=RidgeProbe.decompose(X))
    assert alone.alpha_ == shared.alpha_ and torch.equal(alone.coef_, shared.coef_) and torch.equal(alone.loo_mse_, shared.loo_mse_)
    with pytest.raises(ValueError, match="decomposition"):
        RidgeProbe().fit(X[:-1], Y[:-1], decomposition=RidgeProbe.decompose(X))
    data = tiny_task.sample(64, 8, seed=4)
    table = probe_all_layers(tiny_model, data, targets=["y_query", "w", "r"], control=True)
    for target in ("w", "r"):
        one = probe_layer(tiny_model, data, 1, target, control=True)
        row = table.get(1, "resid_post", target)
        assert (row.r2, row.mse, row.control_r2, row.probe.alpha_) == (one.r2, one.mse, one.control_r2, one.probe.alpha_)


def test_probe_layer_equals_sklearn_ridgecv_on_the_same_split(tiny_model, tiny_task):
    """probe_layer against scikit-learn's RidgeCV (same prompts split, same penalties, efficient leave-one-out)."""
    from sklearn.linear_model import RidgeCV

    from icl_interp.tools.probing import PROBE_ALPHAS

    data = tiny_task.sample(256, 8, seed=11)
    row = probe_layer(tiny_model, data, 1, "y_query", site="resid_post")
    acts = collect_activations(tiny_model, data, [(1, "resid_post")])[(1, "resid_post")][:, 0].double().numpy()
    y = data.ys[:, -1].double().numpy()
    train, test = row.train_prompts.numpy(), row.test_prompts.numpy()
    sk = RidgeCV(alphas=PROBE_ALPHAS, fit_intercept=True).fit(acts[train], y[train])
    assert row.probe.alpha_ == pytest.approx(sk.alpha_)
    assert row.r2 == pytest.approx(sk.score(acts[test], y[test]), abs=1e-6)
    assert row.mse == pytest.approx(float(((sk.predict(acts[test]) - y[test]) ** 2).mean()), rel=1e-6)


def test_per_prompt_squared_errors_give_the_probes_r2(tiny_model, data):
    """The per-test-prompt sums a bootstrap resamples (issue 26) add up to the probe's own held-out R2 and MSE."""
    row = probe_layer(tiny_model, data, 0, "y_query", control=True)
    sse, sst, control = (row.per_prompt[k] for k in ("sse", "sst", "control_sse"))
    assert sse.shape == sst.shape == control.shape == (row.n_test, 1)
    assert float((1 - sse.sum(0) / sst.sum(0)).mean()) == pytest.approx(row.r2, rel=1e-9, abs=1e-12)
    assert float(sse.sum() / row.n_test) == pytest.approx(row.mse, rel=1e-9)
    assert float((1 - control.sum(0) / sst.sum(0)).mean()) == pytest.approx(row.control_r2, rel=1e-9, abs=1e-12)
    every = probe_layer(tiny_model, data, 0, "pre_reweight_all", positions="all")      # several positions per prompt
    assert float((1 - every.per_prompt["sse"].sum(0) / every.per_prompt["sst"].sum(0)).mean()) == pytest.approx(every.r2, rel=1e-9)
