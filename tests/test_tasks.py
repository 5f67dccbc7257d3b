"""Tasks: seeding, sparsity, curriculum masking, covariance and prior options, validation."""

import pytest
import torch

from icl_interp.core.tasks import Curriculum, ICLBatch, LinearRegression, SparseLinearRegression, task_from_dict


def test_same_seed_same_batch_and_different_seeds_differ():
    task = SparseLinearRegression(d=6, s=2, noise_std=0.3)
    a, b, c = (task.sample(4, 5, seed=s) for s in (3, 3, 4))
    for x, y in ((a.xs, b.xs), (a.ys, b.ys), (a.w, b.w)):
        assert torch.equal(x, y)
    assert not torch.equal(a.xs, c.xs) and not torch.equal(a.w, c.w)


def test_shapes_and_targets_follow_w():
    batch = LinearRegression(d=4).sample(3, 7, seed=0)
    assert isinstance(batch, ICLBatch)
    assert batch.xs.shape == (3, 7, 4) and batch.ys.shape == (3, 7) and batch.w.shape == (3, 4)
    torch.testing.assert_close(batch.ys, torch.einsum("bnd,bd->bn", batch.xs, batch.w))


def test_sparse_support_has_exactly_s_nonzeros_within_active_dims():
    task = SparseLinearRegression(d=10, s=3)
    batch = task.sample(200, 2, seed=1, active_dims=6)
    assert ((batch.w != 0).sum(1) == 3).all()
    assert (batch.w[:, 6:] == 0).all()
    assert (batch.w[:, :6] != 0).any(0).all()  # every active coordinate is used by some prompt


def test_active_dims_zeroes_x_and_w_past_it():
    batch = LinearRegression(d=8).sample(5, 6, seed=2, active_dims=3)
    assert (batch.xs[..., 3:] == 0).all() and (batch.w[:, 3:] == 0).all()
    assert (batch.xs[..., :3] != 0).all()


def test_x_cov_gives_the_empirical_covariance():
    cov = [[2.0, 0.8, 0.0], [0.8, 1.0, -0.3], [0.0, -0.3, 0.5]]
    xs = LinearRegression(d=3, x_cov=cov).sample(400, 50, seed=3).xs.reshape(-1, 3)
    torch.testing.assert_close(xs.T @ xs / len(xs), torch.tensor(cov), atol=0.05, rtol=0.0)


def test_w_mean_shifts_the_mean_of_w():
    w = LinearRegression(d=3, w_mean=[1.0, -2.0, 0.5], w_std=0.1).sample(2000, 1, seed=4).w
    torch.testing.assert_close(w.mean(0), torch.tensor([1.0, -2.0, 0.5]), atol=0.01, rtol=0.0)
    assert 0.08 < float(w.std(0).mean()) < 0.12


def test_x_local_correlates_the_inputs_of_a_prompt_and_keeps_each_standard():
    xs = LinearRegression(d=3, x_local=0.75).sample(4000, 5, seed=6).xs
    flat = xs.reshape(-1, 3)
    torch.testing.assert_close(flat.T @ flat / len(flat), torch.eye(3), atol=0.05, rtol=0.0)   # each input N(0, I)
    for i, j in ((0, 1), (0, 4), (3, 4)):   # any two points of a prompt (the query, the last, included): correlation 0.75
        assert abs(float((xs[:, i] * xs[:, j]).mean()) - 0.75) < 0.04
    between = float((xs[:-1, 0] * xs[1:, 0]).mean())   # across prompts: independent
    assert abs(between) < 0.04


def test_x_local_zero_is_the_plain_task_and_local_examples_lie_closer():
    plain, zero = LinearRegression(d=4, noise_std=0.1), LinearRegression(d=4, noise_std=0.1, x_local=0.0)
    assert torch.equal(plain.sample(3, 6, seed=1).xs, zero.sample(3, 6, seed=1).xs) and "x_local" not in zero.to_dict()
    local = LinearRegression(d=4, x_local=0.75).sample(2000, 2, seed=2).xs
    gap = float(((local[:, 0] - local[:, 1]) ** 2).sum(-1).mean())
    assert abs(gap - 2 * 4 * 0.25) < 0.15     # E|x_i - x_j|^2 = 2 d (1 - a): a quarter of the plain task's 2 d


def test_noise_adds_the_given_variance():
    batch = LinearRegression(d=2, noise_std=0.5).sample(500, 20, seed=5)
    resid = batch.ys - torch.einsum("bnd,bd->bn", batch.xs, batch.w)
    assert abs(float(resid.var()) - 0.25) < 0.02


@pytest.mark.parametrize(
    "make, error, word",
    [
        (lambda: SparseLinearRegression(d=3, s=4), ValueError, "s"),
        (lambda: LinearRegression(d=3, noise_std=-0.1), ValueError, "noise_std"),
        (lambda: LinearRegression(d=2.5), TypeError, "d"),
        (lambda: LinearRegression(d=0), ValueError, "d"),
        (lambda: LinearRegression(d=2, noise_std="big"), TypeError, "noise_std"),
        (lambda: LinearRegression(d=2, x_cov=[[1.0, 2.0], [2.0, 1.0]]), ValueError, "x_cov"),
        (lambda: LinearRegression(d=2, w_mean=[1.0, 2.0, 3.0]), ValueError, "w_mean"),
        (lambda: LinearRegression(d=2, x_local=1.0), ValueError, "x_local"),
        (lambda: LinearRegression(d=2, x_local=-0.1), ValueError, "x_local"),
        (lambda: LinearRegression(d=2, x_local="near"), TypeError, "x_local"),
        (lambda: LinearRegression(d=2).sample(0, 3), ValueError, "batch_size"),
        (lambda: LinearRegression(d=2).sample(2, True), TypeError, "n_points"),
        (lambda: LinearRegression(d=2).sample(2, 3, active_dims=3), ValueError, "active_dims"),
        (lambda: SparseLinearRegression(d=5, s=3).sample(2, 3, active_dims=2), ValueError, "active_dims"),
        (lambda: LinearRegression(d=2).sample(2, 3, seed=-1), ValueError, "seed"),
        (lambda: Curriculum(5, 3, 10, 20), ValueError, "dims_start"),
        (lambda: Curriculum(2, 3, 10, 20).at(-1), ValueError, "step"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(make, error, word):
    with pytest.raises(error, match=word):
        make()


def test_batch_validation_names_the_tensor():
    with pytest.raises(ValueError, match="ys"):
        ICLBatch(torch.zeros(2, 3, 4), torch.zeros(2, 4), torch.zeros(2, 4))


def test_truncate_and_index():
    batch = LinearRegression(d=3).sample(4, 6, seed=0)
    short = batch.truncate(2)
    assert short.xs.shape == (4, 2, 3) and torch.equal(short.w, batch.w)
    assert batch[1:3].batch_size == 2 and batch[0].batch_size == 1


@pytest.mark.parametrize("task", [SparseLinearRegression(d=5, s=2, noise_std=0.1, w_mean=[0.0] * 5),
                                  LinearRegression(d=3, noise_std=0.1, x_local=0.5, x_cov=[[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])])
def test_task_round_trips_through_dict(task):
    again = task_from_dict(task.to_dict())
    assert again.to_dict() == task.to_dict()
    assert torch.equal(again.sample(2, 3, seed=7).ys, task.sample(2, 3, seed=7).ys)


def test_curriculum_at():
    cur = Curriculum(5, 8, 11, 15, dims_every=100, points_every=50)
    assert cur.at(0) == (5, 11)
    assert cur.at(49) == (5, 11)
    assert cur.at(99) == (5, 13)
    assert cur.at(100) == (6, 15)
    assert cur.at(250) == (7, 15)
    assert cur.at(10_000) == (8, 15)
    assert Curriculum.constant(4, 9).at(123_456) == (4, 9)
