"""``icl-interp``: train, evaluate, run recipes, write the report.

Errors end in one line on stderr, ``icl-interp CMD: error: ...``, and no traceback
(``--debug`` prints it too). Exit status 2: a problem with the input or the
environment that the user can fix (bad values, a missing or unwritable file, a
diverged run, a missing package, a Weights & Biases error, running out of memory);
130: interrupted (Ctrl-C); 1: an internal error (a bug: rerun with ``--debug`` and
report the traceback).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Optional, Sequence

from .core.devices import DEVICE_HELP, DTYPES


def _train(args: argparse.Namespace) -> int:
    from .training.presets import get_preset, train_preset

    keys = ("steps", "warmup_steps", "batch_size", "lr", "seed", "threads", "device", "dtype", "keep_every", "keep_log", "log_to")
    overrides = {key: getattr(args, key) for key in keys if getattr(args, key) is not None}
    preset = get_preset(args.preset)["train"]
    if args.steps is not None and args.warmup_steps is None:  # keep the warmup's share of the run (the same on --resume)
        warmup = preset.get("warmup_steps", 0)
        scaled = min(warmup, round(warmup * args.steps / preset["steps"]))
        if scaled != warmup:
            overrides["warmup_steps"] = scaled
            print(f"--steps {args.steps}: the preset's warmup of {warmup} of {preset['steps']} steps scaled to {scaled} "
                  f"(give --warmup-steps to choose)")
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
    from .core.atomic import atomic_write_bytes, writable_file
    from .core.checkpoint import load_model
    from .tools.evaluation import evaluate

    out = writable_file(args.out, "--out") if args.out else None  # its folder is created; checked before the evaluation
    model = load_model(args.model, device=args.device)
    task = model.task
    if task is None:
        raise ValueError(f"model {args.model!r} records no task to evaluate on")
    n = args.n_points or model.cfg.max_points
    res = evaluate(model, task, n_points=n, n_prompts=args.n_prompts, seed=args.seed)
    if out is not None:
        atomic_write_bytes(out, json.dumps(res.to_dict(per_prompt=False), indent=1).encode())
    print(_summary(res, args))
    if out is not None:
        print(f"wrote {out}")
    return 0


def _summary(res: object, args: argparse.Namespace) -> str:
    """A short table: the error (and its 5-95% interval) at a few prompt positions, and the mean."""
    d = res.to_dict(per_prompt=False)
    err, lo, hi, ctx = d["error"], d.get("error_low"), d.get("error_high"), d.get("n_context") or list(range(len(d["error"])))
    n = len(err)
    shown = sorted({i for i in (0, n // 4, n // 2, (3 * n) // 4, n - 1) if 0 <= i < n})
    lines = [f"{args.model}: error by number of in-context examples ({args.n_prompts} prompts, seed {args.seed})",
             "  examples   error   5-95% interval"]
    for i in shown:
        band = f"{lo[i]:.4f}-{hi[i]:.4f}" if lo is not None and hi is not None else "-"
        lines.append(f"  {ctx[i]:>8}  {err[i]:.4f}   {band}")
    lines.append(f"  {'mean':>8}  {sum(err) / n:.4f}")
    return "\n".join(lines)


def _recipe(args: argparse.Namespace) -> int:
    from .analysis.recipes import run_recipe

    _set_threads(args)
    run_recipe(args.name, args.out, quick=args.quick, device=args.device)
    print(f"wrote {Path(args.out) / (args.name + '.json')}")
    return 0


def _report(args: argparse.Namespace) -> int:
    import contextlib

    from .analysis.report import write_report
    from .core.checkpoint import use_zoo
    from .training.presets import retrain_zoo

    _set_threads(args)
    if not args.retrain:
        given = [flag for flag, value in (("--presets", args.presets), ("--max-minutes", args.max_minutes),
                                          ("--zoo-dir", args.zoo_dir)) if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only apply{'' if len(given) > 1 else 'ies'} with --retrain: "
                             f"add --retrain, or drop {' and '.join(given)}")
    zoo = contextlib.nullcontext()
    if args.retrain:
        got = retrain_zoo(args.zoo_dir or "runs/retrained", args.presets, max_minutes=args.max_minutes, progress=True)
        if got["left"]:
            print(f"retrained {got['done']}; still to train: {got['left']}. Run the same command again to go on.")
            return 0
        zoo = use_zoo(got["zoo"])
    with zoo:
        res = write_report(args.out, model=args.model, quick=args.quick, prompt_seed=args.prompt_seed, siblings=args.siblings,
                           exact=args.exact, budget_s=60.0 * args.budget_minutes, progress=not args.no_progress, reuse=not args.no_reuse,
                           device=args.device)
    for claim in res["claims"]:
        print(f"[{claim['verdict']}] {claim['id']}: {claim['claim']}  ({claim['number']})")
    print(f"methods ({res['plan']['n_prompts']} prompts per study): " + "; ".join(f"{k}: {v.split(',')[0]}" for k, v in res["methods"].items()))
    print(f"wrote {Path(args.out) / 'report.md'} in {res['seconds']} s")
    return 0


def _import_garg(args: argparse.Namespace) -> int:
    from .core.checkpoint import save_model
    from .core.garg import CONFIG_KEYS, import_garg

    step = None if args.step is None else ("latest" if args.step == "latest" else int(args.step) if args.step.isdigit() else args.step)
    model = import_garg(args.path, step=step, **{key: getattr(args, key) for key in CONFIG_KEYS})
    save_model(model, args.out, imported_from=model.imported_from)
    print(json.dumps({"out": str(args.out), **model.imported_from["garg_model"], "train_step": model.imported_from["train_step"]}))
    return 0


def _build_construction(args: argparse.Namespace) -> int:
    from .core.constructions import save_zoo_construction

    print(f"wrote {save_zoo_construction(args.name, args.out)}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .training.sweep import sweep, sweep_status

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


def _compute_flags(parser: argparse.ArgumentParser, device_help: Optional[str]) -> None:
    """--threads on every command that computes, and --device where the command can move its work (same defaults)."""
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, the machine's cores)")
    if device_help is not None:
        parser.add_argument("--device", default="auto", help=f"{device_help}: {DEVICE_HELP} (default auto)")


def _set_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None) is not None:
        import torch

        from .core.checks import check_int

        torch.set_num_threads(check_int("--threads", args.threads, min_value=1))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="icl-interp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="on an error, print the traceback as well as the one-line message")
    sub = p.add_subparsers(dest="command", required=True)

    from .analysis.recipes import RECIPES
    from .analysis.report_plan import BUDGET_S
    from .training.presets import PRESETS

    t = sub.add_parser("train", help="train a model from a preset recipe", description="Train a preset into --out (resumable).")
    t.add_argument("--preset", default="default", metavar="NAME",
                   help="the preset recipe (default: default); one of: " + ", ".join(sorted(PRESETS)))
    t.add_argument("--out", required=True, help="output folder (checkpoint/, model/, log.json)")
    t.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    t.add_argument("--steps", type=int, help="training steps instead of the preset's; the warmup is scaled with them "
                                             "unless --warmup-steps is given (a line says so)")
    t.add_argument("--warmup-steps", dest="warmup_steps", type=int, help="linear warmup steps instead of the preset's")
    t.add_argument("--batch-size", dest="batch_size", type=int, help="prompts per step instead of the preset's")
    t.add_argument("--lr", type=float, help="peak learning rate instead of the preset's")
    t.add_argument("--seed", type=int, help="training seed: the initial weights and the data order (default: the preset's, 0)")
    _compute_flags(t, "where to train")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (for logs and batch jobs)")
    t.add_argument("--max-minutes", dest="max_minutes", type=float,
                   help="train in chunks: stop at the first checkpoint after this many minutes (continue with --resume)")
    t.add_argument("--dtype", choices=DTYPES, help="bfloat16: the forward under autocast, parameters stay float32 (default "
                   "float32); it pays on GPUs and on CPUs with bfloat16 matrix units (Intel AMX, Sapphire Rapids and newer), "
                   "and is several times slower elsewhere (an AMD EPYC without them: 69.5 s for 10 steps against 8.5 s)")
    t.add_argument("--compile", action="store_true", help="torch.compile the training step's loss (on a CPU about 10%% faster steps after a first compile of about a minute)")
    t.add_argument("--keep-every", dest="keep_every", type=int, help="keep a snapshot of the model every K steps (OUT/snapshots/)")
    t.add_argument("--keep-log", dest="keep_log", type=int, help="keep about N snapshots at log-spaced steps (first at step 1)")
    t.add_argument("--log-to", dest="log_to", choices=["wandb"], help="also log to Weights & Biases (offline without credentials)")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="error curve of a saved model on its task: a summary table (the JSON with --out)")
    e.add_argument("model", help="saved model folder or zoo name (zoo:NAME or ./NAME where both exist)")
    e.add_argument("--n-points", dest="n_points", type=int, help="prompt length (default: the model's max_points)")
    e.add_argument("--n-prompts", dest="n_prompts", type=int, default=2000, help="prompts to average over (default 2000)")
    e.add_argument("--seed", type=int, default=1, help="the prompts' seed (default 1)")
    e.add_argument("--out", help="also write the whole result (per-position errors, intervals, baselines) as JSON to this file (its folder is created if missing)")
    _compute_flags(e, "where the model runs")
    e.set_defaults(func=_evaluate)

    r = sub.add_parser("recipe", help="run one experiment recipe (figures + JSON)")
    r.add_argument("name", choices=RECIPES, metavar="NAME", help="the recipe (recipes/NAME.py); one of: " + ", ".join(RECIPES))
    r.add_argument("--out", required=True, help="folder for the recipe's figures and NAME.json")
    r.add_argument("--quick", action="store_true", help="small samples: seconds to a minute, rough numbers")
    _compute_flags(r, "where the recipe's models run (the baselines-only algorithm recipe has none)")
    r.set_defaults(func=_recipe)

    rep = sub.add_parser("report", help="the main job: every analysis on the shipped zoo, as report.md")
    rep.add_argument("--out", default="report", help="folder for report.md, report.json and the figures (default report)")
    rep.add_argument("--model", default="zoo:default",
                     help="zoo name or saved model folder (default: zoo:default, with its zoo siblings); comparisons without siblings are skipped")
    rep.add_argument("--quick", action="store_true", help="small samples (256 prompts): about a minute on a shipped model, rough numbers")
    rep.add_argument("--prompt-seed", dest="prompt_seed", type=int, default=0,
                     help="draw every study's prompts from this seed (default 0: the shipped report's prompts)")
    rep.add_argument("--siblings", help="for a model outside the zoo's index: a JSON file declaring its relatives "
                     "(index.json's roles: head_counts, single_head, noise_sweep, concat_twin, linear_twin, ...; docs/science/index.md)")
    rep.add_argument("--exact", action="store_true",
                     help="exact head-ablation sweeps on every model: one too large for them in --budget-minutes gets them "
                          "on fewer prompts (wider intervals) instead of gradient-estimated importance")
    rep.add_argument("--budget-minutes", dest="budget_minutes", type=float, default=BUDGET_S / 60,
                     help="minutes the model's own studies may take (default %(default)g); a model whose exact studies would "
                          "take longer (timed on this machine: one forward x each study's forward-equivalents) gets "
                          "gradient-estimated head importance, with its agreement with exact ablation on sampled heads, on "
                          "as many prompts as fit (report.md's Methods says what ran)")
    rep.add_argument("--no-progress", dest="no_progress", action="store_true",
                     help="no progress bars (by default one per study on stderr, with the estimated time left)")
    rep.add_argument("--no-reuse", dest="no_reuse", action="store_true",
                     help="compute every study again (by default a study finished by an earlier run into the same --out, "
                          "with the same model weights, prompt seeds, --quick, plan and code, is loaded from --out/.sections; "
                          "siblings are known by name only, so use this after retraining one)")
    rep.add_argument("--retrain", action="store_true",
                     help="retrain the zoo from its presets first (hours on a CPU; resumable), into --zoo-dir, and report on it")
    rep.add_argument("--zoo-dir", dest="zoo_dir",
                     help="with --retrain: where runs/ and zoo/ go (default runs/retrained)")
    rep.add_argument("--presets", nargs="+", help="with --retrain: only these presets (default: every shipped model)")
    rep.add_argument("--max-minutes", dest="max_minutes", type=float,
                     help="with --retrain: stop training after about this many minutes; run again to go on")
    _compute_flags(rep, "where the models run")
    rep.set_defaults(func=_report)

    g = sub.add_parser("import-garg", help="import a Garg et al. (dtsip/in-context-learning) checkpoint and save it in our format")
    g.add_argument("path", help="a run folder (config.yaml + state.pt) or a .pt file (then give the config values)")
    g.add_argument("--out", required=True, help="output folder for the saved model")
    g.add_argument("--step", help="from a run folder: model_{STEP}.pt, or 'latest' (default: state.pt)")
    for key in ("n_dims", "n_positions", "n_embd", "n_layer", "n_head"):
        g.add_argument("--" + key.replace("_", "-"), dest=key, type=int, help=f"{key} (default: from config.yaml)")
    g.set_defaults(func=_import_garg)

    c = sub.add_parser("build-construction", help="build a hand-made transformer of the zoo (construction-gd, construction-pto)")
    c.add_argument("name", help="construction-gd or construction-pto (icl_interp.core.constructions.CONSTRUCTIONS)")
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
    sw.add_argument("--threads", type=int, help="torch threads per run (default: locally the machine's cores divided by "
                                                "--parallel, on SLURM torch's default)")
    sw.add_argument("--device", default="auto", help=f"where each run trains: {DEVICE_HELP} (default auto)")
    sw.add_argument("--timeout-min", dest="timeout_min", type=float, default=24 * 60,
                    help="each job's time limit in minutes (a SLURM job past it requeues itself and resumes; default 1440)")
    sw.add_argument("--max-minutes", dest="max_minutes", type=float,
                    help="each run stops at its first checkpoint after this many minutes (run the sweep again to go on)")
    sw.add_argument("--slurm-partition", dest="slurm_partition", help="SLURM partition")
    sw.add_argument("--gpus-per-node", dest="gpus_per_node", type=int, help="GPUs per SLURM job")
    sw.add_argument("--no-wait", dest="no_wait", action="store_true", help="SLURM: submit and return (check with --status)")
    sw.add_argument("--status", action="store_true", help="only show each run's state (finished / stopped / not started)")
    sw.set_defaults(func=_sweep)
    for command in sub.choices.values():  # --debug before or after the command name
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


_OS_ADVICE = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.ENOSPC: "free some disk space or choose another disk",
    errno.EEXIST: "remove it or choose another path",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "it is a folder: give a file path",
}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _is_wandb_error(e: BaseException) -> bool:
    return any(cls.__module__.split(".")[0] == "wandb" for cls in type(e).__mro__)


def describe_error(e: BaseException) -> tuple[int, str]:
    """(exit status, one-line message) for an error that ended a command."""
    if isinstance(e, KeyboardInterrupt):
        return 130, "interrupted; a training run goes on from its last checkpoint with --resume"
    if _is_wandb_error(e):
        return 2, (f"Weights & Biases: {_one_line(e) or type(e).__name__}. Log in (wandb login), run offline "
                   f"(WANDB_MODE=offline, sync later with wandb sync), or drop --log-to wandb")
    if isinstance(e, OSError) and e.errno is not None:
        where = " -> ".join(repr(str(f)) for f in (e.filename, e.filename2) if f is not None)
        advice = _OS_ADVICE.get(e.errno, "check the path and the disk")
        return 2, f"{where + ': ' if where else ''}{e.strerror or _one_line(e)}: {advice}"
    if isinstance(e, FloatingPointError):
        return 2, f"{_one_line(e)} (on the command line: a smaller --lr)"
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return 2, f"out of memory ({_one_line(e)[:200] or type(e).__name__}): use a smaller --batch-size or another device"
    if isinstance(e, (ValueError, TypeError, ImportError, OSError)):
        return 2, _one_line(e) or type(e).__name__
    return 1, (f"internal error ({type(e).__name__}: {_one_line(e)[:300]}); this is a bug: rerun with --debug "
               f"for the traceback and report it")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; every error ends in one line on stderr and an exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as e:  # noqa: BLE001 - the boundary: every error ends in one line
        caught: BaseException = e
    except KeyboardInterrupt as e:
        caught = e
    if args.debug:
        traceback.print_exception(caught, file=sys.stderr)
    code, message = describe_error(caught)
    print(f"icl-interp {args.command}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
