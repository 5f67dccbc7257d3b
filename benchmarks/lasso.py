"""Per-prompt Lasso: ``icl_interp.baselines.estimators.Lasso`` (batched) vs scikit-learn ``Lasso`` looped over the prompts.

Both minimise ``1/(2n)||y - Xw||^2 + alpha ||w||_1`` without intercept, one problem per
prompt: 1,000 prompts of n = 40 examples in d = 20 (sparse regression, s = 3, noise 0.5).
scikit-learn (coordinate descent) runs on float64 arrays prepared once, ours on the
float64 tensors. Coefficients must agree within 1e-3. scikit-learn's default tol=1e-4
misses that (measured: up to 1.9e-3 off at alpha 0.001, where ours has a duality gap of
1e-14), so it runs with tol=1e-8; that costs it no measurable time, since a fit of this
size is dominated by its Python overhead (about 0.65 ms per fit here at any tol).

Then the whole grid of ``best_lasso``'s 8 alphas: ``lasso_path`` (one homotopy path per
prompt, every alpha read off on the way down) against ``Lasso(alpha)`` once per alpha,
and against scikit-learn looped over prompts and alphas. The last line is the grid ratio.

    .venv/bin/python benchmarks/lasso.py [--full]   # alphas 1, 0.1, 0.01 (--full: 10,000 prompts, best_lasso's 8 alphas)
"""

import _common as common
import numpy as np
import torch
from sklearn.linear_model import Lasso as SkLasso

import icl_interp as ii
from icl_interp.baselines.estimators import LASSO_ALPHAS, Lasso, lasso_path


def sklearn_loop(xs: np.ndarray, ys: np.ndarray, alpha: float) -> np.ndarray:
    """The usual way: one scikit-learn fit per prompt."""
    return np.stack([SkLasso(alpha=alpha, fit_intercept=False, tol=1e-8).fit(x, y).coef_ for x, y in zip(xs, ys)])


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    common.header("lasso")
    repeats = args.repeats or 3
    n_prompts = 10_000 if args.full else 1000
    alphas = LASSO_ALPHAS if args.full else (1.0, 0.1, 0.01)
    data = ii.SparseLinearRegression(d=20, s=3, noise_std=0.5).sample(n_prompts, 40, seed=0)
    xs, ys = data.xs.double(), data.ys.double()
    xs_np, ys_np = xs.numpy(), ys.numpy()
    total = {"ours": 0.0, "sklearn": 0.0}
    for alpha in alphas:
        times, out = common.compare(
            {"ours": lambda a=alpha: Lasso(a).fit(xs, ys).coef_, "sklearn": lambda a=alpha: sklearn_loop(xs_np, ys_np, a)},
            repeats,
        )
        common.check_close(f"alpha={alpha:g} coefficients", out["ours"], torch.from_numpy(out["sklearn"]), atol=1e-3)
        nnz = float((out["ours"] != 0).sum(1).double().mean())
        print(
            f"alpha={alpha:g} ({nnz:.1f} non-zero coefficients per prompt): ours {times['ours']}, "
            f"scikit-learn loop {times['sklearn']}: {times['sklearn'].cpu / times['ours'].cpu:.1f}x"
        )
        total = {k: total[k] + times[k].cpu for k in total}
    print(
        f"{n_prompts} prompts, n=40, d=20, the alphas {alphas} one by one: ours {total['ours']:.3g} s, scikit-learn {total['sklearn']:.3g} s"
    )
    grid = list(LASSO_ALPHAS)
    times, out = common.compare(
        {
            "path": lambda: lasso_path(xs, ys, grid),
            "separate": lambda: torch.stack([Lasso(a).fit(xs, ys).coef_ for a in grid]),
        },
        repeats,
    )
    common.check_close("lasso_path vs one Lasso per alpha", out["path"], out["separate"], atol=1e-9)
    sub = slice(0, n_prompts // 10)  # scikit-learn over the whole grid on a tenth of the prompts, scaled up
    sk_times, sk_out = common.compare({"sklearn": lambda: np.stack([sklearn_loop(xs_np[sub], ys_np[sub], a) for a in grid])}, 1)
    common.check_close("lasso_path vs scikit-learn (grid)", out["path"][:, sub], torch.from_numpy(sk_out["sklearn"]), atol=1e-3)
    sk_grid = common.Timing(10 * sk_times["sklearn"].cpu, 10 * sk_times["sklearn"].wall)
    print(
        f"the grid of best_lasso's {len(grid)} alphas: lasso_path {times['path']}, one Lasso per alpha {times['separate']} "
        f"({times['separate'].cpu / times['path'].cpu:.1f}x), scikit-learn loop ~{sk_grid.cpu:.3g} s "
        f"({sk_grid.cpu / times['path'].cpu:.0f}x; timed on {n_prompts // 10} prompts, scaled by 10)"
    )
    common.ratio("lasso (grid)", sk_grid, times["path"], "scikit-learn")


if __name__ == "__main__":
    main()
