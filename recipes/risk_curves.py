"""Risk curves: the default model and its head-count siblings against the tuned baselines (the seed's Fig 1b).

What it shows: the error (squared error / s) for every number n of in-context
examples of the shipped default model (4 layers x 4 heads) and of the same recipe
trained with 1, 2 and 8 heads, next to OLS, ridge, Lasso, k-step GD and PtO (their
hyper-parameters tuned per n on held-out prompts), least squares on the true support
(the oracle) and averaging. Then the quality bar (at the largest n at most 0.85x the
best ridge's error and 1.15x the best Lasso's, below ridge for n >= d/2, below OLS for
n < d) and the claim `head_count_order`.

Run:   python recipes/risk_curves.py --out DIR [--quick]
  or:  icl-interp recipe risk_curves --out DIR [--quick]
Writes DIR/risk_curves.png and DIR/risk_curves.json (every plotted number). About 25 s
here, beside a training job (--quick, 200 prompts: about 8 s).
"""

import icl_interp as ii
from icl_interp.analysis import claims, studies, study_plots
from icl_interp.analysis.recipes import recipe_arguments


def main(out, quick=False, device=None):
    # 1. The models: `default` and its head-count siblings, as the zoo index declares them
    #    (icl_interp/zoo/index.json). Any dict label -> model works here.
    names = ii.zoo.siblings("default").head_counts or ("default",)
    models = {name: ii.load_model("zoo:" + name, device=device) for name in names}
    default = models["default"]
    task, n_points = default.task, default.cfg.max_points  # sparse regression d=8, s=2, noise 0.5; 16 examples

    # 2. The study: every model and every baseline on the same fresh prompts (seed 1).
    #    The baselines are tuned on other prompts (seed 10,000), separately for each n.
    result = studies.risk_study(models, task, n_points, n_prompts=2000, seed=1, quick=quick)

    # 3. The numbers the verdicts use, and the verdicts (icl_interp/analysis/claims/ holds the thresholds).
    result["quality_bar"] = claims.quality_bar(result, "default", task.d)
    result["head_counts"] = studies.head_count_summary(result, models)  # {heads: error at the largest n, mean over n}
    found = [claims.head_count_order(result["head_counts"])] if len(models) > 1 else []
    result["claims"] = [claim.to_dict() for claim in found]

    # 4. The figure (the transformers in black) and the JSON.
    fig = study_plots.plot_risk_study(result, highlight=list(models))
    result["figure"] = study_plots.save_figure(fig, out, "risk_curves.png")
    studies.save_json(result, out, "risk_curves.json")

    # 5. What to look at.
    bar = result["quality_bar"]
    print(f"default at n = {bar['n_largest']}: {bar['ratio_to_best_ridge_at_largest_n']:.2f}x the best ridge "
          f"(bar {claims.QUALITY_BAR_RIDGE_RATIO}x), {bar['ratio_to_best_lasso_at_largest_n']:.2f}x the best Lasso "
          f"(bar {claims.QUALITY_BAR_LASSO_RATIO}x); below ridge for n >= d/2: {bar['below_ridge_for_all_n_ge_d_half']}; "
          f"below OLS for every n < d: {bar['below_ols_for_all_n_lt_d']}; bar met: {bar['meets_bar']}")
    for heads, row in sorted(result["head_counts"].items()):
        print(f"  {heads} head(s): error {row['last']:.3f} at the largest n, {row['mean']:.3f} mean over n")
    print(*found, sep="\n")  # [verdict] id: the deciding numbers
    return result


if __name__ == "__main__":
    args = recipe_arguments(__doc__)
    main(args.out, quick=args.quick, device=args.device)
