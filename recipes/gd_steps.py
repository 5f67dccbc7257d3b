"""Later layers as gradient-descent steps: is the risk after layer l that of l GD (or PtO) steps?

What it shows: the P-probing risk after each layer of the shipped default model (a
ridge read-out of the residual stream predicting the query's y, scored on held-out
prompts) against the risk of the best t-step GD on the raw data and the best t-step
preprocess-then-optimize (PtO, tuned over four preprocessings and the step size), and
the same probes on a randomly initialised model of the same config. The deciding
number of the claims `later_gd_steps` and `steps_on_preprocessed` is not a risk but
the mean gap of layers 1.. to the iterates of one GD or PtO run (t = layer + t0 steps,
the step size matched to the model's output; icl_interp/analysis/studies/iterates.py); the study
computes it (`distance` in the JSON) for the model and for the random model.

Run:   python recipes/gd_steps.py --out DIR [--quick]
  or:  icl-interp recipe gd_steps --out DIR [--quick]
Writes DIR/gd_steps.png and DIR/gd_steps.json (with von Oswald et al.'s alignment
metrics per layer under `alignment`). About 35 s here (--quick, t <= 3: about 10 s).
"""

import icl_interp as ii
from icl_interp.analysis import claims, studies, study_plots
from icl_interp.analysis.recipes import recipe_arguments


def main(out, quick=False, device=None):
    # 1. The model and fresh prompts (seed 7, as in the report).
    model = ii.load_model("zoo:default", device=device)
    data = model.task.sample(256 if quick else 2000, model.cfg.max_points, seed=7).to(model.device)

    # 2. The study: per-layer probe risk (and the random model's), tuned GD and PtO risk for every t,
    #    the alignment metrics of ii.gd_alignment, and the distances the claims use.
    steps = (1, 2, 3) if quick else (1, 2, 3, 4, 6, 8)
    result = studies.gd_study(model, data, steps=steps)

    # 3. The verdicts (None for a one-layer model: there is no later layer).
    found = [claim for claim in (claims.later_gd_steps(result), claims.steps_on_preprocessed(result)) if claim is not None]
    result["claims"] = [claim.to_dict() for claim in found]

    # 4. The figure and the JSON.
    result["figure"] = study_plots.save_figure(study_plots.plot_gd_study(result), out, "gd_steps.png")
    studies.save_json(result, out, "gd_steps.json")

    # 5. What to look at.
    risk, control = result["probe_risk_per_layer"], result["probe_risk_per_layer_control"]
    for layer in range(len(risk)):
        where = "input" if layer == 0 else f"after layer {layer - 1}"
        print(f"  {where:14s} probe risk {risk[layer]:.3f}  (random model {control[layer]:.3f})")
    for t, gd, pto in zip(result["steps"], result["gd_risk"], result["pto_risk"]):
        print(f"  t = {t}: GD {gd:.3f}  PtO {pto:.3f}")
    print(*found, sep="\n")  # [verdict] id: the deciding numbers
    return result


if __name__ == "__main__":
    args = recipe_arguments(__doc__)
    main(args.out, quick=args.quick, device=args.device)
