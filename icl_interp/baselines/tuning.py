"""Tuned baselines and the risk-curve input.

:func:`tune` picks, separately for every number of context examples, the candidate
estimator with the lowest error on held-out prompts (``best_ridge``, ``best_lasso``,
``best_gd``, ``best_pto`` tune the usual grids); :func:`prefix_predictions` gives
the risk-curve input: the prediction of each ``y_k`` from the first ``k`` examples.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from ..core.checks import check_int
from ..core.tasks import ICLBatch, Task
from ._lasso import _lasso_prefix_predictions_path
from .estimators import GD, GD_LRS, LASSO_ALPHAS, RIDGE_ALPHAS, Estimator, Lasso, PreprocessThenOptimize, Ridge
from .preprocess import PreprocessFn, Preprocessing

__all__ = ["Tuned", "tune", "best_ridge", "best_lasso", "best_gd", "best_pto", "prefix_predictions"]


# -- tuning ------------------------------------------------------------------------


class Tuned(Estimator):
    """Per-context-length choice among candidates: ``choice[k]`` is used with k examples.

    Context lengths beyond the tuned range use the last choice. ``val_error``
    holds the validation error (normalised) of every candidate at every k.
    """

    def __init__(
        self, candidates: Mapping[str, Estimator], choice: Sequence[str], val_error: dict, name: str = "tuned"
    ) -> None:
        self.candidates = _check_candidates(candidates)
        self.choice = list(choice)
        unknown = sorted(set(self.choice) - set(self.candidates))
        if not self.choice or unknown:
            raise ValueError(f"choice must be a non-empty list of candidate names, got unknown {unknown}")
        self.val_error = val_error
        self.name = name

    @property
    def needs_w(self) -> bool:  # type: ignore[override]
        return any(c.needs_w for c in self.candidates.values())

    def __repr__(self) -> str:
        return f"Tuned({self.name!r}: {sorted(set(self.choice))} of {len(self.candidates)} candidates)"

    def chosen(self, k: int) -> str:
        """Name of the candidate used with ``k`` context examples."""
        return self.choice[min(check_int("k", k, min_value=0), len(self.choice) - 1)]

    def fit(self, xs: Tensor, ys: Tensor, w: Optional[Tensor] = None) -> "Tuned":
        self.best_: Optional[Estimator] = None  # stays None with no context examples (predict 0)
        super().fit(xs, ys, w)
        return self

    def _solve(self, xs: Tensor, ys: Tensor, w: Optional[Tensor]) -> Tensor:
        best = copy.deepcopy(self.candidates[self.chosen(xs.shape[1])])
        self.best_ = best.fit(xs, ys, w if best.needs_w else None)
        return self.best_.coef_.double()

    def _predict(self, x: Tensor) -> Tensor:
        return super()._predict(x) if self.best_ is None else self.best_._predict(x)


def _check_candidates(candidates: Any) -> dict[str, Estimator]:
    if not isinstance(candidates, Mapping) or not candidates:
        raise ValueError(f"candidates must be a non-empty dict name -> estimator, got {candidates!r}")
    for name, est in candidates.items():
        if not isinstance(est, Estimator):
            raise TypeError(f"candidates[{name!r}] must be an Estimator, got {type(est).__name__}")
    return dict(candidates)


def tune(
    candidates: Mapping[str, Estimator],
    task: Task,
    n_points: int,
    *,
    n_prompts: int = 500,
    seed: int = 1_000_003,
    name: str = "tuned",
) -> Tuned:
    """Choose, for each context length, the candidate with the lowest validation error.

    Validation prompts are sampled from ``task`` with ``seed``; keep it different
    from the seed used for testing (``evaluate`` defaults to 0). Diverging
    candidates (non-finite errors) are never chosen.
    """
    candidates = _check_candidates(candidates)
    if not isinstance(task, Task):
        raise TypeError(f"task must be a Task, got {type(task).__name__}")
    n_points = check_int("n_points", n_points, min_value=1)
    n_prompts = check_int("n_prompts", n_prompts, min_value=1)
    batch = task.sample(n_prompts, n_points, seed=check_int("seed", seed, min_value=0))
    errors = {}
    shared = _lasso_prefix_predictions(candidates, batch)
    for key, est in candidates.items():
        preds = shared[key] if key in shared else prefix_predictions(est, batch)
        sq = (preds - batch.ys).double() ** 2 / task.norm
        errors[key] = torch.nan_to_num(sq.mean(0), nan=math.inf).tolist()
    keys = list(errors)
    choice = [keys[i] for i in torch.tensor([errors[k] for k in keys]).argmin(0).tolist()]
    return Tuned(candidates, choice, errors, name)


def best_ridge(task: Task, n_points: int, alphas: Sequence[float] = RIDGE_ALPHAS, **kwargs: Any) -> Tuned:
    """Ridge with the best ``alpha`` per context length (``kwargs`` go to :func:`tune`)."""
    kwargs.setdefault("name", "best ridge")
    return tune({f"ridge_{a:g}": Ridge(a) for a in alphas}, task, n_points, **kwargs)


def best_lasso(task: Task, n_points: int, alphas: Sequence[float] = LASSO_ALPHAS, **kwargs: Any) -> Tuned:
    """Lasso with the best ``alpha`` per context length (``kwargs`` go to :func:`tune`)."""
    kwargs.setdefault("name", "best lasso")
    return tune({f"lasso_{a:g}": Lasso(a) for a in alphas}, task, n_points, **kwargs)


def best_gd(task: Task, n_points: int, steps: int, lrs: Sequence[float] = GD_LRS, **kwargs: Any) -> Tuned:
    """``steps``-step GD with the best step size per context length."""
    kwargs.setdefault("name", f"best {steps}-step GD")
    return tune({f"gd{steps}_{lr:g}": GD(steps, lr) for lr in lrs}, task, n_points, **kwargs)


def best_pto(
    task: Task,
    n_points: int,
    steps: int,
    preprocessings: Sequence[Union[str, Preprocessing, PreprocessFn]] = ("reweight",),
    lrs: Sequence[float] = GD_LRS,
    **kwargs: Any,
) -> Tuned:
    """PtO with the best (preprocessing, step size) pair per context length."""
    candidates = {}
    for pre in preprocessings:
        for lr in lrs:
            est = PreprocessThenOptimize(pre, steps, lr)
            candidates[f"pto{steps}_{getattr(pre, '__name__', pre)}_{lr:g}"] = est
    kwargs.setdefault("name", f"best {steps}-step PtO")
    return tune(candidates, task, n_points, **kwargs)


# -- risk-curve input -----------------------------------------------------------------


def prefix_predictions(est: Estimator, batch: ICLBatch) -> Float[Tensor, "batch n"]:
    """``preds[:, k]``: prediction of ``ys[:, k]`` from the first ``k`` examples (0 at k = 0).

    ``est`` itself is not modified; :class:`Tuned` uses its per-k choice.
    """
    if not (hasattr(est, "fit") and hasattr(est, "predict")):
        raise TypeError(f"est must be an estimator with fit and predict, got {type(est).__name__}")
    if not isinstance(batch, ICLBatch):
        raise TypeError(f"batch must be an ICLBatch, got {type(batch).__name__}")
    preds = batch.ys.new_zeros(batch.batch_size, batch.n_points)
    if isinstance(est, Tuned):  # each candidate only where it is chosen
        names = [est.chosen(k) for k in range(batch.n_points)]
        for name in dict.fromkeys(names):
            _fill_prefixes(preds, est.candidates[name], batch, [k for k, c in enumerate(names) if c == name])
    else:
        _fill_prefixes(preds, est, batch, range(batch.n_points))
    return preds


def _lasso_prefix_predictions(candidates: Mapping[str, Estimator], batch: ICLBatch) -> dict[str, Tensor]:
    """:func:`prefix_predictions` of every plain ``Lasso`` candidate, one homotopy path per prefix for all their alphas."""
    groups: dict[tuple, dict[str, float]] = {}
    for key, est in candidates.items():
        if type(est) is Lasso:
            groups.setdefault((est.max_iter, est.tol), {})[key] = est.alpha
    out = {}
    for (max_iter, tol), alphas in groups.items():
        out.update(zip(alphas, _lasso_prefix_predictions_path(batch.xs, batch.ys, list(alphas.values()), max_iter, tol)))
    return out


def _fill_prefixes(preds: Tensor, est: Any, batch: ICLBatch, ks: Sequence[int]) -> None:
    """Write into ``preds[:, k]`` the prediction from the first k examples, for every k in ``ks`` (k > 0)."""
    est = copy.deepcopy(est)
    w = batch.w if getattr(est, "needs_w", False) else None
    for k in ks:
        if k > 0:
            est.fit(batch.xs[:, :k], batch.ys[:, :k], w)
            preds[:, k] = est.predict(batch.xs[:, k])
