"""The second seed (Cui et al. 2024): single- against multi-head one-layer softmax attention.

What it shows: four one-layer softmax-attention models from the zoo (embedding p = 16
or 8, h = 1 or 4 heads; dense regression d = 4, noise 0.1, concatenated [x; y]
tokens) evaluated at every number of examples D = 8..40; each excess-risk curve is
fitted by c / D + e. The seed predicts a smaller constant c for multi-head attention
when p/h >= d (claim `seed2_wide`), an advantage that shrinks or reverses when
p/h < d (claim `seed2_narrow`). The seed's other settings (noisy labels, correlated
features, local examples, a prior mean): recipes/multihead_settings.py.

Run:   python recipes/multihead.py --out DIR [--quick]
  or:  icl-interp recipe multihead --out DIR [--quick]
Writes DIR/multihead.png and DIR/multihead.json. About 9 s here (--quick: 6 s).
"""

import icl_interp as ii
from icl_interp.analysis import claims, studies, study_plots
from icl_interp.analysis.recipes import recipe_arguments


def main(out, quick=False, device=None):
    # 1. The models: the second seed's set, as the zoo index declares it.
    names = ii.zoo.siblings("default").second_seed
    if not names:
        raise ValueError("the multihead recipe needs the softmax-p{16,8}-h{1,4} zoo models: icl-interp train --preset NAME")
    models = {name: ii.load_model("zoo:" + name, device=device) for name in names}
    task = models[names[0]].task  # all four were trained on the same task

    # 2. The study: each model's excess risk over D (2,000 prompts), the fitted c and e, and every
    #    (multi-head, single-head) pair of the same p compared.
    result = studies.multihead_study(models, task, d_min=8, n_prompts=2000, quick=quick)

    # 3. The verdicts: one per comparison (wide if p/h >= d, else narrow).
    found = [claims.seed2(comparison) for comparison in result["comparisons"]]
    result["claims"] = [claim.to_dict() for claim in found]

    # 4. The figure and the JSON.
    result["figure"] = study_plots.save_figure(study_plots.plot_multihead_study(result), out, "multihead.png")
    studies.save_json(result, out, "multihead.json")

    # 5. What to look at.
    for name, row in result["models"].items():
        print(f"  {name:16s} p/h = {row['p_over_h']:4g}  c = {row['c']:.2f}  e = {row['e']:.3f}  "
              f"excess risk at D = {row['D'][-1]}: {row['excess_risk'][-1]:.3f}")
    print(*found, sep="\n")  # [verdict] id: the deciding numbers
    return result


if __name__ == "__main__":
    args = recipe_arguments(__doc__)
    main(args.out, quick=args.quick, device=args.device)
