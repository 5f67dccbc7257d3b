"""The algorithm alone: does preprocess-then-optimize beat plain GD, ridge and Lasso (no model)?

What it shows: the excess risk over n of 3-step GD, 3-step PtO (tuned per n over the
`reweight`, `power(0.5)`, `power(2)` and `rank_one` preprocessings and the step size),
ridge, Lasso, OLS and the oracle on the true support, for sparse regression with
s = 2, d in {8, 16} and noise in {0, 0.5}: where the seed's theory says PtO should
win. Every method is tuned on held-out prompts for each n, then tested on 1,000
others; `pto_choice` records the preprocessing PtO chose at each n.

Run:   python recipes/algorithm.py --out DIR [--quick]
  or:  icl-interp recipe algorithm --out DIR [--quick]
Writes DIR/algorithm.png and DIR/algorithm.json. About 2 minutes here (--quick: one
setting, d = 8 and noise 0.5, 100 test prompts, about 4 s).
"""

from icl_interp.analysis import studies, study_plots
from icl_interp.analysis.recipes import recipe_arguments


def main(out, quick=False, device=None):
    # 1. The study: no model, only the baselines. One of its candidates by hand:
    #      ii.baselines.PreprocessThenOptimize("reweight", steps=3, lr=0.3).fit(xs, ys).predict(x_query)
    #    and the tuning: ii.baselines.tuning.best_pto(task, n_points, 3, preprocessings=[...]).
    result = studies.algorithm_study(dims=(8, 16), noises=(0.0, 0.5), s=2, steps=3, n_prompts=1000, quick=quick)

    # 2. The figure (one panel per setting) and the JSON.
    result["figure"] = study_plots.save_figure(study_plots.plot_algorithm_study(result), out, "algorithm.png")
    studies.save_json(result, out, "algorithm.json")

    # 3. What to look at: each method's excess risk at the largest n, and PtO's choices.
    for setting in result["settings"]:
        n_last = setting["n_points"] - 1
        print(f"d = {setting['d']}, s = {setting['s']}, noise {setting['noise_std']}: excess risk at n = {n_last}")
        for method, curve in setting["curves"].items():
            print(f"  {method:28s} {curve['excess_risk'][-1]:.3f}")
        print(f"  PtO chose: {sorted(set(setting['pto_choice'][1:]))}")
    return result


if __name__ == "__main__":
    args = recipe_arguments(__doc__)
    main(args.out, quick=args.quick, device=args.device)
