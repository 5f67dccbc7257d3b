"""Absolute training speed on one device: steps per second of ``icl_interp.train``'s own step (issue 13, item 6).

For a GPU session (the workplace lends one only to some): the default model and a
Garg-standard model (12 layers x 8 heads x 256 wide, dense regression d = 20, 41
points, batch 64, as Garg et al. train it), each in float32 and bfloat16 (autocast;
parameters and AdamW stay float32), eager and compiled (``TrainConfig(compile=True)``).
Each variant is :class:`icl_interp.training.step.TrainStep`, exactly what ``train`` runs
(the fused forward, normalised MSE, backward, clipping at 1, fused AdamW), on one fixed
batch already on the device; the time to sample a batch on the CPU and move it there
is printed apart (the training loop adds it to every step). Before timing, each
variant's first loss is checked against the float32 eager one from the same weights
(bfloat16 within 2e-2 relative, compiled within 1e-4), so a fast but wrong step fails.

    .venv/bin/python benchmarks/device_training.py --device cuda [--out FILE.json]
    .venv/bin/python benchmarks/device_training.py --device cpu --quick   # a smoke run, seconds

There is no "usual way" here to divide by (the CPU ratios are in training_step.py):
the last line prints the compiled / eager and bfloat16 / float32 speed-ups.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from typing import Any, Callable

import torch

import icl_interp as ii
from icl_interp.training.distributed import Dist
from icl_interp.training.presets import get_preset
from icl_interp.training.step import TrainStep, make_optimizer


def sizes(quick: bool) -> dict[str, dict[str, Any]]:
    """name -> task, model config, batch size, points per prompt (``quick``: small batches, for a CPU smoke run)."""
    default = get_preset("default")  # the shipped default's task, size and batch
    return {
        "default": {"task": ii.core.tasks.task_from_dict(default["task"]), "points": default["model"]["max_points"],
                    "batch": 16 if quick else default["train"]["batch_size"], "model": ii.ModelConfig(**default["model"])},
        "garg-standard": {"task": ii.LinearRegression(d=20), "points": 41, "batch": 4 if quick else 64,
                          "model": ii.ModelConfig(d=20, n_layers=12, n_heads=8, d_model=256, max_points=41)},
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_variant(size: dict, state: dict, device: torch.device, dtype: str, compile: bool) -> Callable[[], float]:
    """A fresh model from ``state`` on ``device`` and its training step on one fixed batch; returns ``step() -> loss``."""
    model = ii.ICLTransformer(size["model"], size["task"])
    model.load_own_state_dict(state)
    model.to(device).train()
    cfg = ii.TrainConfig(lr=1e-4, grad_clip=1.0, dtype=dtype, compile=compile)
    step = TrainStep(model, make_optimizer(model, cfg, device), cfg, size["task"].norm, device, Dist())
    batch = size["task"].sample(size["batch"], size["points"], seed=0).to(device)
    counter = itertools.count()
    return lambda: float(step(batch, 1e-4, next(counter)))


def time_variant(step: Callable[[], float], device: torch.device, warmup: int, steps: int) -> dict[str, float]:
    """The first loss, the warm-up's seconds (a compile happens there) and steps per second after it."""
    start = time.perf_counter()
    first = step()
    for _ in range(warmup - 1):
        step()
    synchronize(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"first_loss": first, "warmup_s": warm, "steps_per_s": steps / seconds, "ms_per_step": 1000 * seconds / steps}


def sampling_ms(size: dict, device: torch.device, repeats: int = 20) -> float:
    """Milliseconds to sample one training batch on the CPU and move it to ``device``."""
    start = time.perf_counter()
    for seed in range(repeats):
        size["task"].sample(size["batch"], size["points"], seed=seed).to(device)
    synchronize(device)
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 100; --quick 3)")
    parser.add_argument("--quick", action="store_true", help="small batches, 3 steps, no compile: a smoke run for a CPU")
    parser.add_argument("--out", default=None, help="also write every figure to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    steps = args.steps or (3 if args.quick else 100)
    warmup = 1 if args.quick else 10
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# device_training: torch {torch.__version__}, {name}, {torch.get_num_threads()} CPU threads; {steps} timed steps")
    results: dict[str, Any] = {"device": name, "torch": torch.__version__, "steps": steps, "sizes": {}}
    for size_name, size in sizes(args.quick).items():
        torch.manual_seed(0)
        state = ii.ICLTransformer(size["model"], size["task"]).own_state_dict()
        n_params = sum(t.numel() for t in state.values())
        row: dict[str, Any] = {"batch": size["batch"], "points": size["points"], "parameters": n_params,
                               "sample_ms": sampling_ms(size, device)}
        print(f"{size_name}: {n_params:,} parameters, batch {size['batch']} x {size['points']} points; "
              f"sampling a batch and moving it: {row['sample_ms']:.2f} ms")
        reference = None
        for dtype in ("float32", "bfloat16"):
            for compile in (False,) if args.quick else (False, True):
                key = f"{dtype}, {'compiled' if compile else 'eager'}"
                got = time_variant(make_variant(size, state, device, dtype, compile), device, warmup, steps)
                reference = got["first_loss"] if reference is None else reference
                tol = 2e-2 if dtype == "bfloat16" else 1e-4
                if abs(got["first_loss"] - reference) > tol * abs(reference):
                    raise AssertionError(f"{size_name} {key}: first loss {got['first_loss']:.6g} against float32 eager "
                                         f"{reference:.6g} (tolerance {tol} relative)")
                row[key] = got
                print(f"  {key:<20} {got['steps_per_s']:8.1f} steps/s  ({got['ms_per_step']:.2f} ms; warm-up "
                      f"{got['warmup_s']:.1f} s; first loss {got['first_loss']:.5f})")
        results["sizes"][size_name] = row
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    speedups = []
    for size_name, row in results["sizes"].items():
        base = row["float32, eager"]["steps_per_s"]
        speedups += [f"{size_name} {k} {v['steps_per_s'] / base:.2f}x" for k, v in row.items()
                     if isinstance(v, dict) and k != "float32, eager"]
    print("RATIO device_training (steps/s over float32 eager): " + ", ".join(speedups))


if __name__ == "__main__":
    main()
