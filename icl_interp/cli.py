"""``icl-interp``: train, evaluate, run recipes, write the report.

Bad input prints one clear line (no traceback) and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from .devices import DEVICE_HELP, DTYPES


def _train(args: argparse.Namespace) -> int:
    from .presets import get_preset, train_preset

    keys = ("steps", "batch_size", "lr", "seed", "threads", "device", "dtype", "keep_every", "keep_log", "log_to")
    overrides = {key: getattr(args, key) for key in keys if getattr(args, key) is not None}
    if args.no_progress:
        overrides["progress"] = False
    if args.compile:
        overrides["compile"] = True
    out = Path(args.out)
    result = train_preset(args.preset, out, resume=args.resume, max_minutes=args.max_minutes, overrides=overrides)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    if result["stopped"]:
        steps = get_preset(args.preset)["train"]["steps"] if args.steps is None else args.steps
        print(f"stopped after {args.max_minutes:g} min at step {result['step']} of {steps}; "
              f"continue with: icl-interp train --preset {args.preset} --out {out} --resume")
        return 0
    final = result["log"][-1] if result["log"] else {}
    print(json.dumps({"out": str(out / "model"), **final}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .evaluation import evaluate

    model = load_model(args.model, device=args.device)
    task = model.task
    if task is None:
        raise ValueError(f"model {args.model!r} records no task to evaluate on")
    n = args.n_points or model.cfg.max_points
    res = evaluate(model, task, n_points=n, n_prompts=args.n_prompts, seed=args.seed)
    text = json.dumps(res.to_dict(per_prompt=False), indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text if not args.out else f"wrote {args.out}")
    return 0


def _recipe(args: argparse.Namespace) -> int:
    from .experiments import run_recipe

    run_recipe(args.name, args.out, quick=args.quick)
    print(f"wrote {Path(args.out) / (args.name + '.json')}")
    return 0


def _report(args: argparse.Namespace) -> int:
    import contextlib

    from .checkpoint import use_zoo
    from .presets import retrain_zoo
    from .report import write_report

    zoo = contextlib.nullcontext()
    if args.retrain:
        got = retrain_zoo(args.zoo_dir, args.presets, max_minutes=args.max_minutes, progress=True)
        if got["left"]:
            print(f"retrained {got['done']}; still to train: {got['left']}. Run the same command again to go on.")
            return 0
        zoo = use_zoo(got["zoo"])
    with zoo:
        res = write_report(args.out, model=args.model, quick=args.quick, prompt_seed=args.prompt_seed)
    for claim in res["claims"]:
        print(f"[{claim['verdict']}] {claim['id']}: {claim['claim']}  ({claim['number']})")
    print(f"wrote {Path(args.out) / 'report.md'} in {res['seconds']} s")
    return 0


def _import_garg(args: argparse.Namespace) -> int:
    from .checkpoint import save_model
    from .garg import CONFIG_KEYS, import_garg

    step = None if args.step is None else ("latest" if args.step == "latest" else int(args.step) if args.step.isdigit() else args.step)
    model = import_garg(args.path, step=step, **{key: getattr(args, key) for key in CONFIG_KEYS})
    save_model(model, args.out, imported_from=model.imported_from)
    print(json.dumps({"out": str(args.out), **model.imported_from["garg_model"], "train_step": model.imported_from["train_step"]}))
    return 0


def _build_construction(args: argparse.Namespace) -> int:
    from .constructions import save_zoo_construction

    print(f"wrote {save_zoo_construction(args.name, args.out)}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .sweep import sweep, sweep_status

    if args.status:
        rows = sweep_status(args.presets, args.seeds, args.out)
    else:
        slurm = {k: v for k, v in (("slurm_partition", args.slurm_partition), ("gpus_per_node", args.gpus_per_node)) if v is not None}
        rows = sweep(args.presets, args.seeds, args.out, executor=args.executor, parallel=args.parallel, threads=args.threads,
                     device=args.device, timeout_min=args.timeout_min, max_minutes=args.max_minutes, slurm=slurm, wait=not args.no_wait)
    for r in rows:
        extra = "".join(f"  {k}={r[k]}" for k in ("step", "eval_error_last", "job_id", "error", "log") if r.get(k) is not None)
        print(f"{r['preset']:>24} seed {r['seed']:<3} {r['state']:<16} {r['out']}{extra}")
    left = [r for r in rows if r["state"] not in ("finished", "finished before")]
    if left and not args.status:
        print(f"{len(left)} of {len(rows)} runs not finished: run the same command again to go on")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="icl-interp", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a preset recipe")
    t.add_argument("--preset", default="default")
    t.add_argument("--out", required=True, help="output folder (checkpoint/, model/, log.json)")
    t.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--threads", type=int)
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--max-minutes", dest="max_minutes", type=float,
                   help="train in chunks: stop at the first checkpoint after this many minutes (continue with --resume)")
    t.add_argument("--device", default="auto", help=f"where to train: {DEVICE_HELP}; under torchrun each rank takes cuda:LOCAL_RANK")
    t.add_argument("--dtype", choices=DTYPES, help="bfloat16: the forward under autocast, parameters stay float32 (default float32)")
    t.add_argument("--compile", action="store_true", help="torch.compile the training step's loss (on a CPU about 10%% faster steps after a first compile of about a minute)")
    t.add_argument("--keep-every", dest="keep_every", type=int, help="keep a snapshot of the model every K steps (OUT/snapshots/)")
    t.add_argument("--keep-log", dest="keep_log", type=int, help="keep about N snapshots at log-spaced steps (first at step 1)")
    t.add_argument("--log-to", dest="log_to", choices=["wandb"], help="also log to Weights & Biases (WANDB_MODE=offline works)")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="error / excess-risk curve of a saved model on its task")
    e.add_argument("model", help="saved model folder or zoo name")
    e.add_argument("--n-points", dest="n_points", type=int)
    e.add_argument("--n-prompts", dest="n_prompts", type=int, default=2000)
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--out", help="write the JSON here")
    e.add_argument("--device", default="cpu", help=f"where the model runs: {DEVICE_HELP} (default cpu)")
    e.set_defaults(func=_evaluate)

    r = sub.add_parser("recipe", help="run one experiment recipe (figures + JSON)")
    r.add_argument("name", help="one of: risk_curves, head_importance, pruning_probing, preprocessing, gd_steps, algorithm, multihead")
    r.add_argument("--out", required=True)
    r.add_argument("--quick", action="store_true", help="small sizes, seconds")
    r.set_defaults(func=_recipe)

    rep = sub.add_parser("report", help="the main job: every analysis on the shipped zoo, as report.md")
    rep.add_argument("--out", default="report")
    rep.add_argument("--model", default="default",
                     help="zoo name or saved model folder (default: default, with its zoo siblings); comparisons without siblings are skipped")
    rep.add_argument("--quick", action="store_true", help="small samples, seconds")
    rep.add_argument("--prompt-seed", dest="prompt_seed", type=int, default=0,
                     help="draw every study's prompts from this seed (default 0: the shipped report's prompts)")
    rep.add_argument("--retrain", action="store_true",
                     help="retrain the zoo from its presets first (hours on a CPU; resumable), into --zoo-dir, and report on it")
    rep.add_argument("--zoo-dir", dest="zoo_dir", default="runs/retrained",
                     help="with --retrain: where runs/ and zoo/ go (default runs/retrained)")
    rep.add_argument("--presets", nargs="+", help="with --retrain: only these presets (default: every shipped model)")
    rep.add_argument("--max-minutes", dest="max_minutes", type=float,
                     help="with --retrain: stop training after about this many minutes; run again to go on")
    rep.set_defaults(func=_report)

    g = sub.add_parser("import-garg", help="import a Garg et al. (dtsip/in-context-learning) checkpoint and save it in our format")
    g.add_argument("path", help="a run folder (config.yaml + state.pt) or a .pt file (then give the config values)")
    g.add_argument("--out", required=True, help="output folder for the saved model")
    g.add_argument("--step", help="from a run folder: model_{STEP}.pt, or 'latest' (default: state.pt)")
    for key in ("n_dims", "n_positions", "n_embd", "n_layer", "n_head"):
        g.add_argument("--" + key.replace("_", "-"), dest=key, type=int, help=f"{key} (default: from config.yaml)")
    g.set_defaults(func=_import_garg)

    c = sub.add_parser("build-construction", help="build a hand-made transformer of the zoo (construction-gd, construction-pto)")
    c.add_argument("name", help="construction-gd or construction-pto (icl_interp.constructions.CONSTRUCTIONS)")
    c.add_argument("--out", required=True, help="output folder for the saved model")
    c.set_defaults(func=_build_construction)
    sw = sub.add_parser("sweep", help="train presets x training seeds through submitit (SLURM on a cluster, local processes here)",
                        description="One folder per run under --out (NAME or NAME-seedK); run the same command again to resume.")
    sw.add_argument("--presets", nargs="+", required=True, help="preset names (icl-interp train --help lists them)")
    sw.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (default: 0)")
    sw.add_argument("--out", required=True, help="the sweep's folder (on a cluster: a file system the nodes share)")
    sw.add_argument("--executor", default="auto", choices=["auto", "local", "slurm", "debug"],
                    help="auto: SLURM when srun is on the PATH, else local processes (default auto)")
    sw.add_argument("--parallel", type=int, help="runs at once (local default 1; SLURM: the array's parallelism, default all)")
    sw.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    sw.add_argument("--device", default="auto", help=f"where each run trains: {DEVICE_HELP}")
    sw.add_argument("--timeout-min", dest="timeout_min", type=float, default=24 * 60,
                    help="each job's time limit in minutes (a SLURM job past it requeues itself and resumes; default 1440)")
    sw.add_argument("--max-minutes", dest="max_minutes", type=float,
                    help="each run stops at its first checkpoint after this many minutes (run the sweep again to go on)")
    sw.add_argument("--slurm-partition", dest="slurm_partition", help="SLURM partition")
    sw.add_argument("--gpus-per-node", dest="gpus_per_node", type=int, help="GPUs per SLURM job")
    sw.add_argument("--no-wait", dest="no_wait", action="store_true", help="SLURM: submit and return (check with --status)")
    sw.add_argument("--status", action="store_true", help="only show each run's state (finished / stopped / not started)")
    sw.set_defaults(func=_sweep)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, ImportError) as e:
        print(f"icl-interp {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
