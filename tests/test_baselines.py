"""Baseline estimators and the preprocessing family: agreement with scikit-learn and closed forms."""


import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Lasso as SkLasso
from sklearn.linear_model import Ridge as SkRidge

from icl_interp.baselines.estimators import (
    GD,
    OLS,
    Averaging,
    Lasso,
    OracleOLS,
    PreprocessThenOptimize,
    Ridge,
    lasso_path,
)
from icl_interp.baselines.preprocess import (
    Preprocessing,
    correlation,
    get_preprocessing,
    identity,
    power,
    rank_one,
    reweight,
)
from icl_interp.baselines.tuning import Tuned, best_gd, best_lasso, prefix_predictions, tune
from icl_interp.core.tasks import LinearRegression, SparseLinearRegression
from icl_interp.tools.evaluation import evaluate


def _data(b=20, n=30, d=10, noise=0.1, seed=0, sparse=True):
    gen = torch.Generator().manual_seed(seed)
    xs = torch.randn(b, n, d, generator=gen, dtype=torch.float64)
    w = torch.randn(b, d, generator=gen, dtype=torch.float64)
    if sparse:
        w = w * (torch.rand(b, d, generator=gen) < 0.3)
    ys = torch.einsum("bnd,bd->bn", xs, w) + noise * torch.randn(b, n, generator=gen, dtype=torch.float64)
    return xs, ys, w


def _all_estimators():
    return [
        OLS(),
        Ridge(0.5),
        Lasso(0.05),
        GD(3, 0.2),
        PreprocessThenOptimize("reweight", steps=2, lr=0.1),
        PreprocessThenOptimize("rank_one", steps=1, lr=0.5, c=0.3),
        OracleOLS(),
        Averaging(),
    ]


# -- agreement with scikit-learn and closed forms -------------------------------------------


@pytest.mark.parametrize("n", [30, 6])
@pytest.mark.parametrize("alpha", [1.0, 0.1, 0.01])
def test_lasso_matches_sklearn(n, alpha):
    xs, ys, _ = _data(n=n)
    ours = Lasso(alpha).fit(xs, ys).coef_.numpy()
    for b in range(len(xs)):
        ref = SkLasso(alpha=alpha, fit_intercept=False, tol=1e-12, max_iter=200_000)
        ref.fit(xs[b].numpy(), ys[b].numpy())
        np.testing.assert_allclose(ours[b], ref.coef_, atol=1e-3)


def test_lasso_small_alpha_well_posed_matches_sklearn():
    xs, ys, _ = _data(n=40, d=8, b=10)
    ours = Lasso(1e-4).fit(xs, ys).coef_.numpy()
    for b in range(len(xs)):
        ref = SkLasso(alpha=1e-4, fit_intercept=False, tol=1e-12, max_iter=200_000)
        ref.fit(xs[b].numpy(), ys[b].numpy())
        np.testing.assert_allclose(ours[b], ref.coef_, atol=1e-3)


@pytest.mark.parametrize("alpha", [10.0, 1.0, 0.01])
@pytest.mark.parametrize("n", [30, 5])
def test_ridge_matches_sklearn(n, alpha):
    xs, ys, _ = _data(n=n, sparse=False)
    ours = Ridge(alpha).fit(xs, ys).coef_.numpy()
    for b in range(len(xs)):
        ref = SkRidge(alpha=alpha, fit_intercept=False).fit(xs[b].numpy(), ys[b].numpy())
        np.testing.assert_allclose(ours[b], ref.coef_, atol=1e-3)


@pytest.mark.parametrize("n", [40, 6, 1])
def test_lasso_path_equals_separate_fits_and_sklearn(n):
    """One homotopy path per prompt gives every alpha's solution, in the order asked for."""
    xs, ys, _ = _data(n=n)
    alphas = [0.01, 1.0, 0.1, 1e-4, 0.1, 50.0]
    path = lasso_path(xs, ys, alphas)
    assert path.shape == (len(alphas), xs.shape[0], xs.shape[2]) and path.dtype == xs.dtype
    for a, coef in zip(alphas, path):
        assert torch.allclose(coef, Lasso(a).fit(xs, ys).coef_, atol=1e-9)
    assert (path[-1] == 0).all()  # above max |X^T y| / n the solution is zero
    ref = SkLasso(alpha=0.1, fit_intercept=False, tol=1e-12, max_iter=200_000).fit(xs[0].numpy(), ys[0].numpy())
    np.testing.assert_allclose(path[2, 0].numpy(), ref.coef_, atol=1e-3)


def test_best_lasso_validation_errors_equal_the_per_alpha_loop():
    task = SparseLinearRegression(d=6, s=2, noise_std=0.5)
    tuned = best_lasso(task, 10, n_prompts=200, seed=5)
    batch = task.sample(200, 10, seed=5)
    for key, est in tuned.candidates.items():
        loop = ((prefix_predictions(est, batch) - batch.ys).double() ** 2 / task.norm).mean(0)
        assert torch.allclose(torch.tensor(tuned.val_error[key], dtype=torch.float64), loop, rtol=1e-5, atol=1e-7), key


def test_lasso_on_a_large_batch_matches_sklearn_per_prompt():
    """1,000 prompts in one batched call (speed is measured in benchmarks/lasso.py, not here)."""
    batch = SparseLinearRegression(d=20, s=3, noise_std=0.5).sample(1000, 40, seed=0)
    coef = Lasso(0.01).fit(batch.xs, batch.ys).coef_
    for i in (0, 321, 999):
        sk = SkLasso(alpha=0.01, fit_intercept=False, tol=1e-10, max_iter=100_000).fit(batch.xs[i].double().numpy(), batch.ys[i].double().numpy())
        assert np.allclose(coef[i].numpy(), sk.coef_, atol=1e-3)


def test_ols_is_exact_without_noise_when_n_ge_d():
    xs, ys, w = _data(n=12, d=10, noise=0.0, sparse=False)
    torch.testing.assert_close(OLS().fit(xs, ys).coef_, w, atol=1e-8, rtol=0)


def test_ols_is_minimum_norm_when_n_lt_d():
    xs, ys, _ = _data(n=4, d=10)
    coef = OLS().fit(xs, ys).coef_.numpy()
    for b in range(len(xs)):
        np.testing.assert_allclose(coef[b], np.linalg.pinv(xs[b].numpy()) @ ys[b].numpy(), atol=1e-8)
    torch.testing.assert_close(torch.einsum("bnd,bd->bn", xs, torch.tensor(coef)), ys)  # interpolates


def test_gd_steps_match_the_closed_form():
    xs, ys, _ = _data(n=8, d=5)
    n, lr = xs.shape[1], 0.3
    c = torch.einsum("bnd,bn->bd", xs, ys) / n
    torch.testing.assert_close(GD(1, lr).fit(xs, ys).coef_, lr * c)
    w1 = lr * c
    w2 = w1 - lr * (torch.einsum("bnd,bne,be->bd", xs, xs, w1) / n - c)
    torch.testing.assert_close(GD(2, lr).fit(xs, ys).coef_, w2)
    torch.testing.assert_close(Averaging().fit(xs, ys).coef_, c)
    assert (GD(0, lr).fit(xs, ys).coef_ == 0).all()


def test_oracle_excess_risk_matches_theory():
    sigma, s = 0.5, 2
    task = SparseLinearRegression(d=6, s=s, noise_std=sigma)
    res = evaluate(OracleOLS(), task, n_points=16, n_prompts=4000, seed=0, bootstrap=200)
    k = torch.arange(5, 16, dtype=torch.float64)
    theory = sigma**2 * s / (k - s - 1) / task.norm  # excess MSE sigma^2 s / (n - s - 1), normalised
    emp = res.excess_risk[5:]
    assert 0.85 < float(emp.sum() / theory.sum()) < 1.15
    assert ((emp - theory).abs() < 2 * (res.error_high - res.error_low)[5:]).all()


def test_oracle_uses_given_support_or_w():
    xs, ys, w = _data(n=10, d=6, noise=0.0)
    torch.testing.assert_close(OracleOLS().fit(xs, ys, w).coef_, w, atol=1e-8, rtol=0)
    support = torch.zeros(6, dtype=torch.bool)
    support[:2] = True
    coef = OracleOLS(support).fit(xs, ys).coef_
    assert (coef[:, 2:] == 0).all()
    with pytest.raises(ValueError, match="w"):
        OracleOLS().fit(xs, ys)
    with pytest.raises(ValueError, match="support"):
        OracleOLS(torch.ones(5, dtype=torch.bool)).fit(xs, ys)
    with pytest.raises(TypeError, match="support"):
        OracleOLS(torch.ones(6))


# -- preprocessing and PtO ----------------------------------------------------------------


def test_pto_with_identity_equals_gd():
    xs, ys, _ = _data(n=9, d=4)
    query = torch.randn(len(xs), 3, 4, dtype=torch.float64)
    pto = PreprocessThenOptimize("identity", steps=3, lr=0.2).fit(xs, ys)
    gd = GD(3, 0.2).fit(xs, ys)
    torch.testing.assert_close(pto.coef_, gd.coef_)
    torch.testing.assert_close(pto.predict(query), gd.predict(query))


def test_pto_reweight_predicts_in_the_preprocessed_space():
    xs, ys, _ = _data(n=9, d=4)
    query = torch.randn(len(xs), 4, dtype=torch.float64)
    pto = PreprocessThenOptimize("reweight", steps=1, lr=0.5).fit(xs, ys)
    r = correlation(xs, ys)
    manual = GD(1, 0.5).fit(r[:, None, :] * xs, ys)
    torch.testing.assert_close(pto.coef_, manual.coef_)
    torch.testing.assert_close(pto.predict(query), manual.predict(r * query))


def test_pto_accepts_a_user_callable():
    def doubled(xs_context, ys_context, x):
        return 2 * x

    xs, ys, _ = _data(n=7, d=3)
    pto = PreprocessThenOptimize(doubled, steps=1, lr=0.25).fit(xs, ys)
    torch.testing.assert_close(pto.coef_, GD(1, 1.0).fit(xs, ys).coef_ * 0.5)
    with pytest.raises(ValueError, match="params"):
        PreprocessThenOptimize(doubled, c=1.0)
    with pytest.raises(ValueError, match="shape"):
        PreprocessThenOptimize(lambda a, b, x: x[:, :1], steps=1).fit(xs, ys)


def test_preprocessing_formulas():
    xs, ys, _ = _data(b=3, n=6, d=4)
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    r = torch.einsum("bnd,bn->bd", xs, ys) / 6
    torch.testing.assert_close(correlation(xs, ys), r)
    torch.testing.assert_close(identity(xs, ys, x), x)
    torch.testing.assert_close(reweight(xs, ys, x), r[:, None] * x)
    torch.testing.assert_close(power(2.0)(xs, ys, x), r[:, None].abs() ** 2 * x)
    dot = torch.einsum("bmd,bd->bm", x, r)
    torch.testing.assert_close(rank_one(0.7)(xs, ys, x), x + 0.7 * dot[..., None] * r[:, None])
    assert get_preprocessing("power", p=2.0) == power(2.0)
    assert (correlation(xs[:, :0], ys[:, :0]) == 0).all()


@pytest.mark.parametrize(
    "make, error, word",
    [
        (lambda: get_preprocessing("nope"), ValueError, "name"),
        (lambda: get_preprocessing("power", q=1.0), ValueError, "q"),
        (lambda: power(-1.0), ValueError, "p"),
        (lambda: rank_one("big"), TypeError, "c"),
        (lambda: Preprocessing("reweight", [1]), TypeError, "params"),
        (lambda: identity(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 1, 3)), ValueError, "xs_cont"),
        (lambda: identity(torch.zeros(2, 3, 4), torch.zeros(2, 3), torch.zeros(2, 1, 5)), ValueError, "x"),
    ],
)
def test_preprocessing_validation(make, error, word):
    with pytest.raises(error, match=word):
        make()


# -- tuning and prefix predictions ------------------------------------------------------------


def test_prefix_predictions_match_fits_on_prefixes():
    batch = SparseLinearRegression(d=4, s=2, noise_std=0.1).sample(6, 7, seed=1)
    for est in (Ridge(0.3), Lasso(0.05), OracleOLS()):
        preds = prefix_predictions(est, batch)
        assert (preds[:, 0] == 0).all()
        for k in (1, 4, 6):
            fitted = type(est)(**vars(est)).fit(batch.xs[:, :k], batch.ys[:, :k], batch.w)
            torch.testing.assert_close(preds[:, k], fitted.predict(batch.xs[:, k]))
    assert not hasattr(Ridge(0.3), "coef_")


def test_tuned_picks_the_best_candidate_per_k():
    task = LinearRegression(d=3, noise_std=0.0)
    tuned = tune({"zero": GD(0, 0.1), "ols": OLS()}, task, n_points=8, n_prompts=50, seed=11)
    assert isinstance(tuned, Tuned) and len(tuned.choice) == 8
    assert tuned.choice[0] == "zero"  # a tie at k = 0: the first candidate
    assert tuned.choice[4:] == ["ols"] * 4  # OLS is exact once k >= d
    for k, name in enumerate(tuned.choice):
        errs = {key: tuned.val_error[key][k] for key in tuned.val_error}
        assert errs[name] == min(errs.values())
    batch = task.sample(5, 8, seed=0)
    preds = prefix_predictions(tuned, batch)
    torch.testing.assert_close(preds[:, 5:], batch.ys[:, 5:], atol=1e-4, rtol=0)
    assert tuned.fit(batch.xs[:, :6], batch.ys[:, :6]).best_.__class__ is OLS


def test_best_constructors_run_and_choose_sensible_values():
    task = SparseLinearRegression(d=4, s=1, noise_std=0.1)
    lasso = best_lasso(task, 9, n_prompts=40)
    assert lasso.name == "best lasso" and len(lasso.candidates) >= 5
    gd = best_gd(task, 9, steps=2, n_prompts=40)
    assert all(name.startswith("gd2_") for name in gd.choice)


def test_diverging_candidates_are_not_chosen():
    task = LinearRegression(d=3)
    tuned = tune({"boom": GD(50, 50.0), "gd": GD(1, 0.5)}, task, n_points=6, n_prompts=20)
    assert tuned.choice[1:] == ["gd"] * 5


# -- shapes, edge cases, validation -------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(0, 6), st.integers(1, 5), st.integers(1, 3), st.integers(0, 99))
def test_fit_predict_shapes_and_finiteness(b, n, d, m, seed):
    xs, ys, w = _data(b=b, n=n, d=d, seed=seed)
    xs, ys = xs.float(), ys.float()
    query = torch.randn(b, m, d)
    for est in _all_estimators():
        est.fit(xs, ys, w.float())
        assert est.coef_.shape == (b, d) and est.coef_.dtype == torch.float32
        out, single = est.predict(query), est.predict(query[:, 0])
        assert out.shape == (b, m) and single.shape == (b,)
        assert torch.isfinite(out).all(), est
        torch.testing.assert_close(single, out[:, 0])
        if n == 0:
            assert (out == 0).all(), est


def _fitted_ols():
    return OLS().fit(torch.zeros(2, 3, 4), torch.zeros(2, 3))


@pytest.mark.parametrize(
    "call, error, word",
    [
        (lambda: OLS().fit(torch.zeros(2, 3), torch.zeros(2, 3)), ValueError, "xs"),
        (lambda: OLS().fit(torch.zeros(2, 3, 4), torch.zeros(2, 4)), ValueError, "ys"),
        (lambda: OLS().fit(np.zeros((2, 3, 4)), torch.zeros(2, 3)), TypeError, "xs"),
        (lambda: OLS().fit(torch.full((2, 3, 4), float("nan")), torch.zeros(2, 3)), ValueError, "xs"),
        (lambda: OLS().fit(torch.zeros(2, 3, 4, dtype=torch.long), torch.zeros(2, 3)), TypeError, "xs"),
        (lambda: OLS().predict(torch.zeros(2, 4)), RuntimeError, "fit"),
        (lambda: _fitted_ols().predict(torch.zeros(2, 5)), ValueError, "x"),
        (lambda: _fitted_ols().predict(torch.zeros(3, 4)), ValueError, "x"),
        (lambda: Ridge(-1.0), ValueError, "alpha"),
        (lambda: Ridge(0.0), ValueError, "alpha"),
        (lambda: Lasso(0.1, max_iter=0), ValueError, "max_iter"),
        (lambda: lasso_path(torch.zeros(2, 3, 4), torch.zeros(2, 3), []), ValueError, "alphas"),
        (lambda: lasso_path(torch.zeros(2, 3, 4), torch.zeros(2, 3), [0.1, -1.0]), ValueError, "alphas"),
        (lambda: lasso_path(torch.zeros(2, 3, 4), torch.zeros(2, 4), [0.1]), ValueError, "ys"),
        (lambda: GD(1.5, 0.1), TypeError, "steps"),
        (lambda: GD(1, -0.1), ValueError, "lr"),
        (lambda: PreprocessThenOptimize("nope"), ValueError, "name"),
        (lambda: tune({}, LinearRegression(d=2), 3), ValueError, "candidates"),
        (lambda: tune({"a": "OLS"}, LinearRegression(d=2), 3), TypeError, "candidates"),
        (lambda: prefix_predictions(OLS(), torch.zeros(2, 3, 4)), TypeError, "batch"),
    ],
)
def test_bad_input_raises(call, error, word):
    with pytest.raises(error, match=word):
        call()
