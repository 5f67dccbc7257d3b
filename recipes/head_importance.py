"""Head importance: which heads of the default model matter (the seed's Fig 1c).

What it shows: for every head of the shipped default model (4 layers x 4 heads), the
rise of the normalised error when that head alone is zero-ablated (exact ablation
importance), next to Michel et al.'s gradient importance |d loss / d mask| (one
forward and one backward), as two heatmaps; their rank agreement (Spearman); and the
seed's two head claims: `layer0_all_heads` (ablating any layer-0 head raises the
error) and `later_single_head` (one head holds most of each later layer's importance).

Run:   python recipes/head_importance.py --out DIR [--quick]
  or:  icl-interp recipe head_importance --out DIR [--quick]
Writes DIR/head_importance.png and DIR/head_importance.json. About 30 s here (--quick: 8 s).
"""

import icl_interp as ii
from icl_interp.analysis import claims, studies, study_plots
from icl_interp.analysis.recipes import recipe_arguments


def main(out, quick=False, device=None):
    # 1. The model (on --device), and fresh prompts from the task it was trained on (seed 7, as in the report),
    #    drawn on the CPU and put where the model runs:
    #    sparse regression d = 8, s = 2, noise 0.5, 16 examples per prompt.
    model = ii.load_model("zoo:default", device=device)
    n_prompts = 256 if quick else 2000
    data = model.task.sample(n_prompts, model.cfg.max_points, seed=7).to(model.device)

    # 2. The study: both importance scores, the clean error, and the numbers the claims use
    #    (each layer-0 head's error rise relative to the clean error; each later layer's top-head share).
    #    The same by hand: ii.head_importance(model, data, method="ablation" or "gradient").
    result = studies.importance_study(model, data)

    # 3. The verdicts.
    found = [claim for claim in (claims.layer0_all_heads(result), claims.later_single_head(result)) if claim is not None]
    result["claims"] = [claim.to_dict() for claim in found]

    # 4. The figure and the JSON.
    result["figure"] = study_plots.save_figure(study_plots.plot_importance_study(result), out, "head_importance.png")
    studies.save_json(result, out, "head_importance.json")

    # 5. What to look at.
    print(f"clean error {result['clean_error']:.3f}; Spearman(ablation, gradient) = {result['spearman_ablation_vs_gradient']:.2f}")
    for layer, row in enumerate(result["ablation"]):
        print(f"  layer {layer}: error rise per head " + "  ".join(f"{v:+.3f}" for v in row))
    print(*found, sep="\n")  # [verdict] id: the deciding numbers
    return result


if __name__ == "__main__":
    args = recipe_arguments(__doc__)
    main(args.out, quick=args.quick, device=args.device)
