"""The model the tools accept: ``ToolModel``, its token ``Layout``, and ``attach`` for a user's model.

A tool model has ``hooked`` (a TransformerLens hooked transformer),
``encode_batch(batch)`` (an ``ICLBatch`` to the core's input: integer tokens or a
float residual ``[B, pos, d_model]`` entering block 0), ``readout(out, batch)``
(the core's output to predictions ``[B, n]``, or ``[B]`` for the query only) and
``layout(n_points, n_tokens)`` (which token holds what). ``ICLTransformer`` is
one; :class:`AttachedModel` (built by ``runner.attach``) makes one of a user's model.

The dtype and device policy, the same for every tool: a batch must be on the
model's device (else a ValueError naming both devices; nothing is moved); a
floating batch of another dtype is cast to the model's dtype, as is a float
``encode`` output.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

from .checks import check_float
from .tasks import ICLBatch, Task

__all__ = ["ToolModel", "Layout", "AttachedModel", "as_model", "check_batch", "model_device", "model_dtype", "sample_for"]


@dataclass(frozen=True)
class Layout:
    """Where things sit in a prompt's token sequence.

    ``query``: the token whose output predicts the last y. ``example_tokens[i]``:
    the token whose output predicts ``y_i`` (None where unknown). ``token_example[t]``:
    the example token ``t`` belongs to (None where unknown).
    """

    n_tokens: int
    query: int
    example_tokens: Optional[Tensor] = None
    token_example: Optional[Tensor] = None


@runtime_checkable
class ToolModel(Protocol):
    """What every tool needs of a model (``ICLTransformer`` and ``attach(...)`` results have it)."""

    hooked: Any

    def encode_batch(self, batch: ICLBatch) -> Tensor: ...

    def readout(self, out: Tensor, batch: ICLBatch) -> Tensor: ...

    def layout(self, n_points: int, n_tokens: int) -> Layout: ...


def model_device(model: Any) -> torch.device:
    """The device of the core's parameters (CPU for a model without parameters)."""
    p = next(iter(model.hooked.parameters()), None)
    return torch.device("cpu") if p is None else p.device


def sample_for(model: Any, n_prompts: int, *, seed: int) -> ICLBatch:
    """``n_prompts`` prompts of the model's task with ``cfg.max_points`` points, drawn from ``seed`` on the CPU, then put
    on the model's device: the same numbers wherever the model runs."""
    return model.task.sample(n_prompts, model.cfg.max_points, seed=seed).to(model_device(model))


def model_dtype(model: Any) -> torch.dtype:
    """The floating dtype of the core's parameters (float32 for a model without parameters)."""
    p = next((p for p in model.hooked.parameters() if p.is_floating_point()), None)
    return torch.float32 if p is None else p.dtype


def _n_positional(fn: Callable) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def check_readout(preds: Any, batch: ICLBatch, source: str = "readout") -> Tensor:
    """The read-out contract: a finite floating tensor ``[B, n]`` or ``[B]``."""
    b, n = batch.ys.shape
    if not isinstance(preds, Tensor):
        raise TypeError(f"{source} must return a torch.Tensor of predictions [{b}, {n}] or [{b}], got {type(preds).__name__}")
    if not preds.is_floating_point():
        raise TypeError(f"{source} must return floating-point predictions, got dtype {preds.dtype}")
    if tuple(preds.shape) not in ((b, n), (b,)):
        raise ValueError(f"{source} must return predictions of shape [{b}, {n}] or [{b}] for this batch, got {tuple(preds.shape)}")
    if not bool(torch.isfinite(preds).all()):
        raise ValueError(f"{source} returned NaN or Inf predictions")
    return preds


class AttachedModel:
    """A user's hooked model with its input encoding and read-out; accepted by every tool."""

    def __init__(
        self,
        hooked: Any,
        encode: Callable[[ICLBatch], Tensor],
        readout: Callable[..., Tensor],
        *,
        task: Optional[Task] = None,
        norm: Optional[float] = None,
        layout: Optional[Callable[[int, int], Layout]] = None,
    ):
        if not hasattr(hooked, "hook_dict") or not hasattr(hooked, "blocks"):
            raise TypeError(
                f"hooked must be a TransformerLens HookedTransformer or TransformerBridge, got {type(hooked).__name__}"
            )
        for name, fn in (("encode", encode), ("readout", readout)):
            if not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        if layout is not None and not callable(layout):
            raise TypeError(f"layout must be callable (n_points, n_tokens) -> Layout, got {type(layout).__name__}")
        if task is not None and not isinstance(task, Task):
            raise TypeError(f"task must be a Task, got {type(task).__name__}")
        self.hooked = hooked
        self.task = task
        if norm is None:
            self.norm = task.norm if task is not None else 1.0
        else:
            self.norm = check_float("norm", norm, min_value=0.0, strict_min=True)
        self._encode = encode
        self._readout = readout
        self._layout = layout
        self._readout_takes_batch = _n_positional(readout) >= 2

    def encode_batch(self, batch: ICLBatch) -> Tensor:
        """``encode(batch)`` under its contract: integer tokens ``[B, pos]`` or a finite float residual ``[B, pos, d_model]``."""
        inp = self._encode(batch)
        if not isinstance(inp, Tensor):
            raise TypeError(f"encode must return a torch.Tensor (tokens or a residual), got {type(inp).__name__}")
        if inp.device != model_device(self):
            raise ValueError(f"encode returned a tensor on {inp.device}, but the model is on {model_device(self)}")
        if not inp.is_floating_point():
            if inp.ndim != 2 or inp.shape[0] != batch.batch_size or inp.dtype == torch.bool:
                raise ValueError(f"encode must return integer tokens of shape [{batch.batch_size}, pos], got {inp.dtype} {tuple(inp.shape)}")
            self._check_length(int(inp.shape[1]), batch)
            return inp
        d_model = int(self.hooked.cfg.d_model)
        if inp.ndim != 3 or inp.shape[0] != batch.batch_size or inp.shape[2] != d_model:
            raise ValueError(f"encode must return a residual of shape [{batch.batch_size}, pos, {d_model}], got {tuple(inp.shape)}")
        if not bool(torch.isfinite(inp).all()):
            raise ValueError("encode returned a residual with NaN or Inf values")
        self._check_length(int(inp.shape[1]), batch)
        return inp.to(model_dtype(self))

    def _check_length(self, n_tokens: int, batch: ICLBatch) -> None:
        """A prompt longer than the core's context (``cfg.n_ctx``) is refused here, before TransformerLens sees it."""
        n_ctx = getattr(self.hooked.cfg, "n_ctx", None)
        if n_ctx is None or n_tokens <= int(n_ctx):
            return
        most = self._max_points(batch, int(n_ctx))
        fit = f"at most {most} points fit" if most is not None else "fewer points fit"
        raise ValueError(f"the prompts of {batch.n_points} points encode to {n_tokens} tokens, more than the model's "
                         f"n_ctx ({n_ctx}): {fit}; sample shorter prompts (task.sample(batch, n_points))")

    def _max_points(self, batch: ICLBatch, n_ctx: int) -> Optional[int]:
        """The most points of ``batch``'s first prompt whose encoding fits ``n_ctx`` tokens (bisection), None if unknown."""
        def fits(m: int) -> bool:
            return int(self._encode(ICLBatch(batch.xs[:1, :m], batch.ys[:1, :m], batch.w[:1])).shape[1]) <= n_ctx

        try:
            lo, hi = 0, batch.n_points  # fits(lo) (taken as true for 0), not fits(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        except Exception:  # noqa: BLE001 - the user's encode may refuse short prompts: the count is then unknown
            return None
        return lo

    def readout(self, out: Tensor, batch: ICLBatch) -> Tensor:
        preds = self._readout(out, batch) if self._readout_takes_batch else self._readout(out)
        return check_readout(preds, batch)

    def layout(self, n_points: int, n_tokens: int) -> Layout:
        """The user's ``layout``, else only the query is known: the last token."""
        if self._layout is None:
            return Layout(n_tokens, n_tokens - 1)
        got = self._layout(n_points, n_tokens)
        if not isinstance(got, Layout):
            raise TypeError(f"layout must return an icl_interp.core.protocol.Layout, got {type(got).__name__}")
        return got

    def __call__(self, batch: ICLBatch) -> Tensor:
        batch = check_batch("data", batch, self)
        inp = self.encode_batch(batch)
        kwargs = {"start_at_layer": 0} if inp.is_floating_point() else {}
        return self.readout(self.hooked(inp, **kwargs), batch)

    def __repr__(self) -> str:
        c = self.hooked.cfg
        return f"AttachedModel({type(self.hooked).__name__}, n_layers={c.n_layers}, n_heads={c.n_heads})"


def as_model(model: Any) -> ToolModel:
    """Check that ``model`` follows the tool protocol; a helpful TypeError if not."""
    if hasattr(model, "hooked") and hasattr(model, "encode_batch") and hasattr(model, "readout") and hasattr(model, "layout"):
        return model
    if hasattr(model, "hook_dict"):
        raise TypeError(
            f"model is a bare {type(model).__name__}: wrap it with icl_interp.attach(model, encode=..., readout=...) first"
        )
    raise TypeError(f"model must be an ICLTransformer or icl_interp.attach(...) result, got {type(model).__name__}")


def check_batch(name: str, data: Any, model: Any = None) -> ICLBatch:
    """``data`` must be an ICLBatch on the model's device; cast to the model's dtype; checked against the model."""
    if not isinstance(data, ICLBatch):
        raise TypeError(f"{name} must be an ICLBatch (task.sample(...)), got {type(data).__name__}")
    if model is None:
        return data
    device = model_device(model)
    if data.xs.device != device:
        raise ValueError(f"{name} is on device {data.xs.device}, but the model is on {device}: move it with {name}.to({str(device)!r})")
    dtype = model_dtype(model)
    if data.xs.dtype != dtype:
        data = data.to(dtype=dtype)
    if hasattr(model, "check_inputs"):
        model.check_inputs(data.xs, data.ys, name=name)
    return data
