"""Batched reference estimators for in-context regression.

Each estimator solves one regression problem per prompt, for all prompts at
once, with a scikit-learn-like interface: ``est.fit(xs [B,n,d], ys [B,n])``
sets ``est.coef_ [B,d]`` and returns ``est``; ``est.predict(x)`` takes
``[B,d]`` or ``[B,m,d]`` and returns ``[B]`` or ``[B,m]``. Objectives follow
scikit-learn without an intercept. Work is done in float64; ``coef_`` has the
dtype of ``xs``. With no context examples (n = 0) every estimator predicts 0.

Tuning on held-out prompts (``best_ridge`` ...) and the risk-curve input
(``prefix_predictions``) are in :mod:`icl_interp.baselines.tuning`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, Optional, Union

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..core.checks import check_float, check_int, check_tensor
from ._lasso import _lasso_solve, _moments, lasso_path
from .preprocess import PreprocessFn, Preprocessing, as_preprocessing, check_context

__all__ = [
    "Estimator", "OLS", "Ridge", "Lasso", "GD", "PreprocessThenOptimize", "OracleOLS", "Averaging", "lasso_path",
    "RIDGE_ALPHAS", "LASSO_ALPHAS", "GD_LRS",
]

#: Default grids for the tuned baselines. Lasso: Garg et al.'s {1, .1, .01, 1e-3, 1e-4} plus midpoints.
RIDGE_ALPHAS = (1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
LASSO_ALPHAS = (1.0, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 1e-4)
GD_LRS = (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5)


def _min_norm_lstsq(xs: Tensor, ys: Tensor) -> Tensor:
    """Minimum-norm least squares per prompt (exact interpolation or fit when n >= d)."""
    return (torch.linalg.pinv(xs) @ ys[..., None])[..., 0]


def _gd(gram: Tensor, c: Tensor, steps: int, lr: float) -> Tensor:
    """``steps`` steps of GD from 0 on ``1/(2n)||y - Xw||^2`` given its moments."""
    w = torch.zeros_like(c)
    for _ in range(steps):
        w = w - lr * ((gram @ w[..., None])[..., 0] - c)
    return w


class Estimator(abc.ABC):
    """Base class: validation, the n = 0 case, dtype handling and linear prediction.

    Subclasses implement ``_solve(xs, ys, w) -> coef`` on float64 tensors with n >= 1.
    ``needs_w`` tells :func:`evaluate` to pass the true weights to ``fit``.
    """

    needs_w: ClassVar[bool] = False
    coef_: Tensor

    def fit(
        self,
        xs: Float[Tensor, "batch n d"],
        ys: Float[Tensor, "batch n"],
        w: Optional[Float[Tensor, "batch d"]] = None,
    ) -> "Estimator":
        """Fit one regression per prompt; ``w`` (true weights) is used only when ``needs_w``."""
        xs, ys = check_context(xs, ys)
        b, n, d = xs.shape
        if w is not None:
            w = check_tensor("w", w, shape=(b, d))
        if n == 0:
            coef = xs.new_zeros(b, d, dtype=torch.float64)
        else:
            coef = self._solve(xs.double(), ys.double(), w)
        self.coef_ = coef.to(xs.dtype)
        return self

    @abc.abstractmethod
    def _solve(self, xs: Tensor, ys: Tensor, w: Optional[Tensor]) -> Tensor:
        """Coefficients ``[B, d]`` (float64) for a context with n >= 1; each estimator's own solver."""

    def predict(self, x: Union[Float[Tensor, "batch d"], Float[Tensor, "batch m d"]]) -> Tensor:
        """Predictions ``[B]`` for queries ``[B,d]`` or ``[B,m]`` for ``[B,m,d]``."""
        if not hasattr(self, "coef_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(xs, ys) first")
        b, d = self.coef_.shape
        x = check_tensor("x", x, ndim=(2, 3), nonempty=False)
        if x.shape[0] != b or x.shape[-1] != d:
            raise ValueError(f"x must have shape [{b}, d={d}] or [{b}, m, d={d}], got {tuple(x.shape)}")
        out = self._predict(x[:, None, :] if x.ndim == 2 else x)
        return out[:, 0] if x.ndim == 2 else out

    def _predict(self, x: Tensor) -> Tensor:
        return torch.einsum("bmd,bd->bm", x, self.coef_.to(x.dtype))


@dataclass(eq=False)
class OLS(Estimator):
    """Ordinary least squares; minimum-norm when n < d (interpolates the context)."""

    def _solve(self, xs: Tensor, ys: Tensor, w: Optional[Tensor]) -> Tensor:
        return _min_norm_lstsq(xs, ys)


@dataclass(eq=False)
class Ridge(Estimator):
    """``argmin ||y - Xw||^2 + alpha ||w||^2`` (scikit-learn's Ridge, no intercept)."""

    alpha: float = 1.0

    def __post_init__(self) -> None:
        self.alpha = check_float("alpha", self.alpha, min_value=0.0, strict_min=True)

    def _solve(self, xs: Tensor, ys: Tensor, w: Optional[Tensor]) -> Tensor:
        n, d = xs.shape[1:]
        gram, c = _moments(xs, ys)
        eye = torch.eye(d, dtype=xs.dtype, device=xs.device)
        return torch.linalg.solve(gram + (self.alpha / n) * eye, c)


@dataclass(eq=False)
class Lasso(Estimator):
    """``argmin 1/(2n)||y - Xw||^2 + alpha ||w||_1`` (scikit-learn's Lasso, no intercept).

    Solved exactly for all prompts at once (the homotopy of :mod:`icl_interp.baselines._lasso`);
    a prompt is accepted when its duality gap (scikit-learn's, divided by n) is at
    most ``tol * ||y||^2 / n``, else FISTA finishes it in at most ``max_iter`` iterations.
    """

    alpha: float = 1.0
    max_iter: int = 10_000
    tol: float = 1e-8

    def __post_init__(self) -> None:
        self.alpha = check_float("alpha", self.alpha, min_value=0.0, strict_min=True)
        self.max_iter = check_int("max_iter", self.max_iter, min_value=1)
        self.tol = check_float("tol", self.tol, min_value=0.0)

    def _solve(self, xs: Tensor, ys: Tensor, w: Optional[Tensor]) -> Tensor:
        return _lasso_solve(xs, ys, [self.alpha], self.max_iter, self.tol)[0]


@dataclass(eq=False)
class GD(Estimator):
    """``steps`` steps of gradient descent from w = 0 on ``1/(2n)||y - Xw||^2`` with step size ``lr``."""

    steps: int = 1
    lr: float = 1.0

    def __post_init__(self) -> None:
        self.steps = check_int("steps", self.steps, min_value=0)
        self.lr = check_float("lr", self.lr, min_value=0.0)

    def _solve(self, xs: Tensor, ys: Tensor, w: Optional[Tensor]) -> Tensor:
        return _gd(*_moments(xs, ys), self.steps, self.lr)


class PreprocessThenOptimize(Estimator):
    """Preprocess the context with a map computed from the context, then run GD on it.

    ``preprocessing`` is a name from :data:`~icl_interp.baselines.preprocess.PREPROCESSINGS`
    (with ``params``), a :class:`~icl_interp.baselines.preprocess.Preprocessing` or a callable
    ``pre(xs_context, ys_context, x)``. Queries are preprocessed with the statistics
    of the stored context. ``coef_`` lives in the *preprocessed* space: predictions
    are ``pre(context, x) . coef_``, not ``x . coef_``.
    """

    def __init__(
        self,
        preprocessing: Union[str, Preprocessing, PreprocessFn] = "reweight",
        steps: int = 1,
        lr: float = 1.0,
        **params: float,
    ) -> None:
        self.preprocessing = as_preprocessing(preprocessing, **params)
        self.steps = check_int("steps", steps, min_value=0)
        self.lr = check_float("lr", lr, min_value=0.0)

    def __repr__(self) -> str:
        pre = getattr(self.preprocessing, "__name__", self.preprocessing)
        return f"PreprocessThenOptimize({pre}, steps={self.steps}, lr={self.lr:g})"

    def _apply(self, x: Tensor) -> Tensor:
        out = self.preprocessing(self._context[0], self._context[1], x.to(self._context[0].dtype))
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"preprocessing must return a tensor of shape {tuple(x.shape)}, got {got}")
        return out

    def _solve(self, xs: Tensor, ys: Tensor, w: Optional[Tensor]) -> Tensor:
        self._context = (xs, ys)
        return _gd(*_moments(self._apply(xs), ys), self.steps, self.lr)

    def fit(self, xs: Tensor, ys: Tensor, w: Optional[Tensor] = None) -> "PreprocessThenOptimize":
        self._context = None
        return super().fit(xs, ys, w)  # type: ignore[return-value]

    def _predict(self, x: Tensor) -> Tensor:
        if self._context is None:  # n = 0: coef_ is zero
            return x.new_zeros(x.shape[:2])
        return super()._predict(self._apply(x).to(x.dtype))


@dataclass(eq=False)
class OracleOLS(Estimator):
    """Least squares restricted to the true support (a lower bound for sparse tasks).

    The support is ``support`` ([B,d] or [d] bool) if given, else the non-zero
    pattern of the true weights ``w`` passed to ``fit``.
    """

    support: Optional[Bool[Tensor, "*batch d"]] = None
    needs_w: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.support is not None:
            check_tensor("support", self.support, ndim=(1, 2), floating=False)
            if self.support.dtype != torch.bool:
                raise TypeError(f"support must be a bool tensor, got dtype {self.support.dtype}")

    def _solve(self, xs: Tensor, ys: Tensor, w: Optional[Tensor]) -> Tensor:
        b, _, d = xs.shape
        if self.support is not None:
            mask = self.support.to(xs.device)
            if mask.shape[-1] != d or (mask.ndim == 2 and mask.shape[0] != b):
                raise ValueError(f"support must have shape [{d}] or [{b}, {d}], got {tuple(mask.shape)}")
            mask = mask.expand(b, d)
        elif w is not None:
            mask = w != 0
        else:
            raise ValueError("OracleOLS needs the true weights: pass w to fit() or support to OracleOLS()")
        return _min_norm_lstsq(xs * mask[:, None, :].to(xs.dtype), ys)


@dataclass(eq=False)
class Averaging(Estimator):
    """``w = mean_i y_i x_i`` (Garg et al.'s averaging estimator; one GD step with lr 1)."""

    def _solve(self, xs: Tensor, ys: Tensor, w: Optional[Tensor]) -> Tensor:
        return _moments(xs, ys)[1]
