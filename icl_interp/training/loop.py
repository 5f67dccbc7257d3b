"""Training loop: AdamW, warmup + schedule, gradient clipping, curriculum, resumable.

Readable top to bottom. Each step's batch is drawn on the CPU from a generator
seeded by ``(seed, step)`` and moved to the training device, so a run is a pure
function of its config: a run killed at any point and resumed from its last
checkpoint ends with bitwise the same weights as an unbroken run (same device, same
thread count). The step itself (fused forward, autocast, compile, AdamW) is
:mod:`icl_interp.training.step`; data-parallel runs under torchrun are
:mod:`icl_interp.training.distributed`; the checkpoint files :mod:`icl_interp.training.state`.

Output folder (each file or folder replaced as one unit: a kill leaves the previous one)::

    out_dir/checkpoint/state.safetensors   model + AdamW moments, with the step, configs, log and the
                                           tensors' SHA-256 in its header (one file: atomic)
    out_dir/model/                         the final model (``load_model(out_dir / "model")``)
    out_dir/log.json                       the training log (loss, lr, curriculum, evals): a copy of the checkpoint's
    out_dir/snapshots/step_0001000/        with keep_every / keep_log: the model at that step
                                           (``load_model`` reads it; ``snapshots(out_dir)`` lists them)
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ..core.atomic import atomic_write_bytes, writable_folder
from ..core.checkpoint import resolve_model, save_model, zoo_folder
from ..core.checks import check_choice, check_float, check_int, check_json
from ..core.devices import DTYPES, check_device, resolve_device
from ..core.tasks import Curriculum, Task
from . import distributed, tracking
from .state import apply_state, check_resumable, has_checkpoint, read_state, read_state_tensors, save_state, warm_start
from .step import TrainStep, make_optimizer

__all__ = ["TrainConfig", "train", "lr_at", "snapshots", "snapshot_steps"]

# fields that may change between the chunks of one run (snapshots and evaluations only add output)
_FREE = {"train_config": ("progress", "threads", "checkpoint_every", "device", "compile", "log_to", "keep_every", "keep_log",
                          "eval_every", "eval_prompts") + ("steps", "schedule", "decay_frac", "min_lr_ratio", "warmup_steps"),
         "model_config": ("seed",), "task": ()}
# of those, the schedule's: they may change only where the learning rates already used stay the same (_same_history)
_SCHEDULE = ("steps", "schedule", "decay_frac", "min_lr_ratio", "warmup_steps")


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run (all JSON-serialisable)."""

    steps: int = 12000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 300
    schedule: str = "cosine"  # "cosine" | "linear" | "constant" | "wsd" after warmup
    min_lr_ratio: float = 0.02
    decay_frac: float = 0.2  # "wsd" (warmup-stable-decay): constant lr, then a linear decay over this last fraction
    grad_clip: Optional[float] = 1.0
    fast: bool = True  # the fused forward (same function, no hook machinery) whenever nothing listens to the core
    n_points: Optional[int] = None  # default: the model's max_points
    min_points: Optional[int] = None  # if set, each step draws its prompt length in [min_points, curriculum's]
    curriculum: Optional[dict] = None  # Curriculum fields; default: constant
    eval_every: int = 1000
    eval_prompts: int = 512
    checkpoint_every: int = 500
    keep_every: Optional[int] = None  # keep a snapshot of the model every K steps
    keep_log: Optional[int] = None  # keep about this many snapshots at log-spaced steps (first at step 1)
    init_from: Optional[str] = None  # a saved model folder or zoo name whose weights start the run (a warm start)
    seed: int = 0
    threads: Optional[int] = None
    device: Optional[str] = None  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"; None: where the model is
    dtype: str = "float32"  # "bfloat16": the forward under autocast (parameters and analyses stay float32)
    compile: bool = False  # torch.compile the loss (forward + backward); on a CPU ~10% faster steps after a 0.5-1.5 min compile
    log_to: Optional[str] = None  # "wandb": the log goes to Weights & Biases too (rank 0)
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int("steps", self.steps, min_value=1)
        check_int("batch_size", self.batch_size, min_value=1)
        check_float("lr", self.lr, min_value=0.0, strict_min=True)
        check_float("weight_decay", self.weight_decay, min_value=0.0)
        check_int("warmup_steps", self.warmup_steps, min_value=0)
        check_choice("schedule", self.schedule, ("cosine", "linear", "constant", "wsd"))
        check_float("min_lr_ratio", self.min_lr_ratio, min_value=0.0, max_value=1.0)
        check_float("decay_frac", self.decay_frac, min_value=0.0, max_value=1.0, strict_min=True)
        if self.keep_every is not None:
            check_int("keep_every", self.keep_every, min_value=1)
        if self.keep_log is not None:
            check_int("keep_log", self.keep_log, min_value=2)
        if self.init_from is not None and not isinstance(self.init_from, str):
            raise TypeError(f"init_from must be a str (a saved model folder or zoo name), got {type(self.init_from).__name__}")
        if self.grad_clip is not None:
            check_float("grad_clip", self.grad_clip, min_value=0.0, strict_min=True)
        if self.n_points is not None:
            check_int("n_points", self.n_points, min_value=1)
        if self.min_points is not None:
            check_int("min_points", self.min_points, min_value=1)
            if self.n_points is not None and self.min_points > self.n_points:
                raise ValueError(f"min_points ({self.min_points}) exceeds n_points ({self.n_points}), the longest prompt "
                                 "of the run: it would never be used; lower min_points")
        check_int("eval_every", self.eval_every, min_value=1)
        check_int("eval_prompts", self.eval_prompts, min_value=1)
        check_int("checkpoint_every", self.checkpoint_every, min_value=1)
        check_int("seed", self.seed, min_value=0)
        if self.threads is not None:
            check_int("threads", self.threads, min_value=1)
        for name in ("fast", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        if self.device is not None:
            check_device("device", self.device)
            self.device = str(self.device)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("log_to", self.log_to, tracking.LOG_TARGETS)
        self.betas = tuple(self.betas)
        if self.curriculum is not None:
            if isinstance(self.curriculum, Curriculum):
                self.curriculum = asdict(self.curriculum)
            if not isinstance(self.curriculum, dict):
                raise TypeError(f"curriculum must be a dict or Curriculum, got {type(self.curriculum).__name__}")
            Curriculum(**self.curriculum)  # validate
        if not isinstance(self.extra, dict):
            raise TypeError(f"extra must be a dict, got {type(self.extra).__name__}")
        check_json("extra", self.extra)  # it goes into every checkpoint: refused now, not at the first one

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at ``step``: linear warmup, then cosine/linear decay to ``min_lr_ratio * lr``.

    ``"wsd"`` holds ``lr`` until the last ``decay_frac`` of the run, then decays linearly:
    a long constant phase lets the model leave a plateau that a cosine schedule freezes.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "wsd":
        decay_start = max(cfg.warmup_steps, cfg.steps - round(cfg.decay_frac * cfg.steps))
        if step < decay_start:
            return cfg.lr
        frac = (step - decay_start) / max(1, cfg.steps - decay_start)
        return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * (1 - frac))
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    shape = 0.5 * (1 + math.cos(math.pi * frac)) if cfg.schedule == "cosine" else 1 - frac
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape)


def _curriculum(cfg: TrainConfig, model: Any, task: Task) -> Curriculum:
    n = cfg.n_points or model.cfg.max_points
    if cfg.curriculum is None:
        return Curriculum.constant(task.d, n)
    return Curriculum(**cfg.curriculum)


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**63 - 1)


def _same_history(saved: TrainConfig, now: TrainConfig, step: int) -> None:
    """A resumed run may change its schedule (more steps, a later decay) only if every step done so far would have
    had the same learning rate under the new one: then it is bitwise the run the new config gives from scratch."""
    if all(getattr(saved, f) == getattr(now, f) for f in _SCHEDULE):
        return
    if now.steps < step:
        raise ValueError(f"cannot resume: steps={now.steps} is below the {step} steps already done")
    changed = next((t for t in range(step) if lr_at(t, saved) != lr_at(t, now)), None)
    if changed is not None:
        raise ValueError(f"cannot resume with another schedule: step {changed} would have had lr {lr_at(changed, now):.3g}, "
                         f"not the {lr_at(changed, saved):.3g} it was trained with")


def snapshot_steps(cfg: TrainConfig) -> list[int]:
    """The steps (counted as steps done, 1..steps) at which ``cfg`` keeps a snapshot of the model."""
    keep: set[int] = set()
    if cfg.keep_every is not None:
        keep.update(range(cfg.keep_every, cfg.steps + 1, cfg.keep_every))
    if cfg.keep_log is not None:
        ratio = cfg.steps ** (1.0 / (cfg.keep_log - 1))
        keep.update(min(cfg.steps, round(ratio**i)) for i in range(cfg.keep_log))
    return sorted(keep)


def snapshot_dir(out_dir: Union[str, Path], step: int) -> Path:
    return Path(out_dir) / "snapshots" / f"step_{step:07d}"


def snapshots(out_dir: Union[str, Path]) -> list[tuple[int, Path]]:
    """``[(step, folder)]`` of the snapshots a run kept (or a zoo model carries), in step order; each loads with ``load_model``."""
    if not isinstance(out_dir, (str, Path)):
        raise TypeError(f"out_dir must be a str or Path, got {type(out_dir).__name__}")
    try:
        out_dir, name = resolve_model(out_dir)  # a run folder, or a zoo model (the name rule of load_model)
    except ValueError as e:
        raise ValueError(f"out_dir: {e}") from None
    if name is not None:  # a zoo model's snapshots may still have to be fetched
        out_dir = zoo_folder(name, everything=True)
    folder = out_dir / "snapshots"
    found = []
    for p in folder.glob("step_*") if folder.is_dir() else []:
        if p.name[5:].isdigit() and (p / "config.json").is_file():
            found.append((int(p.name[5:]), p))
    return sorted(found)


@torch.no_grad()
def _evaluate(model: Any, task: Task, n_points: int, n_prompts: int, seed: int, device: torch.device) -> dict:
    batch = task.sample(n_prompts, n_points, seed=seed).to(device)
    preds = model(batch.xs, batch.ys)
    if preds.ndim == 1:
        err = ((preds - batch.ys[:, -1]) ** 2).mean() / task.norm
        return {"eval_error_last": float(err)}
    per_pos = ((preds - batch.ys) ** 2).mean(0) / task.norm
    return {"eval_error_last": float(per_pos[-1]), "eval_error_mean": float(per_pos.mean())}


# -- the loop ------------------------------------------------------------------------------

def _device(cfg: TrainConfig, model: Any, dist: distributed.Dist, rank_device: Optional[torch.device]) -> torch.device:
    """Where this process trains: its rank's device, ``cfg.device``, else where the model already is."""
    if rank_device is not None:
        return rank_device
    if cfg.device is not None:
        return resolve_device(cfg.device)
    return next(model.parameters()).device


def train(
    model: Any,
    task: Task,
    cfg: Optional[TrainConfig] = None,
    out_dir: Union[str, Path, None] = None,
    *,
    resume: bool = False,
    max_minutes: Optional[float] = None,
) -> dict:
    """Train ``model`` on ``task``; returns the log. With ``out_dir``, checkpoints and the final model go there.

    ``resume=True`` continues from ``out_dir/checkpoint`` (same configs required).
    ``max_minutes``: train in chunks; stop at the first checkpoint after that much
    wall time (the result has ``"stopped": True`` and no final model is written);
    the next call with ``resume=True`` goes on, bitwise as if never stopped.
    ``cfg.device`` moves the model there (it stays there); under torchrun every
    process trains its slice of each batch (:mod:`icl_interp.training.distributed`).
    Before the model is touched: ``out_dir`` is created and written to once, the
    configs are checked as JSON, and a resume is refused or accepted from the
    checkpoint's JSON and its verified tensors (a refused resume leaves the model as it was).
    """
    from ..core.model import ICLTransformer

    cfg = TrainConfig() if cfg is None else cfg
    if not isinstance(model, ICLTransformer):
        raise TypeError(f"model must be an ICLTransformer, got {type(model).__name__}")
    if not isinstance(task, Task):
        raise TypeError(f"task must be a Task, got {type(task).__name__}")
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if task.d != model.cfg.d:
        raise ValueError(f"task d ({task.d}) does not match the model's d ({model.cfg.d})")
    curriculum = _curriculum(cfg, model, task)
    if curriculum.points_end > model.cfg.max_points:
        raise ValueError(f"n_points ({curriculum.points_end}) exceeds the model's max_points ({model.cfg.max_points})")
    if cfg.min_points is not None and cfg.min_points > curriculum.points_end:
        raise ValueError(f"min_points ({cfg.min_points}) exceeds the longest prompt of the run ({curriculum.points_end}: "
                         f"n_points, the curriculum's end, else the model's max_points): it would never be used; lower it")
    if curriculum.dims_end > task.d:
        raise ValueError(f"curriculum dims_end ({curriculum.dims_end}) exceeds the task's d ({task.d})")
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir")
    if max_minutes is not None:
        max_minutes = check_float("max_minutes", max_minutes, min_value=0.0)
        if out_dir is None:
            raise ValueError("max_minutes needs out_dir (a stopped chunk lives on in its checkpoint)")
    keep = set(snapshot_steps(cfg))
    if keep and out_dir is None:
        raise ValueError("keep_every / keep_log need out_dir (snapshots go to out_dir/snapshots)")
    # every check before the work: the output folder, the configs as JSON, resuming (from the checkpoint's JSON and
    # its verified tensors) are all decided before the model is moved, warm-started or loaded
    out = writable_folder(out_dir, "out_dir") if out_dir is not None else None
    ckpt = out / "checkpoint" if out is not None else None
    for sub in ("checkpoint", "model") if out is not None else ():
        if (out / sub).exists() and not (out / sub).is_dir():
            raise ValueError(f"out_dir {str(out)!r} holds a file named {sub!r} where the run writes its {sub} folder")
    check_json("cfg.extra", cfg.extra)
    meta = {"train_config": cfg.to_dict(), "model_config": {**model.cfg.to_dict(), "task": task.to_dict()}, "task": task.to_dict()}
    state = tensors = None
    if resume and has_checkpoint(ckpt):
        state = read_state(ckpt)
        defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
        check_resumable(state, meta, _FREE, defaults)
        _same_history(TrainConfig(**{**defaults, **state["train_config"]}), cfg, state["step"])
        tensors = read_state_tensors(ckpt, state)

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    dist, rank_device = distributed.context(cfg.device, cfg.batch_size, next(model.parameters()).device.type)
    device = _device(cfg, model, dist, rank_device)
    model.to(device)
    if cfg.init_from is not None and state is None:  # a resumed run's weights all come from its checkpoint
        warm_start(model, cfg.init_from)
    model.cfg.task = task.to_dict()

    opt = make_optimizer(model, cfg, device)
    log: list[dict] = []
    start = 0
    if state is not None:
        apply_state(model, opt, state, tensors)
        start, log = state["step"], state["log"]
    step_fn = TrainStep(model, opt, cfg, task.norm, device, dist)
    tracker = tracking.start(cfg.log_to, out, meta) if dist.is_main else None

    from tqdm.auto import tqdm

    model.train()
    eval_n = curriculum.points_end
    t0 = time.perf_counter() - (log[-1]["time"] if log else 0.0)
    chunk_start = time.perf_counter()
    stopped, failed = False, True
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not (cfg.progress and dist.is_main), desc="train")
    try:
        for step in bar:
            dims, n_points = curriculum.at(step)
            if cfg.min_points is not None and cfg.min_points < n_points:  # seeded by the step: resumable
                gen = torch.Generator().manual_seed(_step_seed(cfg.seed + 1, step))
                n_points = int(torch.randint(cfg.min_points, n_points + 1, (1,), generator=gen))
            lr = lr_at(step, cfg)
            batch = task.sample(cfg.batch_size, n_points, seed=_step_seed(cfg.seed, step), active_dims=dims)
            loss = step_fn(dist.shard(batch).to(device), lr, step)
            done = step + 1
            if done % 50 == 0 or done == cfg.steps or step == 0:
                entry = {"step": done, "loss": dist.mean(loss), "lr": lr, "active_dims": dims, "n_points": n_points,
                         "time": round(time.perf_counter() - t0, 2)}
                if dist.is_main and (done % cfg.eval_every == 0 or done == cfg.steps):
                    model.eval()
                    entry.update(_evaluate(model, task, eval_n, cfg.eval_prompts, 10_000 + cfg.seed, device))
                    model.train()
                log.append(entry)
                if tracker is not None:
                    tracker.log(entry)
                bar.set_postfix(loss=f"{entry['loss']:.3f}", dims=dims, n=n_points)
            if done in keep and dist.is_main:
                model.eval()
                save_model(model, snapshot_dir(out, done), training={"step": done, "train_config": cfg.to_dict(),
                                                                      "dtype": cfg.dtype, "task": task.to_dict(), "log": log[-1:]})
                model.train()
            if ckpt is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                if dist.is_main:
                    save_state(ckpt, model, opt, done, {**meta, "log": log})
                    atomic_write_bytes(out / "log.json", json.dumps(log, indent=0).encode())
                late = max_minutes is not None and done < cfg.steps and time.perf_counter() - chunk_start >= 60 * max_minutes
                if max_minutes is not None and dist.agree(late, device):
                    stopped = True
                    break
        failed = False
    finally:
        bar.close()
        model.eval()
        if tracker is not None:
            tracker.close()
        dist.close(wait=not failed)
    if stopped:
        return {"log": log, "train_config": cfg.to_dict(), "stopped": True, "step": done}
    if out is not None and dist.is_main:
        save_model(model, out / "model", training={"train_config": cfg.to_dict(), "dtype": cfg.dtype, "task": task.to_dict(),
                                                  "final": log[-1] if log else None})
    return {"log": log, "train_config": cfg.to_dict(), "stopped": False}
