"""The tools' one door to the model: a shared clean run, runs from a layer, the fast paths, the self-check.

Every tool (masking, importance, patching, probing, GD alignment) goes through here:

- :func:`prepare` validates a batch once and runs the clean forward once, block by
  block, keeping the residual stream entering every block and the core's output
  (a :class:`CleanRun`, in the spirit of TransformerLens' ``ActivationCache``).
  Tools accept a ``CleanRun`` wherever they take a batch, so a study that applies
  several tools to the same prompts pays for one validation and one forward.
- :func:`run_from` runs the blocks from layer ``l`` with interventions (``(name,
  fn)`` hooks of :mod:`icl_interp.tools.interventions`); with none set and nothing
  listening it takes the fused fast path (:mod:`icl_interp.core.fast_paths`).
- :func:`check_model` verifies once per model and weights version (:func:`weights_version`)
  that this way of running the core (from the residual stream, block by block, and
  every fast path) reproduces the model's own forward within 1e-5 relative, or names
  the feature it cannot run.

Nothing stale, nothing silent: a ``CleanRun`` records the weights version it was
computed under and is refused after the weights change; the clean predictions must
be finite, and a run with interventions whose predictions are NaN or Inf raises,
naming the intervention sites (:func:`run_from`), as does a metric that is not finite
(:func:`call_metric`).
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from ..core import backend, fast_paths
from ..core.protocol import AttachedModel, Layout, ToolModel, as_model, check_batch, check_readout
from ..core.tasks import ICLBatch, Task
from .interventions import HookFn, capture, scoped

__all__ = [
    "attach",
    "CleanRun",
    "prepare",
    "predict",
    "residual_input",
    "run_from",
    "run_layer_with_z",
    "run_suffix",
    "capture_forward",
    "check_model",
    "Metric",
    "normalised_error",
    "default_metric",
    "model_norm",
    "call_metric",
    "weights_version",
]

Metric = Callable[[Tensor, ICLBatch], Any]


class CleanRun:
    """A validated batch and the model's clean forward on it, shared by every tool.

    ``resids[l]`` is the residual entering block ``l`` (``resids[-1]``: after the last
    block), ``out`` the core's output, ``preds`` the predictions. :meth:`acts` gives
    any other clean activation by hook name (captured on demand, then kept).
    """

    def __init__(self, model: ToolModel, batch: ICLBatch, resids: list[Tensor], out: Tensor, acts: dict[str, Tensor]):
        self.model, self.batch, self.resids, self.out = model, batch, resids, out
        self.preds = model.readout(out, batch)
        self._acts = acts
        self.hooks = hook_signature(model.hooked)
        self.version = weights_version(model)

    @property
    def n_tokens(self) -> int:
        return int(self.resids[0].shape[1])

    def layout(self) -> Any:
        """The model's token layout for this batch (``protocol.Layout``)."""
        return self.model.layout(self.batch.n_points, self.n_tokens)

    def acts(self, names: Sequence[str]) -> dict[str, Tensor]:
        """Clean activations ``{name: tensor}``; those not yet captured come from one more forward."""
        missing = [n for n in dict.fromkeys(names) if n not in self._acts]
        if missing:
            self._acts.update(capture_forward(self.model, self.resids[0], missing))
        return {n: self._acts[n] for n in names}


_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def weights_version(model: Any) -> tuple:
    """An identity of the model's current weights: per parameter its storage, autograd version and a checksum.

    Any in-place edit (an optimizer step, ``load_state_dict``, an edit under
    ``torch.no_grad()``) bumps the version; the checksum (the parameter's bits summed
    as integers: exact, order-independent) also catches edits through ``.data``.
    """
    params = list(model.parameters() if isinstance(model, torch.nn.Module) else model.hooked.parameters())
    sums = []
    for p in params:
        bits = p.detach().reshape(-1)
        bits = bits.view(_INT_OF_SIZE[bits.element_size()]) if bits.is_floating_point() else bits
        sums.append(bits.sum(dtype=torch.int64))
    sums_list = torch.stack([c.to(sums[0].device) for c in sums]).tolist() if sums else []  # one transfer, not one per parameter
    return tuple((p.data_ptr(), p._version, c) for p, c in zip(params, sums_list))


def hook_signature(hooked: Any) -> tuple:
    """Which hooks sit on which hook points now: a clean run is valid only under the same ones."""
    return tuple((name, tuple(id(h) for h in hp._forward_hooks.values()))
                 for name, hp in hooked.hook_dict.items() if hp._forward_hooks)


def _z_names(hooked: Any) -> list[str]:
    return [f"blocks.{l}.attn.hook_z" for l in range(int(hooked.cfg.n_layers))]


def residual_input(model: ToolModel, batch: ICLBatch) -> Float[Tensor, "batch pos d_model"]:
    """The residual stream entering block 0: the float encoding, or the embedded tokens (``stop_at_layer=0``)."""
    inp = model.encode_batch(batch)
    return inp if inp.is_floating_point() else backend.embed(model.hooked, inp)


def prepare(model: Any, data: Union[ICLBatch, CleanRun], name: str = "data") -> CleanRun:
    """The shared clean run of ``model`` on ``data`` (a batch, or a CleanRun of this model, returned as is)."""
    if isinstance(data, CleanRun):
        if data.model is not model:
            raise ValueError(f"{name} is a CleanRun of another model: prepare it with this model")
        if data.hooks != hook_signature(data.model.hooked):
            raise ValueError(
                f"{name} is a CleanRun computed under other hooks than are active now (e.g. inside masked(...)): "
                "its activations are not this model's; pass the batch, or prepare a new run here"
            )
        if data.version != weights_version(data.model):
            raise ValueError(
                f"{name} is a CleanRun prepared before the model's weights changed: its activations are stale; "
                "pass the batch, or prepare a new run (runner.prepare(model, batch)) after the edit"
            )
        return data
    model = as_model(model)
    batch = check_batch(name, data, model)
    check_model(model, batch)
    hooked = model.hooked
    acts: dict[str, Tensor] = {}
    with torch.no_grad():
        resids = [residual_input(model, batch)]
        with scoped(hooked, [(n, capture(acts, n)) for n in _z_names(hooked)]):  # masking reuses the clean z
            for layer in range(int(hooked.cfg.n_layers)):
                resids.append(backend.run_blocks(hooked, resids[-1], layer, layer + 1))
        out = backend.unembed(hooked, resids[-1])
    run = CleanRun(model, batch, resids, out, acts)
    bad = (~torch.isfinite(out)).reshape(out.shape[0], -1).any(-1).nonzero().reshape(-1)
    if len(bad):
        raise ValueError(f"the model's own output on {name} is NaN or Inf at prompts {bad[:10].tolist()}"
                         f"{' ...' if len(bad) > 10 else ''}: check its weights and the batch's values")
    return run


def predict(model: Any, data: Union[ICLBatch, CleanRun]) -> Tensor:
    """Predictions through the tools' path (the clean run's)."""
    return prepare(model, data).preds


def run_from(
    model: ToolModel,
    resid: Tensor,
    start: int,
    batch: ICLBatch,
    hooks: Iterable[tuple[str, HookFn]] = (),
    *,
    tool: str = "a tool",
) -> Tensor:
    """Predictions from the residual entering block ``start`` with ``hooks`` active (removed after).

    With no hooks and nothing listening on a native 4.x core, the fused fast path runs.
    Predictions with NaN or Inf (the model's own are finite: :func:`prepare`) raise a
    ValueError naming ``tool`` and the intervention sites.
    """
    hooked = model.hooked
    hooks = list(hooks)
    out = None if hooks else fast_paths.fused_forward(hooked, resid, start)
    if out is None:
        with scoped(hooked, hooks):  # a clone: writes edit activations in place, never the caller's tensor
            out = backend.unembed(hooked, backend.run_blocks(hooked, resid.clone(), start, int(hooked.cfg.n_layers)))
    if not bool(torch.isfinite(out).all()):
        sites = ", ".join(dict.fromkeys(name for name, _ in hooks))
        raise ValueError(f"{tool}: the output{' with interventions at ' + sites if sites else ''} is NaN or Inf "
                         f"(run from layer {start}) where the model's own output is finite")
    return model.readout(out, batch)


def run_layer_with_z(model: ToolModel, layer: int, resid: Tensor, z: Tensor, write: HookFn) -> Tensor:
    """The residual after block ``layer`` when its ``hook_z`` is ``write(z_clean)``.

    ``z`` is the layer's clean z (from the run that gave ``resid``). On standard blocks
    with nothing listening, the attention is not rerun: its output is rebuilt from
    ``write(z)`` and only the MLP half runs; otherwise the whole block runs with the write hooked.
    """
    hooked = model.hooked
    if fast_paths.split_attention(hooked) and fast_paths.nothing_listening(hooked):
        resid_mid = resid + fast_paths.attn_out_from_z(hooked, layer, write(z.clone()))
        return fast_paths.run_mlp_half(hooked, layer, resid_mid)
    with scoped(hooked, [(f"blocks.{layer}.attn.hook_z", write)]):
        return backend.run_blocks(hooked, resid.clone(), layer, layer + 1)


def run_suffix(run: CleanRun, start: int, pos: int, values: Tensor, kv: Optional[list]) -> Optional[Tensor]:
    """Predictions when the residual entering block ``start`` takes ``values`` at position ``pos``.

    Earlier positions keep their values (causal attention), so only positions ``pos..``
    run, reading the earlier ones' cached keys and values ``kv`` (:func:`fast_paths.keys_values`
    of ``run``). None when the fast path is unavailable (the caller patches with a hook).
    """
    if kv is None:
        return None
    suffix = run.resids[start][:, pos:].clone()
    suffix[:, 0] = values
    out = fast_paths.fused_forward(run.model.hooked, suffix, start, kv, pos)
    if out is None:
        return None
    return run.model.readout(torch.cat([run.out[:, :pos], out], 1), run.batch)


def keys_values(run: CleanRun) -> Optional[list]:
    """The key/value cache of ``run`` for :func:`run_suffix`, or None where the fast path does not apply."""
    return fast_paths.keys_values(run.model.hooked, run.resids[:-1])


def capture_forward(
    model: ToolModel, resid0: Tensor, names: Sequence[str], *, index: Any = None, detach: bool = True
) -> dict[str, Tensor]:
    """``{name: activation}`` (``[index]`` of each) from one forward of the blocks the names need, from ``resid0``."""
    hooked = model.hooked
    store: dict[str, Tensor] = {}
    layers = [int(n.split(".")[1]) for n in names if n.startswith("blocks.")]
    stop = max(layers, default=-1) + 1
    with scoped(hooked, [(n, capture(store, n, index=index, detach=detach)) for n in names]):
        final = backend.run_blocks(hooked, resid0.clone() if detach else resid0, 0, stop)
        if any(not n.startswith("blocks.") for n in names):
            backend.unembed(hooked, backend.run_blocks(hooked, final, stop, int(hooked.cfg.n_layers)))
    missing = sorted(set(names) - set(store))
    if missing:
        raise ValueError(f"hook points {missing} never fired in a forward of this model (attn-only models have no MLP points)")
    return store


# -- a user's model -----------------------------------------------------------------------


def attach(
    hooked: Any,
    encode: Callable[[ICLBatch], Tensor],
    readout: Callable[..., Tensor],
    *,
    task: Optional[Task] = None,
    norm: Optional[float] = None,
    layout: Optional[Callable[[int, int], Layout]] = None,
) -> AttachedModel:
    """Wrap a user's TransformerLens model so every icl_interp tool accepts it.

    ``encode(batch)`` returns integer tokens or a float residual ``[B, pos, d_model]``
    (taken as the residual entering block 0); ``readout(out)`` or
    ``readout(out, batch)`` turns the model's output into predictions ``[B, n]`` or
    ``[B]``. ``norm`` divides squared errors (default: the task's, else 1).
    ``layout(n_points, n_tokens)`` says which token holds which example (default:
    only the query, the last token). With a ``task``, the tools' way of running the
    model is checked against its own forward now (see ``check_model``); otherwise
    on first use.
    """
    model = AttachedModel(hooked, encode, readout, task=task, norm=norm, layout=layout)
    if task is not None:
        check_model(model, task.sample(2, 4, seed=0))
    return model


# -- the self-check -----------------------------------------------------------------------

_checked: "weakref.WeakKeyDictionary[Any, tuple]" = weakref.WeakKeyDictionary()  # core -> weights version checked


def check_model(model: Any, batch: Optional[ICLBatch] = None) -> None:
    """Verify once per model that the tools run the same function as the model; a ValueError naming what differs.

    Compares, on the first two prompts of ``batch``, the model's own forward with the
    block-by-block run from the residual stream, and (where they apply) the fused
    forward, the key/value-cached suffix run and the split attention/MLP halves,
    within :data:`~icl_interp.core.fast_paths.SELF_CHECK_RTOL`. The result is cached per core and :func:`weights_version`
    (it must not slow the tools; an edit of the weights after the check is checked again).
    """
    model = as_model(model)
    hooked = model.hooked
    version = weights_version(model)
    if _checked.get(hooked) == version:
        return
    features = backend.unsupported_features(hooked)
    if features:
        raise ValueError(f"{'; '.join(features)}: not supported by icl_interp's tools, which run the blocks from the residual stream")
    if batch is None:
        return
    batch = check_batch("batch", batch, model)[:2]
    with torch.no_grad():
        inp = model.encode_batch(batch)
        kwargs = {"start_at_layer": 0} if inp.is_floating_point() else {}
        with backend.quiet_tl():
            own = check_readout(model.readout(hooked(inp, **kwargs), batch), batch, "the model's forward through readout")
        resid0 = residual_input(model, batch)
        resids = [resid0]
        for layer in range(int(hooked.cfg.n_layers)):
            resids.append(backend.run_blocks(hooked, resids[-1], layer, layer + 1))
        out = backend.unembed(hooked, resids[-1])
        paths = {"the block-by-block run from the residual stream": model.readout(out, batch)}
        fused = fast_paths.fused_forward(hooked, resid0)
        if fused is not None:
            paths["the fused forward"] = model.readout(fused, batch)
            start, pos = min(1, int(hooked.cfg.n_layers) - 1), resid0.shape[1] // 2
            suffix = fast_paths.fused_forward(hooked, resids[start][:, pos:], start, fast_paths.keys_values(hooked, resids[:-1]), pos)
            paths["the key/value-cached suffix run"] = model.readout(torch.cat([out[:, :pos], suffix], 1), batch)
        if fast_paths.split_attention(hooked) and fast_paths.nothing_listening(hooked):
            z = capture_forward(model, resid0, ["blocks.0.attn.hook_z"])["blocks.0.attn.hook_z"]
            mid = resid0 + fast_paths.attn_out_from_z(hooked, 0, z)
            after0 = fast_paths.run_mlp_half(hooked, 0, mid)
            rest = backend.run_blocks(hooked, after0, 1, int(hooked.cfg.n_layers))
            paths["the split attention / MLP halves"] = model.readout(backend.unembed(hooked, rest), batch)
    for what, preds in paths.items():
        gap = fast_paths.relative_gap(preds, own)
        if not gap <= fast_paths.SELF_CHECK_RTOL:
            raise ValueError(
                f"{what} differs from the model's own forward by {gap:.2g} (relative; tolerance {fast_paths.SELF_CHECK_RTOL:g}): "
                f"this architecture ({type(hooked).__name__}, {_describe(hooked)}) is not supported by icl_interp's tools"
            )
    _checked[hooked] = version


def _describe(hooked: Any) -> str:
    c = hooked.cfg
    keys = ("positional_embedding_type", "normalization_type", "attn_only", "parallel_attn_mlp", "use_attn_result")
    return ", ".join(f"{k}={getattr(c, k)}" for k in keys if hasattr(c, k))


# -- metrics --------------------------------------------------------------------------------


def model_norm(model: Any) -> float:
    """The error normaliser of a model: its own ``norm``, its task's (s or d), else 1."""
    norm = getattr(model, "norm", None)
    if norm is not None:
        return float(norm)
    task = getattr(model, "task", None)
    return float(task.norm) if task is not None else 1.0


def _per_example(preds: Tensor, batch: ICLBatch) -> bool:
    return preds.ndim >= 2 and preds.shape[-1] == batch.n_points and preds.shape[-2] == batch.batch_size


def normalised_error(preds: Tensor, batch: ICLBatch, norm: float = 1.0, *, per_prompt: bool = False) -> Tensor:
    """Mean squared error over predicted positions, divided by ``norm``; ``[...]`` or ``[..., B]``."""
    per_example = _per_example(preds, batch)
    sq = (preds - (batch.ys if per_example else batch.ys[:, -1])) ** 2 / norm
    if per_example:
        sq = sq.mean(-1)
    return sq if per_prompt else sq.mean(-1)


def default_metric(model: Any) -> Metric:
    """The normalised error with the model's normaliser."""
    norm = model_norm(model)
    return lambda preds, batch: normalised_error(preds, batch, norm)


def call_metric(metric: Metric, preds: Tensor, batch: ICLBatch, site: str = "the metric") -> float:
    """``metric(preds, batch)`` as a float; a ValueError naming ``site`` if it is not a finite scalar."""
    value = metric(preds, batch)
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"metric must return a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if not isinstance(value, (int, float)):
        raise TypeError(f"metric must return a number or scalar tensor, got {type(value).__name__}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        what = "predictions" if not bool(torch.isfinite(preds).all()) else "metric"
        raise ValueError(f"{site}: the {what} {'are' if what == 'predictions' else 'is'} {value if what == 'metric' else 'NaN or Inf'} "
                         f"where the model's own output is finite")
    return value
