"""Property tests (hypothesis) over task shapes and parameters, masks and pruning."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from icl_interp.core.tasks import LinearRegression, SparseLinearRegression
from icl_interp.tools.importance import prune_heads
from icl_interp.tools.masking import check_mask

pytestmark = pytest.mark.tl3


@settings(max_examples=40, deadline=None)
@given(
    d=st.integers(1, 12), s_frac=st.floats(0.01, 1.0), b=st.integers(1, 6), n=st.integers(1, 9),
    noise=st.floats(0.0, 2.0), seed=st.integers(0, 2**31), active_frac=st.floats(0.0, 1.0),
)
def test_sparse_task_sampling_properties(d, s_frac, b, n, noise, seed, active_frac):
    s = max(1, int(round(s_frac * d)))
    active = max(s, int(round(active_frac * d)))
    task = SparseLinearRegression(d=d, s=s, noise_std=noise)
    batch = task.sample(b, n, seed=seed, active_dims=active)
    assert batch.xs.shape == (b, n, d) and batch.ys.shape == (b, n) and batch.w.shape == (b, d)
    assert torch.isfinite(batch.xs).all() and torch.isfinite(batch.ys).all()
    assert ((batch.w != 0).sum(1) <= s).all()  # exactly s draws; a drawn 0.0 is measure-zero
    assert (batch.w[:, active:] == 0).all() and (batch.xs[..., active:] == 0).all()
    again = task.sample(b, n, seed=seed, active_dims=active)
    assert torch.equal(again.xs, batch.xs) and torch.equal(again.ys, batch.ys)
    if noise == 0:
        assert torch.allclose(batch.ys, torch.einsum("bnd,bd->bn", batch.xs, batch.w), atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(d=st.integers(1, 6), mean=st.floats(-3, 3), seed=st.integers(0, 1000))
def test_dense_task_prior_mean(d, mean, seed):
    batch = LinearRegression(d=d, w_mean=[mean] * d, w_std=0.0).sample(3, 2, seed=seed)
    assert torch.allclose(batch.w, torch.full((3, d), mean))


@settings(max_examples=50, deadline=None)
@given(
    layers=st.integers(1, 5), heads=st.integers(1, 6), k=st.integers(0, 6), seed=st.integers(0, 1000),
)
def test_prune_keeps_the_top_k_per_layer(layers, heads, k, seed):
    imp = torch.rand(layers, heads, generator=torch.Generator().manual_seed(seed))
    k = min(k, heads)
    mask = prune_heads(imp, keep=k)
    assert check_mask(mask, layers, heads, stack=False).shape == (layers, heads)
    assert (mask.sum(1) == k).all()
    for l in range(layers):  # every kept head is at least as important as every dropped one
        kept, dropped = imp[l][mask[l] == 1], imp[l][mask[l] == 0]
        if len(kept) and len(dropped):
            assert kept.min() >= dropped.max()
    total = prune_heads(imp, keep_total=min(k, layers * heads))
    assert int(total.sum()) == min(k, layers * heads)


@settings(max_examples=50, deadline=None)
@given(layers=st.integers(1, 4), heads=st.integers(1, 4), kk=st.integers(1, 3), lo=st.floats(-1, 2), hi=st.floats(-1, 2))
def test_mask_validation_accepts_exactly_unit_interval(layers, heads, kk, lo, hi):
    mask = torch.empty(kk, layers, heads).uniform_(0, 1)
    mask[0, 0, 0] = lo
    mask[-1, -1, -1] = hi
    lo, hi = float(mask[0, 0, 0]), float(mask[-1, -1, -1])  # as stored in float32 (e.g. -1e-263 becomes -0.0)
    if 0 <= lo <= 1 and 0 <= hi <= 1:
        assert check_mask(mask, layers, heads).shape == (kk, layers, heads)
    else:
        with pytest.raises(ValueError, match="mask"):
            check_mask(mask, layers, heads)
