"""Risk curves: definitions of error and excess risk, model calling conventions, serialisation, plots."""

import json

import pytest
import torch

from icl_interp.baselines.estimators import OLS, Averaging, Ridge
from icl_interp.core.tasks import LinearRegression, SparseLinearRegression
from icl_interp.tools.evaluation import EvalResult, evaluate, model_predictions
from icl_interp.tools.plotting import plot_head_importance, plot_risk_curves

TASK = SparseLinearRegression(d=5, s=2, noise_std=0.3)


def _averaging_model(xs, ys):
    """A "model" returning [B, n]: the averaging estimator on every prefix, written by hand."""
    b, n, d = xs.shape
    sums = torch.cumsum(xs * ys[..., None], dim=1)
    sums = torch.cat([torch.zeros(b, 1, d), sums[:, :-1]], dim=1)
    counts = torch.arange(n).clamp_min(1).view(1, n, 1)
    return ((sums / counts) * xs).sum(-1)


def _averaging_query_only(xs, ys):
    """The same model returning [B]: the prediction of the last y from the n - 1 before it."""
    return _averaging_model(xs, ys)[:, -1]


def test_evaluate_baseline_matches_hand_computation():
    res = evaluate(Averaging(), TASK, n_points=6, n_prompts=50, seed=3, bootstrap=100)
    batch = TASK.sample(50, 6, seed=3)
    preds = torch.zeros(50, 6)
    for k in range(1, 6):
        w = (batch.xs[:, :k] * batch.ys[:, :k, None]).mean(1)
        preds[:, k] = (w * batch.xs[:, k]).sum(-1)
    per_prompt = (preds - batch.ys) ** 2 / 2  # norm = s = 2
    torch.testing.assert_close(res.per_prompt, per_prompt.double(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.error, per_prompt.double().mean(0), atol=1e-5, rtol=1e-5)
    assert res.n_context.tolist() == list(range(6))
    torch.testing.assert_close(res.error[0], (batch.ys[:, 0].double() ** 2).mean() / 2)


def test_model_curves_agree_for_both_conventions_and_with_the_baseline():
    kw = dict(n_points=6, n_prompts=40, seed=1, bootstrap=50)
    full = evaluate(_averaging_model, TASK, **kw)
    query = evaluate(_averaging_query_only, TASK, **kw)
    base = evaluate(Averaging(), TASK, **kw)
    torch.testing.assert_close(full.per_prompt, query.per_prompt)
    torch.testing.assert_close(full.error, base.error, atol=1e-5, rtol=1e-5)
    assert full.name == "_averaging_model"


class _Module(torch.nn.Module):
    """A tiny nn.Module "model" predicting with a learnable scale (to check no_grad and eval mode)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.seen = []

    def forward(self, xs, ys):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return self.scale * _averaging_model(xs, ys)


def test_module_is_called_in_eval_mode_without_grad_and_restored():
    model = _Module().train()
    res = evaluate(model, TASK, n_points=5, n_prompts=10, batch_size=4, bootstrap=0)
    assert model.seen and all(s == (False, False) for s in model.seen)
    assert model.training
    assert res.name == "_Module" and not res.per_prompt.requires_grad


def test_result_does_not_depend_on_batch_size():
    a = evaluate(Ridge(0.1), TASK, n_points=5, n_prompts=30, batch_size=7, bootstrap=0)
    b = evaluate(Ridge(0.1), TASK, n_points=5, n_prompts=30, batch_size=30, bootstrap=0)
    torch.testing.assert_close(a.per_prompt, b.per_prompt)


def test_excess_is_error_minus_noise_floor_and_intervals_contain_the_mean():
    task = LinearRegression(d=4, noise_std=0.5)
    res = evaluate(OLS(), task, n_points=9, n_prompts=200, seed=0, bootstrap=300)
    floor = 0.25 / 4
    torch.testing.assert_close(res.excess_risk, res.error - floor)
    torch.testing.assert_close(res.excess_low, res.error_low - floor)
    torch.testing.assert_close(res.excess_high, res.error_high - floor)
    assert ((res.error_low <= res.error) & (res.error <= res.error_high)).all()
    assert (res.error_low < res.error_high).all()
    assert res.meta["noise_floor"] == pytest.approx(floor)
    again = evaluate(OLS(), task, n_points=9, n_prompts=200, seed=0, bootstrap=300)
    torch.testing.assert_close(res.error_low, again.error_low)  # the bootstrap is seeded


def test_to_dict_from_dict_round_trip():
    res = evaluate(Averaging(), TASK, n_points=4, n_prompts=8, bootstrap=20, name="avg")
    data = json.loads(json.dumps(res.to_dict()))
    back = EvalResult.from_dict(data)
    assert back.name == "avg" and back.meta == res.meta
    for key in ("n_context", "error", "excess_risk", "error_low", "error_high", "excess_low", "excess_high"):
        assert torch.equal(getattr(back, key), getattr(res, key)), key
    assert torch.equal(back.per_prompt, res.per_prompt)
    assert EvalResult.from_dict(res.to_dict(per_prompt=False)).per_prompt is None
    with pytest.raises(ValueError, match="error"):
        EvalResult.from_dict({"name": "x", "n_context": [0]})


def test_plot_risk_curves_returns_a_figure():
    from matplotlib.figure import Figure

    a = evaluate(Averaging(), TASK, n_points=5, n_prompts=10, bootstrap=20)
    b = evaluate(OLS(), TASK, n_points=5, n_prompts=10, bootstrap=20)
    fig = plot_risk_curves([a, b])
    assert isinstance(fig, Figure)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [a.name, b.name]
    fig2 = plot_risk_curves({"avg": a}, ax=fig.axes[0], quantity="excess_risk", log=False)
    assert fig2 is fig
    with pytest.raises(ValueError, match="quantity"):
        plot_risk_curves([a], quantity="mse")
    with pytest.raises(TypeError, match="EvalResult"):
        plot_risk_curves([a.to_dict()])


def test_plot_head_importance_returns_a_figure():
    from matplotlib.figure import Figure

    fig = plot_head_importance(torch.tensor([[0.5, 0.2, 0.9], [0.1, 0.0, 0.3]]), title="ablation")
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "ablation"
    assert len(fig.axes[0].texts) == 6
    with pytest.raises(ValueError, match="importance"):
        plot_head_importance(torch.zeros(3))


@pytest.mark.parametrize(
    "call, error, word",
    [
        (lambda: evaluate(OLS(), "task"), TypeError, "task"),
        (lambda: evaluate(OLS(), TASK, n_points=0), ValueError, "n_points"),
        (lambda: evaluate(OLS(), TASK, n_prompts=1.5), TypeError, "n_prompts"),
        (lambda: evaluate(OLS(), TASK, bootstrap=-1), ValueError, "bootstrap"),
        (lambda: evaluate(42, TASK), TypeError, "predictor"),
        (lambda: evaluate(lambda xs, ys: xs, TASK, n_points=3, n_prompts=2), ValueError, "model output"),
        (lambda: evaluate(lambda xs, ys: [0.0], TASK, n_points=3, n_prompts=2), TypeError, "model"),
    ],
)
def test_bad_arguments_raise(call, error, word):
    with pytest.raises(error, match=word):
        call()


def test_model_predictions_directly():
    batch = TASK.sample(3, 4, seed=0)
    preds = model_predictions(_averaging_query_only, batch)
    assert preds.shape == (3, 4) and preds.dtype == torch.float64
    assert (preds[:, 0] == 0).all()


def test_ratio_interval_is_exact_for_a_planted_ratio_and_matches_the_delta_method():
    """A model 1.1x the baseline on every prompt: no spread. Independent noise: the delta method's width (oracle)."""
    from icl_interp.tools.evaluation import ratio_interval

    gen = torch.Generator().manual_seed(0)
    base = torch.rand(500, generator=gen, dtype=torch.float64) + 0.1
    low, high = ratio_interval(1.1 * base, base)
    assert low == pytest.approx(1.1) and high == pytest.approx(1.1)
    n = 4000
    num = torch.distributions.Exponential(torch.tensor(1.0 / 1.2, dtype=torch.float64)).sample((n,))
    den = torch.distributions.Exponential(torch.tensor(1.0, dtype=torch.float64)).sample((n,))
    r = num.mean() / den.mean()
    # delta method for a ratio of two independent means: var(r) = r^2 (var(x)/(n mx^2) + var(y)/(n my^2))
    se = float(r * torch.sqrt(num.var() / (n * num.mean() ** 2) + den.var() / (n * den.mean() ** 2)))
    low, high = ratio_interval(num, den, n_boot=4000, seed=3)
    assert low < float(r) < high
    assert (high - low) / 2 == pytest.approx(1.6449 * se, rel=0.1)    # a 90% interval's half width
    with pytest.raises(ValueError, match="denominator"):
        ratio_interval(num, den[:10])
