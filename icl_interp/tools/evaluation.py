"""Risk curves: error against the number of in-context examples.

Two words mean exactly this everywhere in the project:

- **error** at k: the mean over prompts of ``(prediction - y_k)^2 / task.norm``, where
  the prediction of ``y_k`` uses the first k examples and ``x_k`` (label noise included);
  ``task.norm`` is d for dense and s for sparse regression (Garg et al.);
- **excess risk** at k: ``error - noise_std^2 / task.norm``, i.e. ``(MSE - sigma^2) / norm``.

:func:`evaluate` accepts a baseline estimator (anything with ``fit``/``predict``) or a
model: a callable ``model(xs, ys)`` returning ``[B,n]`` (every prefix at once) or ``[B]``
(the prediction of the last y only). Intervals are bootstrap 5-95% percentiles over
prompts. Nothing here imports transformer_lens or pyplot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import torch
from jaxtyping import Float
from torch import Tensor

from ..baselines.estimators import Estimator
from ..baselines.tuning import prefix_predictions
from ..core.checks import check_int, check_tensor
from ..core.devices import check_model_there, resolve_device
from ..core.tasks import ICLBatch, Task

__all__ = ["EvalResult", "evaluate", "model_predictions", "ratio_interval", "paired_bootstrap"]

_CURVES = ("error", "excess_risk", "error_low", "error_high", "excess_low", "excess_high")


@dataclass
class EvalResult:
    """One risk curve with bootstrap intervals; ``per_prompt`` holds the normalised squared errors."""

    name: str
    n_context: Tensor
    error: Tensor
    excess_risk: Tensor
    error_low: Tensor
    error_high: Tensor
    excess_low: Tensor
    excess_high: Tensor
    per_prompt: Optional[Float[Tensor, "prompts n"]] = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, per_prompt: bool = True) -> dict:
        """JSON-serialisable form (lists); ``per_prompt=False`` leaves the big table out."""
        out: dict[str, Any] = {"name": self.name, "n_context": self.n_context.tolist()}
        out["meta"] = dict(self.meta)
        out.update({key: getattr(self, key).tolist() for key in _CURVES})
        if per_prompt and self.per_prompt is not None:
            out["per_prompt"] = self.per_prompt.tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "EvalResult":
        missing = [k for k in ("name", "n_context", *_CURVES) if k not in data]
        if missing:
            raise ValueError(f"data is missing keys {missing}")
        curves = {key: torch.tensor(data[key], dtype=torch.float64) for key in _CURVES}
        per_prompt = data.get("per_prompt")
        return cls(
            name=data["name"],
            n_context=torch.tensor(data["n_context"], dtype=torch.long),
            per_prompt=None if per_prompt is None else torch.tensor(per_prompt, dtype=torch.float64),
            meta=dict(data.get("meta", {})),
            **curves,
        )


def _is_baseline(predictor: Any) -> bool:
    if isinstance(predictor, torch.nn.Module):
        return False
    return isinstance(predictor, Estimator) or (hasattr(predictor, "fit") and hasattr(predictor, "predict"))


def _model_output(model: Callable, xs: Tensor, ys: Tensor, query_only: bool = False) -> Tensor:
    out = model(xs, ys)
    if not isinstance(out, Tensor):
        raise TypeError(f"model must return a tensor, got {type(out).__name__}")
    if out.ndim == 3 and out.shape[-1] == 1:
        out = out[..., 0]
    b, n = ys.shape
    allowed = [(b,)] if query_only else [(b, n), (b,)]
    if tuple(out.shape) not in allowed:
        want = " or ".join(str(list(s)) for s in allowed)
        raise ValueError(f"model output must have shape {want} for {n} points, got {tuple(out.shape)}")
    return out


@torch.no_grad()
def model_predictions(model: Callable, batch: ICLBatch) -> Float[Tensor, "batch n"]:
    """``preds[:, k]``: the model's prediction of ``ys[:, k]`` from the first k examples.

    A model returning ``[B]`` (query-only) is called on every prefix ``batch.truncate(k + 1)``.
    An ``nn.Module`` is run in eval mode on its parameters' device, then restored.
    """
    module = model if isinstance(model, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    device = next((p.device for p in module.parameters()), None) if module is not None else None
    batch = batch.to(device) if device is not None else batch
    try:
        if module is not None:
            module.eval()
        out = _model_output(model, batch.xs, batch.ys)
        if out.ndim == 1:
            prefixes = map(batch.truncate, range(1, batch.n_points))
            cols = [_model_output(model, b.xs, b.ys, query_only=True) for b in prefixes]
            out = torch.stack([*cols, out], dim=1)
    finally:
        if module is not None:
            module.train(was_training)
    return out.detach().to("cpu", torch.float64)


def _resample_counts(n: int, n_boot: int, seed: int, dtype: torch.dtype) -> Tensor:
    """``[n_boot, n]``: how often each of ``n`` prompts is drawn in each bootstrap resample (with replacement)."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(n, (n_boot, n), generator=gen)
    counts = torch.zeros(n_boot, n, dtype=dtype)
    return counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=dtype))


def _bootstrap(per_prompt: Tensor, n_boot: int, seed: int) -> tuple[Tensor, Tensor]:
    """5% and 95% percentiles of the mean over prompts, resampling prompts with replacement."""
    mean = per_prompt.mean(0)
    if n_boot == 0:
        return mean, mean
    means = _resample_counts(per_prompt.shape[0], n_boot, seed, per_prompt.dtype) @ per_prompt / per_prompt.shape[0]
    q = torch.tensor([0.05, 0.95], dtype=means.dtype)
    low, high = torch.quantile(means, q, dim=0)
    return low, high


def ratio_interval(
    numerator: Float[Tensor, " prompts"], denominator: Float[Tensor, " prompts"], n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """5-95% bootstrap interval of ``mean(numerator) / mean(denominator)`` over paired prompts.

    The two are per-prompt errors of two predictors on the *same* prompts (an
    :class:`EvalResult`'s ``per_prompt`` column): each resample draws prompts once
    for both, so what the prompts share cancels, as it does in the ratio itself.
    """
    num = check_tensor("numerator", numerator, ndim=1).double()
    den = check_tensor("denominator", denominator, shape=tuple(num.shape)).double()
    n_boot = check_int("n_boot", n_boot, min_value=1)
    counts = _resample_counts(num.shape[0], n_boot, check_int("seed", seed, min_value=0), num.dtype)
    ratios = (counts @ num) / (counts @ den)
    low, high = torch.quantile(ratios, torch.tensor([0.05, 0.95], dtype=ratios.dtype))
    return float(low), float(high)


_COUNTS_CELLS = 1 << 22


def paired_bootstrap(
    per_prompt: Float[Tensor, "prompts k"], statistic: Callable[[Tensor], Tensor], n_boot: int = 2000, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """A statistic of the means over prompts, and its value on ``n_boot`` paired bootstrap resamples.

    ``per_prompt`` holds k per-prompt quantities scored on the *same* prompts (one column
    each: the clean error, each masked head's error, ...). Every resample draws prompts
    once for all columns, so what the prompts share cancels in the statistic.
    ``statistic`` maps means ``[..., k]`` to ``[..., m]`` (or ``[...]``), vectorised over the
    leading dimensions. Returns (the statistic on the means, ``[n_boot, ...]`` draws);
    :func:`ratio_interval` is the case ``mean(a) / mean(b)``.
    """
    table = check_tensor("per_prompt", per_prompt, ndim=2).double()
    if not callable(statistic):
        raise TypeError(f"statistic must be a callable on the means [..., k], got {type(statistic).__name__}")
    n_boot, n = check_int("n_boot", n_boot, min_value=1), table.shape[0]
    gen = torch.Generator().manual_seed(check_int("seed", seed, min_value=0))
    chunk = max(1, min(n_boot, _COUNTS_CELLS // n))  # resamples per block: at most about 4M counts in memory at once
    draws = []
    for start in range(0, n_boot, chunk):
        idx = torch.randint(n, (min(chunk, n_boot - start), n), generator=gen)
        counts = torch.zeros(idx.shape, dtype=table.dtype).scatter_add_(1, idx, torch.ones_like(idx, dtype=table.dtype))
        draws.append(statistic(counts @ table / n))
    return statistic(table.mean(0)), torch.cat(draws)


def evaluate(
    predictor: Union[Estimator, Callable, torch.nn.Module],
    task: Task,
    n_points: Optional[int] = None,
    n_prompts: int = 1000,
    seed: int = 0,
    batch_size: int = 500,
    bootstrap: int = 1000,
    name: Optional[str] = None,
    device: Optional[Any] = None,
) -> EvalResult:
    """Risk curve of ``predictor`` on ``n_prompts`` prompts of ``task`` sampled with ``seed``.

    ``n_points`` defaults to ``2 d + 1`` (41 at d = 20, as in Garg et al.). Prompts are
    sampled once, so the result does not depend on ``batch_size`` (prompts per call).
    Baselines that need the true weights (``needs_w``) receive them. Prompts are
    sampled on the CPU; ``device`` (``"cuda"``, ...) moves them there, so a baseline
    computes there. A model runs where it is (its prompts follow it; a ``device``
    other than the model's is refused: the model is never moved).
    """
    if not isinstance(task, Task):
        raise TypeError(f"task must be a Task, got {type(task).__name__}")
    n_points = 2 * task.d + 1 if n_points is None else check_int("n_points", n_points, min_value=1)
    n_prompts = check_int("n_prompts", n_prompts, min_value=1)
    seed = check_int("seed", seed, min_value=0)
    batch_size = check_int("batch_size", batch_size, min_value=1)
    bootstrap = check_int("bootstrap", bootstrap, min_value=0)
    baseline = _is_baseline(predictor)
    if not baseline and not callable(predictor):
        kind = type(predictor).__name__
        raise TypeError(f"predictor must be an estimator (fit/predict) or a callable model, got {kind}")
    if name is None:
        name = getattr(predictor, "name", None) or getattr(predictor, "__name__", None)
        name = name or (repr(predictor) if baseline else type(predictor).__name__)

    dev = None if device is None else resolve_device(device)
    if dev is not None and isinstance(predictor, torch.nn.Module):
        check_model_there(dev, next((p.device for p in predictor.parameters()), dev))
    full = task.sample(n_prompts, n_points, seed=seed)
    chunks = []
    for start in range(0, n_prompts, batch_size):
        batch = full[start : start + batch_size]
        batch = batch if dev is None else batch.to(dev)
        preds = prefix_predictions(predictor, batch) if baseline else model_predictions(predictor, batch)
        chunks.append(check_tensor("predictions", preds.double().cpu(), shape=(len(batch), n_points), finite=False))
    per_prompt = (torch.cat(chunks) - full.ys.double()) ** 2 / task.norm
    floor = task.noise_std**2 / task.norm
    error = per_prompt.mean(0)
    low, high = _bootstrap(per_prompt, bootstrap, seed)
    return EvalResult(
        name=name,
        n_context=torch.arange(n_points),
        error=error,
        excess_risk=error - floor,
        error_low=low,
        error_high=high,
        excess_low=low - floor,
        excess_high=high - floor,
        per_prompt=per_prompt,
        meta={"task": task.to_dict(), "n_prompts": n_prompts, "seed": seed, "noise_floor": floor},
    )
