"""Pruning and P-probing: does the seed's pruned model keep the performance (the seed's Fig 5)?

What it shows: the shipped default model with all heads, pruned to the seed's mask
(every head of layer 0, the most important head of each later layer; masking only,
no fine-tuning), and the trained single-head model of the same recipe: their error,
and the P-probing risk after each layer (a ridge read-out of the residual stream
trained to predict the query's y). Then the same comparison at noise 0.1, 0.5 and 1.0
(the noise-sweep pairs of the zoo index) against the noise floor, and the claims
`pruning_preserves`, `multihead_beats_single`, `noise_pruning`, `noise_single_head`.

Run:   python recipes/pruning_probing.py --out DIR [--quick]
  or:  icl-interp recipe pruning_probing --out DIR [--quick]
Writes DIR/pruning_probing.png, DIR/pruning_noise.png and DIR/pruning_probing.json.
About a minute here, beside a training job (--quick: about 10 s).
"""

import icl_interp as ii
from icl_interp.analysis import claims, studies, study_plots
from icl_interp.analysis.recipes import recipe_arguments


def main(out, quick=False, device=None):
    # 1. The model, its declared relatives (icl_interp/zoo/index.json) and fresh prompts (seed 7).
    model = ii.load_model("zoo:default", device=device)
    family = ii.zoo.siblings("default")
    single = ii.load_model(family.single_head, device=device) if family.single_head else None
    data = model.task.sample(256 if quick else 2000, model.cfg.max_points, seed=7).to(model.device)

    # 2. The study at the model's own noise level. By hand it is:
    #      imp = ii.head_importance(model, data); mask = ii.prune_heads(imp, keep={0: "all", "rest": 1})
    #      ii.mask_heads(model, data, mask)  and  ii.probe_all_layers(model, data, targets=["y_query"])
    result = studies.pruning_study(model, data, single_head=single)

    # 3. The same across noise levels: one (all heads, single head) pair per level, each on
    #    prompts of its own task; the level already done above is not run again.
    noise = float(model.task.noise_std)
    pairs = {}
    for full, one in family.noise_sweep:
        big = model if full == "default" else ii.load_model(full, device=device)
        small = single if one == family.single_head else (ii.load_model(one, device=device) if one else None)
        pairs[float(big.task.noise_std)] = (big, small)
    sweep = studies.noise_pruning_study(pairs, n_prompts=data.batch_size, quick=quick, known={noise: result})
    result["noise_sweep"] = sweep

    # 4. The verdicts.
    found = [claims.pruning_preserves(result)]
    if "error_single_head" in result:
        found.append(claims.multihead_beats_single(result))
    if len(sweep["levels"]) > 1:
        found += [c for c in (claims.noise_pruning(sweep), claims.noise_single_head(sweep)) if c is not None]
    result["claims"] = [claim.to_dict() for claim in found]

    # 5. The figures and the JSON.
    result["figure"] = study_plots.save_figure(study_plots.plot_pruning_study(result), out, "pruning_probing.png")
    sweep["figure"] = study_plots.save_figure(study_plots.plot_noise_pruning_study(sweep), out, "pruning_noise.png")
    studies.save_json(result, out, "pruning_probing.json")

    # 6. What to look at.
    print(f"pruned mask (rows = layers): {result['mask']}")
    for level, row in sweep["levels"].items():
        print(f"  noise {level}: all heads {row['error_full']:.3f}, pruned {row['error_pruned']:.3f}, "
              f"single head {row.get('error_single_head', float('nan')):.3f}, floor {row['noise_floor']:.3f}")
    print(*found, sep="\n")  # [verdict] id: the deciding numbers
    return result


if __name__ == "__main__":
    args = recipe_arguments(__doc__)
    main(args.out, quick=args.quick, device=args.device)
