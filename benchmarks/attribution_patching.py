"""Attribution patching (first order, one backward) against exact patching, on the shipped models.

For each site, ``patch_activations(..., method="attribution")`` estimates every patch
from one clean run, one corrupted forward with autograd on and one backward; exact
patching runs one (partial) forward per index. Printed per model and site: the cost
of each in forward-equivalents (one plain no-grad forward of the same prompts = 1),
the Spearman rank correlation of the two score maps, the largest absolute error of
the estimate (in fraction-recovered units), and the share of the indices whose
estimate lands on the wrong side of 0.5. Where the correlation is low, the
first-order approximation fails: there the model is far from linear between the
corrupted and clean activation (typically residual sites of early layers, whose
patch changes everything downstream, and anything behind a LayerNorm whose scale
the patch changes a lot).

    .venv/bin/python benchmarks/attribution_patching.py [--full]   # default (and with --full every shipped multi-layer model)
"""

import _common as common
import torch

import icl_interp as ii

SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head", "head_pos")


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.flatten().argsort().argsort().double()
    rb = b.flatten().argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def main() -> None:
    args = common.parse_args(__doc__)
    common.header("attribution patching vs exact")
    names = ["default-v1"]  # the model benchmarks/README.md and the README quote (the default when they were taken)
    if args.full:
        names += [n for n in ii.zoo_names() if n.startswith(("default-", "noise")) and not n.endswith(("-h1", "-concat"))]
    repeats = args.repeats or (3 if args.full else 2)
    total = {"exact": 0.0, "attribution": 0.0}
    for name in names:
        model = ii.load_model(name)
        clean = model.task.sample(128 if not args.full else 512, model.cfg.max_points, seed=0)
        corrupted = ii.corrupt_batch(clean, "new_w", model.task, seed=1)
        clean_run, corr_run = ii.prepare(model, clean), ii.prepare(model, corrupted)
        print(f"## {name}: {common.describe(model)}, {clean.batch_size} prompts")
        print(f"{'site':<10}{'exact fwd-eq':>14}{'attr fwd-eq':>13}{'spearman':>10}{'max |err|':>11}{'wrong side':>12}")
        for site in SITES:
            runs = (model, clean_run, corr_run, site)  # bound now: the timed calls run within this iteration
            fns = {
                "exact": lambda r=runs: ii.patch_activations(*r),
                "attribution": lambda r=runs: ii.patch_activations(*r, method="attribution"),
                "forward": common.plain_forward(model, clean),
            }
            times, out = common.compare(fns, repeats)
            exact, attr = out["exact"].scores, out["attribution"].scores
            total["exact"] += times["exact"].cpu
            total["attribution"] += times["attribution"].cpu
            wrong = float(((exact > 0.5) != (attr > 0.5)).float().mean())
            print(f"{site:<10}{common.fwd_eq(times['exact'], times['forward']):>14.1f}"
                  f"{common.fwd_eq(times['attribution'], times['forward']):>13.1f}{spearman(exact, attr):>10.2f}"
                  f"{float((exact - attr).abs().max()):>11.3f}{wrong:>12.1%}")
    print(f"RATIO attribution_patching {total['exact'] / total['attribution']:.2f}x "
          f"(exact {total['exact']:.3g} s / attribution {total['attribution']:.3g} s, CPU time, all sites)")


if __name__ == "__main__":
    main()
