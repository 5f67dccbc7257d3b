"""The local learning coefficient (LLC) of a model at its weights, estimated with SGLD (devinterp).

The LLC measures how degenerate the loss is around the weights (a regular model with
``k`` parameters at a minimum has ``k / 2``; degeneracy lowers it). The developmental
work on transformers trained for in-context linear regression (Hoogland et al. 2024)
reads stages of training from its turning points. This module wraps
``devinterp.slt.llc.llc`` (the optional extra: ``pip install icl-interp[devinterp]``)
for any model the tools accept, with the model's *exact* training loss: the normalised
squared error on ``n_prompts`` fixed prompts of its task. devinterp's data set holds
each prompt as its index (``input_ids = [i, i]``) and the loss looks the prompt up, so
the per-"token" loss is the prompt's error and its mean is the training loss.

Defaults are the settings calibrated on the shipped ``default`` (issue 30, devinterp
2.0.1): step size 3e-5, localization 1000, ``n * beta = n / log n``, 4 chains x 150
draws after 50 draws of burn-in, batch 64. The absolute value depends strongly on
the localization: compare LLCs only at the same settings (docs/llc.md).

devinterp's estimate is ``n_beta * (mean sampled loss - initial loss)`` per chain,
the mean taken over every SGLD step, burn-in included (devinterp 2.0.1's reduction).
The initial loss is taken on exactly the batches the chains see, in their order
(``num_init_loss_batches`` = the steps of a chain; devinterp's default, 32 batches,
leaves a data-subset offset in every estimate: docs/llc.md).
The result carries the per-chain traces and three diagnostics: divergence raises a
ValueError naming the step size; a trace still rising in its last quarter is flagged
``converged=False``; a negative estimate (the weights are not near a minimum of this
loss) ``near_minimum=False``.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from torch import Tensor, nn

from ..core import backend, fast_paths
from ..core.checks import check_float, check_int
from ..core.protocol import as_model, check_batch, model_device
from ..core.tasks import Curriculum, ICLBatch, Task
from .runner import model_norm, normalised_error

__all__ = ["llc", "llc_of_loss", "LLCResult", "training_stage", "DEFAULTS", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'icl-interp[devinterp]'  (or: pip install 'devinterp>=2')"

#: the settings calibrated on the shipped ``default`` (issue 30); ``n_beta=None`` means n / log n
DEFAULTS: dict[str, Any] = {"lr": 3e-5, "localization": 1000.0, "n_beta": None, "num_chains": 4, "num_draws": 150,
                            "num_burnin_steps": 50, "batch_size": 64, "n_prompts": 4096, "seed": 0}

#: a trace whose fitted rise over its last quarter exceeds this fraction of its level there (and twice its own standard
#: error) is still rising
RISE_TOLERANCE = 0.05


def _devinterp() -> tuple[Any, Any]:
    """devinterp's ``llc`` (sample, then compute the LLC) and its sampler module; an ImportError with the pip command
    when missing."""
    try:
        from devinterp.slt import sampler
        from devinterp.slt.llc import llc as devinterp_llc
    except ImportError as e:
        raise ImportError(f"ii.llc needs devinterp (>= 2), which is not installed ({e}): {INSTALL_HINT}") from e
    return devinterp_llc, sampler


@dataclass
class LLCResult:
    """An LLC estimate: the mean over chains, its standard error, the per-chain values and traces, and the diagnostics.

    ``trace[c][t]`` is chain ``c``'s ``n_beta * (loss at SGLD step t - initial loss)`` (burn-in included): its mean
    over ``t`` is ``per_chain[c]``. ``prompts``: the prompts it was measured on (``active_dims``, ``n_points``,
    ``n_prompts``). ``stage``: for a snapshot trained under a curriculum on fewer dims or points than the full task,
    the same estimate on the prompts of its own stage (else None).
    """

    llc: float
    se: float
    per_chain: list[float]
    trace: list[list[float]]
    init_loss: float
    converged: bool
    near_minimum: bool
    rise: float
    settings: dict
    prompts: dict
    stage: Optional["LLCResult"] = None
    step: Optional[int] = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self, traces: bool = False) -> dict:
        """JSON-ready; the per-step traces only with ``traces=True`` (they are long)."""
        out = asdict(self)
        out["stage"] = None if self.stage is None else self.stage.to_dict(traces)
        if not traces:
            out.pop("trace")
        return out


class _Diverged(Exception):
    """The SGLD chain left the region where the loss is finite."""


class _PromptIndex(torch.utils.data.Dataset):
    """Prompt ``i`` as devinterp's sequence ``[i, i]`` (one "next token", whose loss is the prompt's error)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": torch.tensor([i, i])}


def _root(model: Any) -> nn.Module:
    """The module whose parameters are sampled: the model itself if it is a module (read-in, positions, core), else its core."""
    return model if isinstance(model, nn.Module) else model.hooked


def _predict(model: Any, batch: ICLBatch) -> Tensor:
    """The model's predictions on ``batch``, differentiable (the fused forward where the core allows it)."""
    inp = model.encode_batch(batch)
    hooked = model.hooked
    out = fast_paths.fused_forward(hooked, inp) if inp.is_floating_point() else None
    if out is None:
        with backend.quiet_tl():
            out = hooked(inp, start_at_layer=0) if inp.is_floating_point() else hooked(inp)
    return model.readout(out, batch)


class _Net(nn.Module):
    """What devinterp samples and copies per chain: the model's predictions as a module. Its parameters: the whole
    ICLTransformer, or an attached model's core (its ``encode`` and ``readout`` stay the user's functions)."""

    def __init__(self, model: Any):
        super().__init__()
        self.core = _root(model)
        self.tool = None if isinstance(model, nn.Module) else model  # an attached model is no module: kept beside its core

    def forward(self, batch: ICLBatch) -> Tensor:
        return _predict(self.core if self.tool is None else self.tool, batch)


class _Holder(nn.Module):
    """A user's module under a name devinterp does not read as a TransformerLens model (it moves those with
    ``print_details``); the loss gets the chain's copy of the module itself."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.inner = module


def _per_example(loss: Callable[[nn.Module, Tensor], Tensor]) -> Callable[[nn.Module, Tensor], Tensor]:
    """devinterp's ``loss_fn(holder, input_ids) -> [B, 1]`` from ``loss(module, idx) -> [B]``; a non-finite loss or a
    refusal of non-finite values under non-finite parameters is the chain diverging."""

    def fn(holder: nn.Module, input_ids: Tensor) -> Tensor:
        idx = input_ids[:, 0]
        try:
            err = loss(holder.inner, idx)
        except ValueError as e:  # e.g. a tool model's read-out refuses non-finite predictions
            if not all(bool(torch.isfinite(p).all()) for p in holder.parameters()):
                raise _Diverged(str(e)) from None
            raise
        if not isinstance(err, Tensor) or tuple(err.shape) != (idx.shape[0],):
            got = tuple(err.shape) if isinstance(err, Tensor) else type(err).__name__
            raise ValueError(f"loss must return one loss per example, a tensor of shape ({idx.shape[0]},), got {got}")
        if not bool(torch.isfinite(err).all()):
            raise _Diverged("the loss is NaN or Inf")
        return err.unsqueeze(-1)

    return fn


def _prompt_loss(batch: ICLBatch, norm: float) -> Callable[[nn.Module, Tensor], Tensor]:
    """``loss(net, idx)``: the normalised squared error of each prompt ``idx`` of ``batch`` (over its predicted
    positions); the mean over all prompts is the training loss on them."""

    def loss(net: nn.Module, idx: Tensor) -> Tensor:
        sub = batch[idx.to(batch.xs.device)]
        return normalised_error(net(sub), sub, norm, per_prompt=True)

    return loss


@contextmanager
def _flush_denormal() -> Iterator[None]:
    """``torch.set_flush_denormal(True)`` for the run (without it SGLD near zero weights slowed ~30x), then the previous state."""
    probe = torch.tensor([1e-39]) * torch.tensor([1.0])  # a float32 denormal survives a multiply unless flushing is on
    was_on = float(probe) == 0.0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_on)


def _rise(trace: Tensor, burnin: int) -> tuple[float, float]:
    """The fitted rise of the chains' mean trace over its last quarter of draws (after burn-in), and its standard error."""
    mean = trace[:, burnin:].mean(0).double()
    tail = mean[-max(3, mean.numel() // 4):]
    t = torch.arange(tail.numel(), dtype=torch.float64) - (tail.numel() - 1) / 2
    slope = float((t * (tail - tail.mean())).sum() / (t * t).sum())
    resid = tail - tail.mean() - slope * t
    se_slope = math.sqrt(float((resid * resid).sum()) / max(1, tail.numel() - 2) / float((t * t).sum()))
    return slope * (tail.numel() - 1), se_slope * (tail.numel() - 1)


def training_stage(model: Any) -> Optional[dict]:
    """For a saved snapshot (``load_model`` of a run's ``snapshots/step_*``): the step and the curriculum stage of its
    last update, ``{"step", "active_dims", "n_points", "full_dims", "full_points"}``; None when the model records no
    training step (a final model, a model built in memory)."""
    training = (getattr(model, "saved_config", None) or {}).get("training") or {}
    step, cfg = training.get("step"), training.get("train_config")
    if step is None or cfg is None:
        return None
    n_points = cfg.get("n_points") or model.cfg.max_points
    curriculum = Curriculum(**cfg["curriculum"]) if cfg.get("curriculum") else Curriculum.constant(model.cfg.d, n_points)
    dims, points = curriculum.at(max(0, int(step) - 1))  # snapshot "step" counts steps done: its last update was step - 1
    return {"step": int(step), "active_dims": dims, "n_points": points,
            "full_dims": curriculum.dims_end, "full_points": curriculum.points_end}


_SAMPLER = ("lr", "localization", "n_beta", "num_chains", "num_draws", "num_burnin_steps", "batch_size", "seed")


def _settings(n_prompts: int, given: dict) -> dict:
    """The SGLD settings: :data:`DEFAULTS` overridden by ``given``, checked (``n_beta`` None: n / log n)."""
    unknown = sorted(set(given) - set(_SAMPLER))
    if unknown:
        raise TypeError(f"unknown SGLD settings {unknown}; the settings are {list(_SAMPLER)}")
    kw = {k: given.get(k, DEFAULTS[k]) for k in _SAMPLER}
    kw["lr"] = check_float("lr", kw["lr"], min_value=0.0, strict_min=True)
    kw["localization"] = check_float("localization", kw["localization"], min_value=0.0)
    for name in ("num_chains", "num_draws", "batch_size"):
        kw[name] = check_int(name, kw[name], min_value=1)
    kw["num_burnin_steps"] = check_int("num_burnin_steps", kw["num_burnin_steps"], min_value=0)
    kw["seed"] = check_int("seed", kw["seed"], min_value=0)
    if kw["batch_size"] > n_prompts:
        raise ValueError(f"batch_size ({kw['batch_size']}) must be at most n_prompts ({n_prompts})")
    if kw["n_beta"] is None:
        kw["n_beta"] = n_prompts / math.log(n_prompts)
    kw["n_beta"] = check_float("n_beta", kw["n_beta"], min_value=0.0, strict_min=True)
    return kw


def _run(module: nn.Module, loss: Callable[[nn.Module, Tensor], Tensor], n: int, s: dict, device: str, progress: bool) -> LLCResult:
    """One devinterp run: ``module``'s parameters sampled under ``loss(module, idx)`` on the ``n`` examples."""
    devinterp_llc, sampler = _devinterp()
    holder = _Holder(module)
    if not any(True for _ in holder.parameters()):
        raise ValueError("the model has no parameters to sample")
    quiet = None
    if not progress:
        quiet, sampler.trange = sampler.trange, partial(sampler.trange, disable=True)
    try:
        with tempfile.TemporaryDirectory(prefix="icl_interp_llc_") as tmp, _flush_denormal(), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ds = devinterp_llc(
                    holder, _PromptIndex(n), {}, lr=s["lr"], n_beta=s["n_beta"], localization=s["localization"],
                    num_chains=s["num_chains"], num_draws=s["num_draws"], num_burnin_steps=s["num_burnin_steps"],
                    batch_size=s["batch_size"], init_seed=s["seed"], loss_fn=_per_example(loss), device=device,
                    num_init_loss_batches=s["num_burnin_steps"] + s["num_draws"],
                    output_path=Path(tmp) / "samples.zarr",
                )
                failed = [str(w.message) for w in caught if "Chain failed" in str(w.message)]
                if failed:
                    raise _Diverged(failed[0])
                per_chain = [float(v) for v in ds.llc_per_chain.values]
                trace = torch.as_tensor(ds.loss_trace.values, dtype=torch.float64)
                init = float(ds.init_loss)
            except _Diverged as e:
                raise ValueError(
                    f"SGLD diverged at step size lr={s['lr']:g} ({e}): try a smaller lr (e.g. {s['lr'] / 10:g}) "
                    f"or a larger localization (now {s['localization']:g}); see docs/llc.md on calibrating"
                ) from None
    finally:
        if quiet is not None:
            sampler.trange = quiet
    if not (all(math.isfinite(v) for v in per_chain) and bool(torch.isfinite(trace).all())):  # devinterp's own checks missed
        raise ValueError(f"SGLD diverged at step size lr={s['lr']:g} (a non-finite loss): try a smaller lr (e.g. {s['lr'] / 10:g})")
    trace = s["n_beta"] * (trace - init)
    k = len(per_chain)
    mean = sum(per_chain) / k
    se = math.sqrt(sum((v - mean) ** 2 for v in per_chain) / (k - 1) / k) if k > 1 else math.nan
    rise, rise_se = _rise(trace, s["num_burnin_steps"])
    tail_level = abs(float(trace[:, s["num_burnin_steps"]:].mean(0)[-max(3, s["num_draws"] // 4):].mean()))
    converged = not (rise > 2 * rise_se and rise > RISE_TOLERANCE * tail_level)
    notes = []
    if not converged:
        notes.append(f"the trace still rises by {rise:.3g} (+- {rise_se:.2g}) over its last quarter: more draws, "
                     "a larger step size or a larger localization")
    if mean < 0:
        notes.append("negative estimate: the weights are not near a minimum of this loss (SGLD found lower loss nearby)")
    return LLCResult(mean, se, per_chain, trace.tolist(), init, converged, mean >= 0, rise, dict(s), {"n": n}, notes=notes)


def _estimate(model: Any, batch: ICLBatch, dims: Optional[int], norm: float, s: dict, progress: bool) -> LLCResult:
    """One run on the prompts of ``batch`` (``dims`` active dimensions; None: as given), the model's training loss."""
    result = _run(_Net(model), _prompt_loss(batch, norm), batch.batch_size, s, str(model_device(model)), progress)
    result.prompts = {"active_dims": dims, "n_points": batch.n_points, "n_prompts": batch.batch_size}
    return result


def llc_of_loss(module: nn.Module, loss: Callable[[nn.Module, Tensor], Tensor], n: int, *, progress: bool = False,
                **settings: Any) -> LLCResult:
    """The LLC of ``module`` at its parameters under a loss over ``n`` examples, written per example.

    ``loss(m, idx)`` returns the losses ``[len(idx)]`` of examples ``idx`` (a LongTensor into ``0..n-1``) under ``m``
    (each chain's copy of ``module``); their mean over all ``n`` is the empirical loss. The estimator behind
    :func:`llc`, for any model (the known-truth tests run least squares through it). ``settings``: the SGLD
    settings of :func:`llc` (``lr``, ``localization``, ``n_beta``, ``num_chains``, ...; default :data:`DEFAULTS`).
    """
    _devinterp()
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not callable(loss):
        raise TypeError(f"loss must be callable (module, idx) -> per-example losses, got {type(loss).__name__}")
    n = check_int("n", n, min_value=2)
    s = _settings(n, settings)
    p = next(iter(module.parameters()), None)
    return _run(module, loss, n, s, str(p.device) if p is not None else "cpu", progress)


def llc(
    model: Any,
    *,
    task: Optional[Task] = None,
    n_points: Optional[int] = None,
    active_dims: Optional[int] = None,
    prompts: Optional[ICLBatch] = None,
    n_prompts: int = DEFAULTS["n_prompts"], lr: float = DEFAULTS["lr"], localization: float = DEFAULTS["localization"],
    n_beta: Optional[float] = DEFAULTS["n_beta"], num_chains: int = DEFAULTS["num_chains"],
    num_draws: int = DEFAULTS["num_draws"], num_burnin_steps: int = DEFAULTS["num_burnin_steps"],
    batch_size: int = DEFAULTS["batch_size"], seed: int = DEFAULTS["seed"],
    stage: bool = True,
    progress: bool = False,
) -> LLCResult:
    """The LLC of ``model`` (an ICLTransformer or ``attach(...)`` result) at its weights, on its task's prompts.

    The loss is the model's training loss: the normalised squared error (the model's normaliser) on ``n_prompts``
    prompts of ``task`` (default: the model's) with ``n_points`` examples (default: the model's ``max_points``;
    required for an attached model) and ``active_dims`` (default: all), drawn with ``seed``; or on ``prompts`` (an
    ICLBatch) as given. For an ICLTransformer every parameter is sampled; for an attached model those of its core.
    ``seed`` also seeds the chains: the same seed gives the same estimate. The SGLD settings (``lr``,
    ``localization``, ``n_beta`` (None: n / log n), chains, draws, burn-in, batch) default to the calibrated ones
    (:data:`DEFAULTS`). With ``stage=True`` a snapshot trained under a curriculum whose last update saw fewer dims or
    points than the full task is measured on its stage's prompts too (``result.stage``); the main estimate is on the
    full task. Raises ValueError when SGLD diverges (it names the step size), ImportError without devinterp.
    """
    _devinterp()
    model = as_model(model)
    if not isinstance(stage, bool):
        raise TypeError(f"stage must be a bool, got {type(stage).__name__}")
    n_prompts = check_int("n_prompts", n_prompts, min_value=2)
    if prompts is not None:
        if task is not None or n_points is not None or active_dims is not None:
            raise ValueError("pass either prompts or (task, n_points, active_dims), not both")
        prompts = check_batch("prompts", prompts, model)
        n_prompts = prompts.batch_size
        if n_prompts < 2:
            raise ValueError(f"prompts must hold at least 2 prompts, got {n_prompts}")
    s = _settings(n_prompts, {"lr": lr, "localization": localization, "n_beta": n_beta, "num_chains": num_chains,
                              "num_draws": num_draws, "num_burnin_steps": num_burnin_steps, "batch_size": batch_size, "seed": seed})
    norm = model_norm(model)
    where = training_stage(model) if stage else None
    if prompts is None:
        task = task if task is not None else getattr(model, "task", None)
        if not isinstance(task, Task):
            raise ValueError(f"task must be given (a Task) for a model that has none, got {type(task).__name__}")
        if n_points is None:
            max_points = getattr(getattr(model, "cfg", None), "max_points", None)
            if max_points is None:
                raise ValueError("n_points must be given for a model without cfg.max_points (an attached model)")
            n_points = where["full_points"] if where else max_points
        n_points = check_int("n_points", n_points, min_value=1)
        dims = task.d if active_dims is None else check_int("active_dims", active_dims, min_value=1, max_value=task.d)
        prompts = check_batch("prompts", task.sample(n_prompts, n_points, seed=seed, active_dims=dims).to(model_device(model)), model)
    else:
        dims = None
    result = _estimate(model, prompts, dims, norm, s, progress)
    if where is not None:
        result.step = where["step"]
        if (where["active_dims"], where["n_points"]) != (where["full_dims"], where["full_points"]) and task is not None:
            staged = task.sample(n_prompts, where["n_points"], seed=seed, active_dims=where["active_dims"])
            staged = check_batch("prompts", staged.to(model_device(model)), model)
            result.stage = _estimate(model, staged, where["active_dims"], norm, s, progress)
            result.stage.step = where["step"]
    return result
