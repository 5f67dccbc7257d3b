"""The catalogue of P-probe targets: what a layer's residual stream might hold.

A target maps an :class:`~icl_interp.core.tasks.ICLBatch` to one value per prompt
(``[B]`` or ``[B, k]``, the value at the query: the last example) or one value
per example (``[B, n]`` or ``[B, n, k]``). The *context* of a prompt is every
example but the last; the *query* is the last ``x``, whose ``y`` the model predicts.

Built-in targets (``names()`` lists them, ``get(name).description`` explains one):

- ``y_query`` (the seed paper's P-probing target), ``y_query_clean`` (``x_q . w``), ``w``;
- context statistics ``r = X^T y / n`` and ``xtx`` (upper triangle of ``X^T X / n``);
- preprocessing candidates applied to the query: ``pre_identity``, ``pre_reweight``,
  ``pre_power2``, ``pre_rank_one``;
- estimator predictions of the query y from the context: ``gd_step_1`` .. ``gd_step_4``,
  ``ols_pred``, ``ridge_pred``, ``lasso_pred``;
- per example: ``y``, ``x`` and ``r`` over the examples a token can see after one layer (:data:`VIEWS`):
  ``r_prefix`` (the examples before i: a causal interleaved model), ``r_incl`` (examples 0..i: a causal
  concatenated model, whose token i holds y_i), ``r_ctx`` (every context example: bidirectional attention);
  the preprocessing candidates applied to every x_i with each: ``pre_*_all``, ``pre_*_incl``, ``pre_*_ctx``.

Step size of the ``gd_step_t`` targets (:func:`default_lr`): ``n / (n + d + 1)`` with
``n`` the context size, the one-step optimum for isotropic Gaussian x and w
(``E[(X^T X / n)^2] = (n + d + 1) / n * I``); it keeps ``lr * lambda_max(X^T X / n) < 2``.
Fixed penalties: ``ridge_pred`` uses ``Ridge(alpha=RIDGE_ALPHA)`` (sum-of-squares loss, as
scikit-learn), ``lasso_pred`` uses ``Lasso(alpha=LASSO_ALPHA)`` (mean loss, as scikit-learn).

This package never imports TransformerLens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
from jaxtyping import Float
from torch import Tensor

from icl_interp.baselines.estimators import GD, OLS, Estimator, Lasso, PreprocessThenOptimize, Ridge
from icl_interp.baselines.preprocess import PreprocessFn, Preprocessing, as_preprocessing, correlation, get_preprocessing
from icl_interp.core.checks import check_choice, check_float, check_int
from icl_interp.core.tasks import ICLBatch

__all__ = [
    "Target",
    "register",
    "unregister",
    "get",
    "names",
    "list_targets",
    "resolve",
    "gd_prediction",
    "estimator_prediction",
    "default_lr",
    "context",
    "RIDGE_ALPHA",
    "LASSO_ALPHA",
    "GD_STEPS",
    "VIEWS",
    "example_target_names",
    "r_seen",
]

PER = ("prompt", "example", "auto")
RIDGE_ALPHA = 0.1
LASSO_ALPHA = 0.01
GD_STEPS = (1, 2, 3, 4)
#: which examples' y a token can have seen, by view: (name of its r target, suffix of its pre_* targets)
VIEWS = {"before": ("r_prefix", "_all"), "through": ("r_incl", "_incl"), "context": ("r_ctx", "_ctx")}

TargetFn = Callable[[ICLBatch], Tensor]


@dataclass(frozen=True)
class Target:
    """A named target: ``fn(batch)`` gives ``[B]``/``[B, k]`` (per prompt) or ``[B, n]``/``[B, n, k]`` (per example).

    ``per="auto"`` (bare callables): a 3-d result is per example, anything else per prompt.
    Calling a Target always gives ``[B, k]`` (per prompt) or ``[B, n, k]`` (per example).
    """

    name: str
    fn: TargetFn
    description: str = ""
    per: str = "prompt"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {self.name!r}")
        if not callable(self.fn):
            raise TypeError(f"fn must be callable (ICLBatch -> tensor), got {type(self.fn).__name__}")
        check_choice("per", self.per, PER)

    def __call__(self, batch: ICLBatch) -> Union[Float[Tensor, "batch k"], Float[Tensor, "batch n k"]]:
        """The target's values with an explicit output axis: ``[B, k]`` or ``[B, n, k]``."""
        if not isinstance(batch, ICLBatch):
            raise TypeError(f"batch must be an ICLBatch, got {type(batch).__name__}")
        out = self.fn(batch)
        if not isinstance(out, Tensor):
            raise TypeError(f"target {self.name!r} must return a torch.Tensor, got {type(out).__name__}")
        b, n = batch.batch_size, batch.n_points
        per = self.per if self.per != "auto" else ("example" if out.ndim == 3 else "prompt")
        if per == "prompt":
            if out.ndim not in (1, 2) or out.shape[0] != b:
                raise ValueError(f"per-prompt target {self.name!r} must return [{b}] or [{b}, k], got {tuple(out.shape)}")
            out = out.reshape(b, -1)
        else:
            if out.ndim not in (2, 3) or tuple(out.shape[:2]) != (b, n):
                raise ValueError(
                    f"per-example target {self.name!r} must return [{b}, {n}] or [{b}, {n}, k], got {tuple(out.shape)}"
                )
            out = out.reshape(b, n, -1)
        if not out.is_floating_point():
            out = out.float()
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"target {self.name!r} returned NaN or Inf values")
        return out


_REGISTRY: dict[str, Target] = {}


def register(name: str, fn: TargetFn, description: str = "", per: str = "prompt", *, overwrite: bool = False) -> Target:
    """Add a target to the catalogue; re-using a name needs ``overwrite=True``."""
    target = Target(name, fn, description, per)
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"target {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = target
    return target


def unregister(name: str) -> None:
    """Remove a target from the catalogue (unknown names raise like :func:`get`)."""
    get(name)
    del _REGISTRY[name]


def names() -> list[str]:
    """Names of every registered target, sorted."""
    return sorted(_REGISTRY)


def list_targets() -> list[Target]:
    """Every registered target (name, description, per), sorted by name."""
    return [_REGISTRY[k] for k in names()]


def get(name: str) -> Target:
    """The registered target called ``name``; unknown names raise a ValueError listing the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"target name must be a str, got {type(name).__name__}")
    if name not in _REGISTRY:
        raise ValueError(f"unknown target {name!r}; known targets are {names()}")
    return _REGISTRY[name]


def resolve(target: Union[str, Target, TargetFn], name: str = "target") -> Target:
    """A :class:`Target` from a catalogue name, a Target or a callable.

    A bare callable is per prompt unless it returns a 3-d tensor ``[B, n, k]``
    (register it with ``per="example"`` to pass per-example ``[B, n]`` values).
    """
    if isinstance(target, Target):
        return target
    if isinstance(target, str):
        return get(target)
    if callable(target):
        label = getattr(target, "__name__", type(target).__name__)
        return Target(label, target, "user callable", "auto")
    raise TypeError(
        f"{name} must be a target name {names()}, a Target or a callable (ICLBatch -> tensor), got {type(target).__name__}"
    )


# -- helpers the built-ins share ------------------------------------------------------


def context(batch: ICLBatch) -> tuple[Float[Tensor, "batch m d"], Float[Tensor, "batch m"], Float[Tensor, "batch d"]]:
    """``(xs_context, ys_context, x_query)``: every example but the last, and the last x."""
    return batch.xs[:, :-1], batch.ys[:, :-1], batch.xs[:, -1]


def default_lr(n_context: int, d: int) -> float:
    """``n / (n + d + 1)``: the one-step GD optimum for isotropic Gaussian data (1 when n = 0 is moot)."""
    return n_context / (n_context + d + 1) if n_context > 0 else 1.0


def estimator_prediction(make: Callable[[ICLBatch], Estimator]) -> TargetFn:
    """A target: fit ``make(batch)`` on each prompt's context, predict its query y (``[B]``)."""

    def fn(batch: ICLBatch) -> Tensor:
        xs, ys, xq = context(batch)
        est = make(batch)
        return est.fit(xs, ys, batch.w if est.needs_w else None).predict(xq)

    return fn


def gd_prediction(
    steps: int,
    lr: Optional[float] = None,
    preprocessing: Union[None, str, Preprocessing, PreprocessFn] = None,
) -> TargetFn:
    """A target: the query prediction after ``steps`` GD steps from 0 on the (preprocessed) context.

    ``lr=None`` uses :func:`default_lr`; ``preprocessing`` is ``None`` (raw data), a name
    from :mod:`icl_interp.baselines.preprocess`, a Preprocessing or a callable ``pre(xs, ys, x)``.
    Differentiable in ``batch.xs`` (used for von Oswald et al.'s model-cos).
    """
    steps = check_int("steps", steps, min_value=0)
    lr = None if lr is None else check_float("lr", lr, min_value=0.0)
    pre = None if preprocessing is None else as_preprocessing(preprocessing)

    def make(batch: ICLBatch) -> Estimator:
        step = default_lr(batch.n_points - 1, batch.d) if lr is None else lr
        return GD(steps, step) if pre is None else PreprocessThenOptimize(pre, steps, step)

    return estimator_prediction(make)


def _query_preprocessed(pre: Preprocessing) -> TargetFn:
    def fn(batch: ICLBatch) -> Tensor:
        xs, ys, xq = context(batch)
        return pre.transform(correlation(xs, ys), xq[:, None, :])[:, 0]

    return fn


def _example_preprocessed(pre: Preprocessing, view: str = "before") -> TargetFn:
    """``pre`` applied to every example's x_i with r over the examples of ``view`` (:func:`r_seen`)."""

    def fn(batch: ICLBatch) -> Tensor:
        b, n, d = batch.xs.shape
        r = r_seen(batch, view).reshape(b * n, d)
        return pre.transform(r, batch.xs.reshape(b * n, 1, d)).reshape(b, n, d)

    return fn


def example_target_names(view: str) -> tuple[str, list[str]]:
    """(the r target, the ``pre_*`` targets of every candidate) read at every token under ``view`` (a key of :data:`VIEWS`)."""
    r_name, suffix = VIEWS[check_choice("view", view, tuple(VIEWS))]
    return r_name, [f"{name}{suffix}" for name in _PRE_NAMES]


def r_seen(batch: ICLBatch, view: str) -> Float[Tensor, "batch n d"]:
    """``X^T y / count`` at every example i over the examples whose y token i can see after one attention layer.

    ``"before"``: examples j < i (0 for the first); ``"through"``: j <= i, except that the
    query (the last example) never sees its own y; ``"context"``: every example but the query.
    """
    check_choice("view", view, tuple(VIEWS))
    b, n, d = batch.xs.shape
    if view == "context":
        xs, ys, _ = context(batch)
        return correlation(xs, ys)[:, None, :].expand(b, n, d)
    sums = torch.cumsum(batch.xs * batch.ys[..., None], dim=1)
    counts = torch.arange(n, dtype=sums.dtype, device=sums.device)
    if view == "before":
        sums = torch.cat([torch.zeros_like(sums[:, :1]), sums[:, :-1]], dim=1)
    else:  # through: the query sees the context (its own y is hidden), n - 1 examples
        sums = torch.cat([sums[:, :-1], sums[:, -2:-1] if n > 1 else torch.zeros_like(sums[:, :1])], dim=1)
        counts = torch.cat([counts[:-1] + 1, counts[-1:]])
    return sums / counts.clamp_min(1)[None, :, None]


def _y_query(batch: ICLBatch) -> Tensor:
    return batch.ys[:, -1]


def _y_query_clean(batch: ICLBatch) -> Tensor:
    return (batch.xs[:, -1] * batch.w).sum(-1)


def _r(batch: ICLBatch) -> Tensor:
    xs, ys, _ = context(batch)
    return correlation(xs, ys)


def _xtx(batch: ICLBatch) -> Tensor:
    xs, _, _ = context(batch)
    gram = xs.mT @ xs / max(xs.shape[1], 1)
    i, j = torch.triu_indices(batch.d, batch.d)
    return gram[:, i, j]


def _register_builtins() -> None:
    register("y_query", _y_query, "the query's y (the last y): probing it per layer gives the P-probing risk")
    register("y_query_clean", _y_query_clean, "x_query . w, the noise-free query target")
    register("w", lambda b: b.w, "the prompt's true weights w [B, d]")
    register("r", _r, "feature-target correlation X^T y / n over the context (all examples but the query) [B, d]")
    register("xtx", _xtx, "X^T X / n over the context, upper triangle flattened [B, d(d+1)/2]")
    seen = {"before": "the examples before i", "through": "examples 0..i (the query: the context)", "context": "every context example"}
    for name, pre in _PRES.items():
        register(name, _query_preprocessed(pre), f"preprocessing {pre} applied to the query x, with r from the context [B, d]")
        for view, (_, suffix) in VIEWS.items():
            register(f"{name}{suffix}", _example_preprocessed(pre, view),
                     f"preprocessing {pre} applied to every x_i, with r from {seen[view]} [B, n, d]", per="example")
    for t in GD_STEPS:
        register(f"gd_step_{t}", gd_prediction(t), f"query prediction after {t} GD step(s) from 0 on the context, lr = n/(n+d+1)")
    register("ols_pred", estimator_prediction(lambda b: OLS()), "query prediction of (minimum-norm) OLS on the context")
    register("ridge_pred", estimator_prediction(lambda b: Ridge(RIDGE_ALPHA)), f"query prediction of Ridge(alpha={RIDGE_ALPHA})")
    register("lasso_pred", estimator_prediction(lambda b: Lasso(LASSO_ALPHA)), f"query prediction of Lasso(alpha={LASSO_ALPHA})")
    register("y", lambda b: b.ys, "every example's y [B, n]", per="example")
    register("x", lambda b: b.xs, "every example's x [B, n, d]", per="example")
    for view, (r_name, _) in VIEWS.items():
        register(r_name, lambda b, view=view: r_seen(b, view), f"X^T y / count over {seen[view]}, at every example i [B, n, d]",
                 per="example")


_PRES = {
    "pre_identity": get_preprocessing("identity"),
    "pre_reweight": get_preprocessing("reweight"),
    "pre_power2": get_preprocessing("power", p=2.0),
    "pre_rank_one": get_preprocessing("rank_one", c=1.0),
}
_PRE_NAMES = tuple(_PRES)


_register_builtins()
