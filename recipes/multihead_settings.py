"""The second seed (Cui et al. 2024) in its other settings: noisy labels, correlated features, local examples, a prior.

What it shows: for each setting (the base task d = 4, noise 0.1, with one change; the
definitions are ours, in the README and `icl_interp/training/presets.py`), one-layer softmax
models from the zoo, single- and multi-head at p/h >= d and p/h < d, each excess-risk
curve over D = 8..40 fitted by c / D + e. The seed predicts that multi-head attention is
preferred in general (claims `seed2_noisy`, `seed2_correlated`, `seed2_local`, with
`_narrow` twins for p/h < d), and that with a prior mean theta_0 it learns theta_0 and
beats single-head when the prior is strong (`seed2_prior_strong`) but learns theta_0
no better than single-head when it is weak (`seed2_prior_weak`). Whether a model has
learned theta_0 is read from one example (D = 1 < d, where the context cannot pin w
down): u, the model's predictions fitted on x_q over the prompts, against theta_0.

Run:   python recipes/multihead_settings.py --out DIR [--quick]
  or:  icl-interp recipe multihead_settings --out DIR [--quick]
Writes DIR/multihead_settings.png and DIR/multihead_settings.json. About 23 s here (--quick: 9 s).
"""

import icl_interp as ii
from icl_interp.analysis import claims, studies, study_plots
from icl_interp.analysis.recipes import recipe_arguments


def main(out, quick=False, device=None):
    # 1. The models: each setting's set, as the zoo index declares it (a setting only when all its models are there).
    sets = ii.zoo.siblings("default").second_seed_settings
    if not sets:
        raise ValueError("the multihead_settings recipe needs the softmax-<setting>-p*-h* zoo models: icl-interp train --preset NAME")
    settings = {setting: {name: ii.load_model("zoo:" + name, device=device) for name in names} for setting, names in sets}

    # 2. The study: per setting, each model's excess risk over D (2,000 prompts), the fitted c and e, every
    #    (multi-head, single-head) pair of the same p compared; for the prior settings, each model's mean function
    #    u against theta_0 at D = 1..d, beside predicting 0, theta_0 . x_q, the Bayes posterior mean and a no-prior ridge.
    result = studies.settings_study(settings, d_min=8, n_prompts=2000, quick=quick)

    # 3. The verdicts: one per comparison (the prior settings: their p/h >= d pair).
    found = claims.seed2_settings(result)
    result["claims"] = [claim.to_dict() for claim in found]

    # 4. The figure and the JSON.
    result["figure"] = study_plots.save_figure(study_plots.plot_settings_study(result), out, "multihead_settings.png")
    studies.save_json(result, out, "multihead_settings.json")

    # 5. What to look at.
    for setting, res in result["settings"].items():
        for name, row in res["models"].items():
            print(f"  {setting:12s} {name:28s} p/h = {row['p_over_h']:4g}  c = {row['c']:.3f}  e = {row['e']:.4f}")
    print(*found, sep="\n")  # [verdict] id: the deciding numbers
    return result


if __name__ == "__main__":
    args = recipe_arguments(__doc__)
    main(args.out, quick=args.quick, device=args.device)
