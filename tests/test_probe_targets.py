"""The probe-target catalogue: documented shapes and values computed by hand (no TransformerLens)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import probes
from icl_interp.core.tasks import ICLBatch, SparseLinearRegression

pytestmark = pytest.mark.tl3

B, N, D = 5, 8, 4


@pytest.fixture(scope="module")
def batch():
    return SparseLinearRegression(d=D, s=2, noise_std=0.1).sample(B, N, seed=7)


def _ctx(batch):
    return batch.xs[:, :-1].double(), batch.ys[:, :-1].double(), batch.xs[:, -1].double()


SHAPES = {
    "y_query": (B, 1),
    "y_query_clean": (B, 1),
    "w": (B, D),
    "r": (B, D),
    "xtx": (B, D * (D + 1) // 2),
    "pre_identity": (B, D),
    "pre_reweight": (B, D),
    "pre_power2": (B, D),
    "pre_rank_one": (B, D),
    "gd_step_1": (B, 1),
    "gd_step_2": (B, 1),
    "gd_step_3": (B, 1),
    "gd_step_4": (B, 1),
    "ols_pred": (B, 1),
    "ridge_pred": (B, 1),
    "lasso_pred": (B, 1),
    "y": (B, N, 1),
    "x": (B, N, D),
    "r_prefix": (B, N, D),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_builtin_shapes(batch, name):
    target = probes.get(name)
    out = target(batch)
    assert tuple(out.shape) == SHAPES[name]
    assert target.per == ("example" if len(SHAPES[name]) == 3 else "prompt")
    assert target.description
    assert bool(torch.isfinite(out).all())


def test_names_and_unknown(batch):
    assert set(SHAPES) <= set(probes.names())
    assert [t.name for t in probes.list_targets()] == probes.names()
    with pytest.raises(ValueError, match="known targets are .*y_query"):
        probes.get("y_qeury")


def test_simple_values(batch):
    xs, ys, xq = _ctx(batch)
    assert torch.equal(probes.get("y_query")(batch)[:, 0], batch.ys[:, -1])
    assert torch.allclose(probes.get("y_query_clean")(batch)[:, 0], (batch.xs[:, -1] * batch.w).sum(-1))
    assert torch.equal(probes.get("w")(batch), batch.w)
    r = torch.einsum("bnd,bn->bd", xs, ys) / (N - 1)
    assert torch.allclose(probes.get("r")(batch).double(), r, atol=1e-6)
    gram = xs.mT @ xs / (N - 1)
    iu = torch.triu_indices(D, D)
    assert torch.allclose(probes.get("xtx")(batch).double(), gram[:, iu[0], iu[1]], atol=1e-6)
    assert torch.allclose(probes.get("pre_identity")(batch).double(), xq)
    assert torch.allclose(probes.get("pre_reweight")(batch).double(), r * xq, atol=1e-6)
    assert torch.allclose(probes.get("pre_power2")(batch).double(), r**2 * xq, atol=1e-6)
    rank_one = xq + (r * xq).sum(-1, keepdim=True) * r
    assert torch.allclose(probes.get("pre_rank_one")(batch).double(), rank_one, atol=1e-5)


def test_gd_targets_closed_form(batch):
    xs, ys, xq = _ctx(batch)
    n = N - 1
    r = torch.einsum("bnd,bn->bd", xs, ys) / n
    gram = xs.mT @ xs / n
    lr = probes.default_lr(n, D)
    assert lr == pytest.approx(n / (n + D + 1))
    # one step from 0: lr * x_q^T X^T y / n
    assert torch.allclose(probes.get("gd_step_1")(batch)[:, 0].double(), lr * (xq * r).sum(-1), atol=1e-5)
    w2 = lr * r - lr * ((gram @ (lr * r)[..., None])[..., 0] - r)
    assert torch.allclose(probes.get("gd_step_2")(batch)[:, 0].double(), (xq * w2).sum(-1), atol=1e-5)
    custom = probes.gd_prediction(1, lr=0.3)(batch)
    assert torch.allclose(custom.double(), 0.3 * (xq * r).sum(-1), atol=1e-5)
    pto = probes.gd_prediction(1, lr=0.3, preprocessing="reweight")(batch)
    r_pre = torch.einsum("bnd,bn->bd", r[:, None] * xs, ys) / n
    assert torch.allclose(pto.double(), 0.3 * ((r * xq) * r_pre).sum(-1), atol=1e-5)


def test_estimator_targets(batch):
    xs, ys, xq = _ctx(batch)
    ols = torch.linalg.lstsq(xs, ys[..., None]).solution[..., 0]
    assert torch.allclose(probes.get("ols_pred")(batch)[:, 0].double(), (xq * ols).sum(-1), atol=1e-4)
    a = probes.RIDGE_ALPHA
    ridge = torch.linalg.solve(xs.mT @ xs + a * torch.eye(D, dtype=xs.dtype), (xs.mT @ ys[..., None]))[..., 0]
    assert torch.allclose(probes.get("ridge_pred")(batch)[:, 0].double(), (xq * ridge).sum(-1), atol=1e-4)


def test_per_example_values(batch):
    assert torch.equal(probes.get("y")(batch)[..., 0], batch.ys)
    assert torch.equal(probes.get("x")(batch), batch.xs)
    rp = probes.get("r_prefix")(batch).double()
    assert torch.all(rp[:, 0] == 0)
    i = 5
    hand = torch.einsum("bnd,bn->bd", batch.xs[:, :i].double(), batch.ys[:, :i].double()) / i
    assert torch.allclose(rp[:, i], hand, atol=1e-6)


def test_register_and_validation(batch):
    name = "_test_tmp_target"
    target = probes.register(name, lambda b: b.ys.sum(-1), "sum of ys")
    try:
        assert probes.get(name) is target and name in probes.names()
        assert tuple(target(batch).shape) == (B, 1)
        with pytest.raises(ValueError, match="already registered"):
            probes.register(name, lambda b: b.ys[:, 0])
        probes.register(name, lambda b: b.ys[:, :2], overwrite=True)
        assert tuple(probes.get(name)(batch).shape) == (B, 2)
    finally:
        probes.unregister(name)
    assert name not in probes.names()
    with pytest.raises(ValueError, match="per"):
        probes.register("_bad", lambda b: b.ys, per="token")
    with pytest.raises(ValueError, match="per-prompt target"):
        probes.Target("bad_shape", lambda b: b.xs, per="prompt")(batch)
    with pytest.raises(ValueError, match="per-example target"):
        probes.Target("bad_shape", lambda b: b.w, per="example")(batch)
    with pytest.raises(TypeError, match="batch"):
        probes.get("r")(batch.xs)


def test_resolve_callables(batch):
    per_prompt = probes.resolve(lambda b: b.w)
    assert tuple(per_prompt(batch).shape) == (B, D)
    per_example = probes.resolve(lambda b: b.xs * 2)
    assert tuple(per_example(batch).shape) == (B, N, D)
    with pytest.raises(TypeError, match="target"):
        probes.resolve(3)


def test_context_of_one_example():
    one = ICLBatch(torch.randn(2, 1, 3), torch.randn(2, 1), torch.randn(2, 3))
    assert torch.all(probes.get("r")(one) == 0)
    assert torch.all(probes.get("gd_step_2")(one) == 0)


def test_importable_without_transformer_lens():
    code = (
        "import sys, probes; from icl_interp.tools.probing import RidgeProbe; "
        "assert 'transformer_lens' not in sys.modules, 'transformer_lens was imported'"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr


def test_per_example_preprocessing_uses_the_prefix():
    import probes
    from icl_interp.core.tasks import SparseLinearRegression

    batch = SparseLinearRegression(d=3, s=1, noise_std=0.1).sample(2, 5, seed=0)
    got = probes.get("pre_reweight_all").fn(batch)
    assert got.shape == (2, 5, 3)
    i = 3
    r = (batch.xs[:, :i] * batch.ys[:, :i, None]).sum(1) / i
    assert torch.allclose(got[:, i], r * batch.xs[:, i], atol=1e-6)
    assert torch.equal(got[:, 0], torch.zeros(2, 3))  # no examples before the first: r = 0
