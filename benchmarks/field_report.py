"""``icl-interp report`` on the field's standard model: its wall time (goal: at most 10 minutes on 2 cores) and the method
each study used.

Builds Garg et al.'s standard model (12 layers x 8 heads x d_model 256, dense regression d = 20, 41 points;
``_common.field_model``), random init or ``--train-steps`` steps of training (timing does not depend on training;
the claims of an untrained model are mostly undecided), saves it, runs the report command on it through the CLI
(progress bars on stderr) and prints the wall time, the plan and each study's method. A second run into the same
``--out`` reuses the finished sections (``--rerun`` times that too).

    .venv/bin/python benchmarks/field_report.py [--threads 2] [--quick] [--exact] [--budget-minutes M] [--out DIR]

Unlike the other scripts it does not pin one thread: ``--threads`` (default 2, this machine's cores) is the report's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the report (default 2)")
    parser.add_argument("--quick", action="store_true", help="the report's --quick (256 prompts asked for instead of 2,000)")
    parser.add_argument("--exact", action="store_true", help="the report's --exact (exact sweeps on fewer prompts)")
    parser.add_argument("--budget-minutes", dest="budget_minutes", type=float, help="the report's --budget-minutes")
    parser.add_argument("--train-steps", dest="train_steps", type=int, default=0, help="train the model this many steps first")
    parser.add_argument("--out", help="the report's folder (default: a temporary one)")
    parser.add_argument("--rerun", action="store_true", help="run the report a second time into the same folder (sections reused)")
    parser.add_argument("--device", default="cpu", help="the report's --device (default cpu; cuda on a lent GPU)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import torch

    torch.set_num_threads(args.threads)
    import _common as common  # noqa: F401  (after the thread count: _common pins one thread)

    torch.set_num_threads(args.threads)
    import icl_interp as ii
    from icl_interp.cli import main as cli

    common.header("field_report")
    model = common.field_model()
    if args.train_steps:
        ii.train(model, model.task, ii.TrainConfig(steps=args.train_steps, batch_size=64, lr=1e-4, warmup_steps=0, progress=False))
    tmp = tempfile.TemporaryDirectory()
    folder = Path(tmp.name) / "garg-standard"
    ii.save_model(model, folder)
    out = Path(args.out) if args.out else Path(tmp.name) / "report"
    argv = ["report", "--model", str(folder), "--out", str(out), "--threads", str(args.threads), "--device", args.device]
    argv += ["--quick"] * args.quick + ["--exact"] * args.exact
    if args.budget_minutes is not None:
        argv += ["--budget-minutes", str(args.budget_minutes)]
    print("icl-interp " + " ".join(argv), flush=True)
    for run in ("first run", "rerun")[: 1 + args.rerun]:
        t0 = time.perf_counter()
        status = cli(argv)
        wall = time.perf_counter() - t0
        if status:
            raise SystemExit(f"the report failed (exit status {status})")
        report = json.loads((out / "report.json").read_text())
        plan = report["plan"]
        print(f"{run}: wall {wall:.0f} s ({wall / 60:.1f} min; goal <= 10 min on 2 cores) at {args.threads} thread(s) on {args.device}")
        print(f"  plan: {plan['method']} on {plan['n_prompts']} of {plan['requested_prompts']} prompts; one forward over them "
              f"{plan['forward_s']:.2f} s; predicted {plan['predicted_s']:.0f} s for the studies and the baselines (budget {plan['budget_s']:.0f} s)")
        for study, method in report["methods"].items():
            print(f"  {study}: {method}")
        for kind, by in report["importance"]["by_ablation"].items():
            if "agreement" in by:
                a = by["agreement"]
                print(f"  agreement ({kind} ablation, {len(a['heads'])} sampled heads): Spearman {a['spearman']:.2f}, "
                      f"max |diff| {a['max_abs_diff']:.3g} (exact range {a['exact_range']:.3g})")
    tmp.cleanup()


if __name__ == "__main__":
    main()
