"""The mechanism over training: when does the seed's pattern appear, if at all?

What it shows: along the snapshots a training run kept (the shipped default carries
about 20, log-spaced, in icl_interp/zoo/default/snapshots/), every single-model
claim's deciding number (each layer-0 head's share of the skill, the later layers'
top-head shares, pruned / full error, the best preprocessing's R2 gain over the
input, the gaps to GD's and PtO's iterates) next to the model's error at the largest
n against the tuned ridge and Lasso, in one figure; and, for each claim, the first
snapshot from which it stays reproduced, before or after the model leaves the ridge
plateau (its error clearly below ridge's: ridge more than 1.1x the model's).

Run:   python recipes/dynamics.py --out DIR [--quick] [--model NAME_OR_RUN_FOLDER]
  or:  icl-interp recipe dynamics --out DIR [--quick]
Writes DIR/dynamics.png and DIR/dynamics.json. About 15 s a snapshot on 512 prompts
(--quick: every third snapshot, 128 prompts). A run folder works too: its snapshots/
come from `icl-interp train ... --keep-log 20`.
"""

import argparse

import icl_interp as ii
from icl_interp.studies import dynamics_study, load_history


def main(out, quick=False, model="default"):
    # 1. The history: (step, model) for every kept snapshot, in step order.
    history = load_history(model, every=3 if quick else 1)
    print(f"{len(history)} snapshots of {model}: steps {[step for step, _ in history]}")

    # 2. The study: for each snapshot, the six single-model studies on the same prompts and the claims decided on
    #    them; the error at the largest n on 2,000 prompts against ridge and Lasso tuned on held-out prompts.
    result = dynamics_study(history, n_prompts=128 if quick else 512, error_prompts=500 if quick else 2000)

    # 3. The figure and the JSON.
    result["figure"] = ii.save_figure(ii.plot_dynamics_study(result), out, "dynamics.png")
    ii.save_json(result, out, "dynamics.json")

    # 4. What to look at: the error against the baselines, and when each claim holds.
    for row in result["rows"]:
        verdicts = " ".join("R" if c["verdict"] == "reproduced" else ("m" if c["verdict"] == "mixed" else ".")
                            for c in row["claims"].values())
        print(f"  step {row['step']:>6}: error / ridge {row['over_ridge']:.2f}, / Lasso {row['over_lasso']:.2f}   claims {verdicts}")
    summary = result["summary"]
    print(f"leaves the ridge plateau at step {summary['leaves_ridge_plateau_at']}")
    for ident, when in summary["claims"].items():
        print(f"  {ident}: reproduced from step {when['reproduced_from']} ({when['relative_to_plateau_exit']})")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the figure and the JSON")
    parser.add_argument("--quick", action="store_true", help="every third snapshot, small samples: rough numbers")
    parser.add_argument("--model", default="default", help="a zoo model that carries snapshots, or a run folder")
    args = parser.parse_args()
    main(args.out, quick=args.quick, model=args.model)
