"""gd_alignment: shapes on a tiny model, and a layer that is exactly GD is recognised as such."""

import math

import pytest
import torch
from _util import hook_counts

import probes
from icl_interp.core.tasks import ICLBatch
from icl_interp.tools.gd_alignment import gd_alignment

pytestmark = pytest.mark.tl3

D, D_MODEL = 4, 16


@pytest.fixture(scope="module")
def data(tiny_task):
    return tiny_task.sample(64, 8, seed=21)


def test_runs_on_a_tiny_model(tiny_model, data):
    steps = (1, 2, 3)
    before = hook_counts(tiny_model.hooked)
    result = gd_alignment(tiny_model, data, steps=steps, lrs=(0.1, 0.5, 1.0))
    assert hook_counts(tiny_model.hooked) == before
    assert [r.layer for r in result.rows] == [-1, 0, 1]
    assert result.steps == list(steps) and set(result.variants) == {"gd", "pto"}
    assert (result.n_train, result.n_test) == (48, 16)
    for row in result.rows:
        assert math.isfinite(row.probe_mse)
        for v in ("gd", "pto"):
            assert len(row.mse[v]) == len(row.model_cos[v]) == len(row.lr[v]) == len(steps)
            assert all(math.isfinite(x) for x in row.mse[v] + row.model_cos[v])
            assert all(-1 - 1e-6 <= c <= 1 + 1e-6 for c in row.model_cos[v])
            assert row.best_t[v] in steps and row.best_mse[v] == min(row.mse[v])
            assert set(row.lr[v]) <= {0.1, 0.5, 1.0}
    assert all(len(result.task_mse[v]) == len(steps) and all(map(math.isfinite, result.task_mse[v])) for v in result.variants)
    as_dict = result.to_dict()
    assert as_dict["rows"][1]["best_t"]["gd"] in steps and as_dict["variants"]["pto"] == "reweight"
    assert "probe_mse" in str(result)


def test_without_preprocessing_only_raw_gd(tiny_model, data):
    result = gd_alignment(tiny_model, data, steps=2, preprocessing=None, lrs=(0.5,))
    assert list(result.variants) == ["gd"] and list(result.rows[0].mse) == ["gd"]
    assert result.task_lr == {"gd": [0.5]}


def test_all_positions(tiny_model, data):
    result = gd_alignment(tiny_model, data, steps=(1, 2), lrs=(0.1, 0.5), positions="all", lr_fit="layer")
    assert result.positions == "all" and len(result.rows) == 3
    assert all(math.isfinite(x) for r in result.rows for x in r.mse["gd"] + r.mse["pto"])


@pytest.fixture(scope="module")
def identity_read_in_model(tiny_task):
    """A model whose residual input holds x_i (token 2i) and y_i (token 2i+1) in its first coordinates."""
    from icl_interp.core.model import ICLTransformer, ModelConfig

    model = ICLTransformer(ModelConfig(d=D, n_layers=2, n_heads=2, d_model=D_MODEL, max_points=8), tiny_task)
    with torch.no_grad():
        model.read_in.weight.zero_()
        model.read_in.weight[:D, :D] = torch.eye(D)
        model.read_in.bias.zero_()
        model.pos_emb.zero_()
    return model


def _planted_gd_hooks(steps, lr):
    """Hooks making block 1's output ``100 * (t-step GD prediction of the query) * u``, differentiably in x."""
    u = torch.randn(D_MODEL, generator=torch.Generator().manual_seed(9))
    u = u / u.norm()
    seen = {}

    def grab(x, hook):
        seen["resid0"] = x

    def plant(x, hook):
        r0 = seen["resid0"]
        b = r0.shape[0]
        xs = r0[:, 0::2, :D]
        ys = torch.cat([r0[:, 1::2, 0], r0.new_zeros(b, 1)], 1)
        pred = probes.gd_prediction(steps, lr)(ICLBatch(xs, ys, r0.new_zeros(b, D)))
        return torch.zeros_like(x) + 100.0 * pred.to(x.dtype)[:, None, None] * u

    return [("blocks.0.hook_resid_pre", grab), ("blocks.1.hook_resid_post", plant)]


def test_a_layer_that_is_gd_is_recognised(identity_read_in_model, data):
    model = identity_read_in_model
    kwargs = dict(steps=(1, 2, 3), preprocessing="reweight")
    lr = gd_alignment(model, data, **kwargs).task_lr["gd"][1]  # the step size the comparison will use for t = 2
    before = hook_counts(model.hooked)
    with model.hooked.hooks(fwd_hooks=_planted_gd_hooks(2, lr)):
        result = gd_alignment(model, data, **kwargs)
    assert hook_counts(model.hooked) == before
    planted, unplanted = result.rows[2], result.rows[1]
    assert planted.layer == 1 and unplanted.layer == 0
    assert planted.best_t["gd"] == 2 and planted.lr["gd"][1] == lr
    # the probe is calibrated to y (y ~ a * gd + b), so the MSE is small but not 0; model-cos is scale-free
    assert planted.best_mse["gd"] < 0.7 * min(planted.mse["gd"][0], planted.mse["gd"][2])
    assert planted.best_mse["gd"] < 0.1 * unplanted.best_mse["gd"]
    assert planted.best_cos["gd"] > 0.999 > max(planted.model_cos["gd"][0], planted.model_cos["gd"][2])
    assert planted.best_cos["gd"] > unplanted.best_cos["gd"] + 0.5
    assert planted.best_mse["gd"] < planted.best_mse["pto"]


def test_model_cos_is_nan_without_a_differentiable_encoding(tiny_task, data):
    from _util import build_user_hooked

    from icl_interp.tools.runner import attach

    hooked = build_user_hooked(d_vocab=16, n_ctx=16, seed=3)
    weights = 2 ** torch.arange(D)
    model = attach(hooked, encode=lambda b: ((b.xs > 0).long() * weights).sum(-1), readout=lambda o: o[:, :, 0], task=tiny_task)
    result = gd_alignment(model, data, steps=(1,), lrs=(0.5,), preprocessing=None)
    assert all(math.isnan(r.model_cos["gd"][0]) for r in result.rows)
    assert all(math.isfinite(r.mse["gd"][0]) for r in result.rows)
    with pytest.raises(ValueError, match="positions='all'"):
        gd_alignment(model, data, steps=(1,), positions="all")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(steps=[]), "steps"),
        (dict(steps=[0]), "steps"),
        (dict(lrs=[-0.1]), "lrs"),
        (dict(lrs=[]), "lrs"),
        (dict(positions="middle"), "positions"),
        (dict(lr_fit="best"), "lr_fit"),
        (dict(site="resid"), "site"),
        (dict(preprocessing="square"), "preprocessing"),
    ],
)
def test_validates(tiny_model, data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gd_alignment(tiny_model, data, **kwargs)


def test_too_little_data(tiny_model, tiny_task):
    with pytest.raises(ValueError, match="data"):
        gd_alignment(tiny_model, tiny_task.sample(5, 8, seed=0))
