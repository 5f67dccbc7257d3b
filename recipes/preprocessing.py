"""Layer 0 as preprocessing: does layer 0's output encode a preprocessed x_i (the seed's PtO hypothesis)?

What it shows: held-out R2 of linear probes (ridge, fitted on some prompts and scored
on others) that read candidate targets from the input embedding and from layer 0's
output of the shipped default model, next to the same probes on a randomly
initialised model of the same config (the control). Two readings: at the query
token (the preprocessing candidates applied to the query x with r = X^T y / n from the
whole context, and r, X^T X / n, w, the query's y), and at every x token (the
candidates applied to each x_i with r from the examples before it: what a causal
layer 0 could compute). Then the claim `layer0_preprocesses`.

Run:   python recipes/preprocessing.py --out DIR [--quick]
  or:  icl-interp recipe preprocessing --out DIR [--quick]
Writes DIR/preprocessing_probes.png and DIR/preprocessing.json. About a minute here (--quick: 9 s).
"""

import icl_interp as ii
from icl_interp.analysis import claims, studies, study_plots
from icl_interp.analysis.recipes import recipe_arguments


def main(out, quick=False, device=None):
    # 1. The model and fresh prompts (seed 7, as in the report).
    model = ii.load_model("zoo:default", device=device)
    data = model.task.sample(256 if quick else 2000, model.cfg.max_points, seed=7).to(model.device)

    # 2. The study. One probe by hand:
    #      ii.probe_layer(model, data, layer=0, target="pre_reweight_all", positions="all", control=True).r2
    #    The targets are the `probes` catalogue's (probes/targets.py); your own callables work too.
    result = studies.preprocessing_study(model, data)

    # 3. The verdict: the best candidate's gain over the input and over the random model.
    found = [claims.layer0_preprocesses(result)]
    result["claims"] = [claim.to_dict() for claim in found]

    # 4. The figure and the JSON.
    result["figure"] = study_plots.save_figure(study_plots.plot_preprocessing_study(result), out, "preprocessing_probes.png")
    studies.save_json(result, out, "preprocessing.json")

    # 5. What to look at.
    print(f"{'target':28s} {'input R2':>9s} {'layer 0':>9s} {'random':>9s}")
    for table in ("rows", "rows_all_positions"):
        for target, row in result[table].items():
            control = float("nan") if row["control_r2"] is None else row["control_r2"]
            print(f"{target:28s} {row['input_r2']:9.3f} {row['layer0_r2']:9.3f} {control:9.3f}")
    print(*found, sep="\n")  # [verdict] id: the deciding numbers
    return result


if __name__ == "__main__":
    args = recipe_arguments(__doc__)
    main(args.out, quick=args.quick, device=args.device)
