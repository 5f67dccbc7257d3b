"""What every tool shares: the model protocol, ``attach``, and running from a layer.

A model the tools accept has ``hooked`` (a TransformerLens hooked transformer),
``encode_batch(batch)`` (an ``ICLBatch`` to the core's input: integer tokens or
a float residual ``[B, pos, d_model]`` entering block 0) and ``readout(out, batch)``
(core output to predictions ``[B, n]``, or ``[B]`` for the query only).
``ICLTransformer`` has them; :func:`attach` gives them to a user's model.

Tools run the core block by block from the residual stream (``backend.run_blocks``)
so a patch or mask at layer ``l`` reuses everything computed below ``l``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Optional

from jaxtyping import Float
from torch import Tensor

from . import backend
from ._checks import check_float, check_tensor
from .hooks import HookFn, scoped_hooks
from .tasks import ICLBatch, Task

__all__ = ["AttachedModel", "attach", "as_model", "check_batch", "Metric", "normalised_error", "default_metric"]

Metric = Callable[[Tensor, ICLBatch], Any]


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
    ):
        if not hasattr(hooked, "hook_dict") or not hasattr(hooked, "blocks"):
            raise TypeError(
                f"hooked must be a TransformerLens HookedTransformer or TransformerBridge, got {type(hooked).__name__}"
            )
        if not callable(encode):
            raise TypeError(f"encode must be callable (ICLBatch -> model input), got {type(encode).__name__}")
        if not callable(readout):
            raise TypeError(f"readout must be callable (model output -> predictions), got {type(readout).__name__}")
        if task is not None and not isinstance(task, Task):
            raise TypeError(f"task must be a Task, got {type(task).__name__}")
        self.hooked = hooked
        self.task = task
        self.norm = task.norm if (norm is None and task is not None) else (1.0 if norm is None else check_float("norm", norm, min_value=0.0, strict_min=True))
        self._encode = encode
        self._readout = readout
        self._readout_takes_batch = _n_positional(readout) >= 2

    def encode_batch(self, batch: ICLBatch) -> Tensor:
        inp = self._encode(batch)
        if not isinstance(inp, Tensor):
            raise TypeError(f"encode must return a torch.Tensor, got {type(inp).__name__}")
        if inp.is_floating_point():
            d_model = backend.core_dims(self.hooked)[2]
            check_tensor("encode(batch)", inp, shape=(batch.batch_size, None, d_model))
        return inp

    def readout(self, out: Tensor, batch: ICLBatch) -> Tensor:
        return self._readout(out, batch) if self._readout_takes_batch else self._readout(out)

    def __call__(self, batch: ICLBatch) -> Tensor:
        batch = check_batch("data", batch)
        inp = self.encode_batch(batch)
        kwargs = {"start_at_layer": 0} if inp.is_floating_point() else {}
        return self.readout(self.hooked(inp, **kwargs), batch)

    def __repr__(self) -> str:
        return f"AttachedModel({type(self.hooked).__name__}, n_layers={self.hooked.cfg.n_layers}, n_heads={self.hooked.cfg.n_heads})"


def _n_positional(fn: Callable) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def attach(
    hooked: Any,
    encode: Callable[[ICLBatch], Tensor],
    readout: Callable[..., Tensor],
    *,
    task: Optional[Task] = None,
    norm: Optional[float] = None,
) -> AttachedModel:
    """Wrap a user's TransformerLens model so every icl_interp tool accepts it.

    ``encode(batch)`` returns integer tokens or a float residual ``[B, pos, d_model]``
    (taken as the residual entering block 0); ``readout(out)`` or
    ``readout(out, batch)`` turns the model's output into predictions ``[B, n]`` or ``[B]``.
    ``norm`` divides squared errors (default: the task's, else 1).
    """
    return AttachedModel(hooked, encode, readout, task=task, norm=norm)


def as_model(model: Any) -> Any:
    """Check that ``model`` follows the tool protocol; a helpful TypeError if not."""
    if hasattr(model, "hooked") and hasattr(model, "encode_batch") and hasattr(model, "readout"):
        return model
    if hasattr(model, "hook_dict"):
        raise TypeError(
            f"model is a bare {type(model).__name__}: wrap it with icl_interp.attach(model, encode=..., readout=...) first"
        )
    raise TypeError(f"model must be an ICLTransformer or icl_interp.attach(...) result, got {type(model).__name__}")


def check_batch(name: str, data: Any, model: Any = None) -> ICLBatch:
    """``data`` must be an ICLBatch (and fit the model, when it says what it expects)."""
    if not isinstance(data, ICLBatch):
        raise TypeError(f"{name} must be an ICLBatch (task.sample(...)), got {type(data).__name__}")
    if model is not None and hasattr(model, "check_inputs"):
        model.check_inputs(data.xs, data.ys)
    return data


def model_norm(model: Any) -> float:
    """The error normaliser of a model: its task's (s or d), else 1."""
    norm = getattr(model, "norm", None)
    if norm is not None:
        return float(norm)
    task = getattr(model, "task", None)
    return float(task.norm) if task is not None else 1.0


def targets(preds: Tensor, batch: ICLBatch) -> Tensor:
    """The ys that ``preds`` predict: all of them (``[..., B, n]``) or the last (``[..., B]``)."""
    if preds.shape[-1] == batch.n_points and preds.ndim >= 2 and preds.shape[-2] == batch.batch_size:
        return batch.ys
    return batch.ys[:, -1]


def normalised_error(preds: Tensor, batch: ICLBatch, norm: float = 1.0, *, per_prompt: bool = False) -> Tensor:
    """Mean squared error over predicted positions, divided by ``norm``; ``[...]`` or ``[..., B]``."""
    sq = (preds - targets(preds, batch)) ** 2 / norm
    if preds.shape[-1] == batch.n_points and preds.ndim >= 2 and preds.shape[-2] == batch.batch_size:
        sq = sq.mean(-1)
    return sq if per_prompt else sq.mean(-1)


def default_metric(model: Any) -> Metric:
    """The normalised error with the model's normaliser."""
    norm = model_norm(model)
    return lambda preds, batch: normalised_error(preds, batch, norm)


def call_metric(metric: Metric, preds: Tensor, batch: ICLBatch) -> float:
    value = metric(preds, batch)
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"metric must return a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if not isinstance(value, (int, float)):
        raise TypeError(f"metric must return a number or scalar tensor, got {type(value).__name__}")
    return float(value)


class _StopForward(Exception):
    pass


def residual_input(model: Any, batch: ICLBatch) -> Float[Tensor, "batch pos d_model"]:
    """The residual stream entering block 0 for ``batch``."""
    inp = model.encode_batch(batch)
    if inp.is_floating_point():
        return inp
    captured: list[Tensor] = []

    def grab(x: Tensor) -> None:
        captured.append(x)
        raise _StopForward

    try:  # ours runs first, so a user's hook on this point fires once, in the run that follows
        with scoped_hooks(model.hooked, [("blocks.0.hook_resid_pre", grab)], prepend=True):
            model.hooked(inp)
    except _StopForward:
        pass
    if not captured:
        raise RuntimeError("blocks.0.hook_resid_pre never fired: cannot find the residual input of this model")
    return captured[0]


def layer_inputs(model: Any, resid0: Tensor) -> list[Tensor]:
    """``[resid entering block 0, ..., entering block L-1, after block L-1]`` from one forward."""
    hooked = model.hooked
    out = [resid0]
    for layer in range(hooked.cfg.n_layers):
        out.append(backend.run_blocks(hooked, out[-1], layer, layer + 1))
    return out


def run_from(
    model: Any,
    resid: Tensor,
    start: int,
    batch: ICLBatch,
    hooks: Iterable[tuple[str, HookFn]] = (),
) -> Tensor:
    """Predictions from the residual entering block ``start``, with ``hooks`` active (and removed after)."""
    hooked = model.hooked
    with scoped_hooks(hooked, hooks):
        final = backend.run_blocks(hooked, resid, start, hooked.cfg.n_layers)
        return model.readout(backend.unembed(hooked, final), batch)


def predict(model: Any, batch: ICLBatch, hooks: Iterable[tuple[str, HookFn]] = ()) -> Tensor:
    """Full forward through the tool path (encode, all blocks, read-out)."""
    return run_from(model, residual_input(model, batch), 0, batch, hooks)
