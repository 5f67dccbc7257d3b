"""The mechanism over training: when does the seed's pattern appear, if at all?

What it shows: along the snapshots a training run kept (the shipped default carries
about 20, log-spaced, in icl_interp/zoo/default/snapshots/), every single-model
claim's deciding number (each layer-0 head's share of the skill, the later layers'
top-head shares, pruned / full error, the best preprocessing's R2 gain over the
input, the gaps to GD's and PtO's iterates) next to the model's error at the largest
n against the tuned ridge and Lasso, in one figure; and, for each claim, the first
snapshot from which it stays reproduced, before or after the model leaves the ridge
plateau (its error clearly below ridge's: ridge more than 1.1x the model's).
With the optional extra (pip install 'icl-interp[devinterp]') also the local learning
coefficient (LLC, docs/llc.md) at every snapshot, at the calibrated settings, on the
full task and on each early snapshot's own curriculum stage, and the stage boundaries
it marks (its turning points) with the claims' values there.

Run:   python recipes/dynamics.py --out DIR [--quick] [--model NAME_OR_RUN_FOLDER]
  or:  icl-interp recipe dynamics --out DIR [--quick]
Writes DIR/dynamics.png and DIR/dynamics.json. About 15 s a snapshot on 512 prompts
(--quick: every third snapshot, 128 prompts), plus about 40 s a snapshot for the LLC at
one thread (twice that for a curriculum snapshot; --no-llc skips it; killed, the same
command goes on from DIR/llc_partial.json). A run folder works
too: its snapshots/ come from `icl-interp train ... --keep-log 20`.
--llc-only FILE adds (or redoes) the LLC in an existing dynamics.json (e.g. the one the
default ships, icl_interp/zoo/default/dynamics.json) and leaves its other numbers as they are;
after changing a zoo file, `python -m icl_interp.zoo refresh` records its new hash in index.json.
"""

import argparse
import json
from importlib.util import find_spec
from pathlib import Path

import torch

from icl_interp.analysis import studies, study_plots
from icl_interp.analysis.studies import dynamics_study, llc_history, llc_stages, load_history
from icl_interp.core.atomic import atomic_write_bytes
from icl_interp.core.devices import DEVICE_HELP


def add_llc(result, history, out, quick=False):
    """The LLC per snapshot and its stage boundaries into ``result`` (a dynamics study); quick: fewer prompts and draws.
    Each snapshot's estimate is kept in OUT/llc_partial.json as it comes: the same command, killed, goes on from there."""
    settings = {"n_prompts": 256, "num_chains": 2, "num_draws": 20, "num_burnin_steps": 5, "batch_size": 32} if quick else {}
    result["llc"] = llc_history(history, progress=True, cache=Path(out) / "llc_partial.json", **settings)
    result["llc"]["stages"] = llc_stages(result["llc"]["rows"], result["rows"])
    for row in result["llc"]["rows"]:
        stage = row["stage"]
        extra = f"   on its stage ({stage['active_dims']} dims): {stage['llc']:.1f} +- {stage['se']:.1f}" if stage else ""
        flags = ("" if row["converged"] else " (still rising)") + ("" if row["near_minimum"] else " (not near a minimum)")
        print(f"  step {row['step']:>6}: LLC {row['llc']:.1f} +- {row['se']:.1f}{flags}{extra}")
    for b in result["llc"]["stages"]["boundaries"]:
        print(f"  LLC {b['kind']} at step {b['step']}: {b['llc']:.1f} +- {b['se']:.1f}")
    return result


def main(out, quick=False, device=None, model="default", llc=True, threads=None, llc_only=None):
    if threads is not None:
        torch.set_num_threads(threads)
    if llc and find_spec("devinterp") is None:
        print("the LLC is skipped: devinterp is not installed (pip install 'icl-interp[devinterp]')")
        llc = False

    # 1. The history: (step, model) for every kept snapshot, in step order.
    history = load_history(model, every=3 if quick else 1, device=device)
    print(f"{len(history)} snapshots of {model}: steps {[step for step, _ in history]}")

    if llc_only is not None:  # the LLC alone, into a stored study (written as one unit: a kill leaves the old file)
        result = json.loads(Path(llc_only).read_text())
        if [r["step"] for r in result["rows"]] != [step for step, _ in history]:
            raise ValueError(f"{llc_only} holds other snapshots than {model}'s")
        add_llc(result, history, out, quick)
        atomic_write_bytes(Path(llc_only), json.dumps(result, indent=1).encode())
        study_plots.save_figure(study_plots.plot_dynamics_study(result), out, "dynamics.png")
        return result

    # 2. The study: for each snapshot, the six single-model studies on the same prompts and the claims decided on
    #    them; the error at the largest n on 2,000 prompts against ridge and Lasso tuned on held-out prompts.
    result = dynamics_study(history, n_prompts=128 if quick else 512, error_prompts=500 if quick else 2000)

    # 2b. The local learning coefficient at every snapshot (SGLD at the calibrated settings: docs/llc.md).
    if llc:
        add_llc(result, history, out, quick)

    # 3. The figure and the JSON.
    result["figure"] = study_plots.save_figure(study_plots.plot_dynamics_study(result), out, "dynamics.png")
    studies.save_json(result, out, "dynamics.json")

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
    parser.add_argument("--no-llc", action="store_true", help="skip the local learning coefficient")
    parser.add_argument("--llc-only", metavar="FILE", help="add the LLC to this stored dynamics.json, nothing else")
    parser.add_argument("--threads", type=int, help="torch threads (the LLC was calibrated at 1-2)")
    parser.add_argument("--device", default="auto", help=f"where the snapshots run: {DEVICE_HELP} (default auto)")
    args = parser.parse_args()
    main(args.out, quick=args.quick, device=args.device, model=args.model, llc=not args.no_llc, threads=args.threads,
         llc_only=args.llc_only)
