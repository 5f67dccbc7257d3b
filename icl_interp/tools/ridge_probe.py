"""RidgeProbe: the linear read-out P-probing fits, closed form with exact leave-one-out penalty choice.

Kept apart from :mod:`icl_interp.tools.probing` (which decides *what* is probed *where*),
so the estimator can be used on any activations and checked against scikit-learn.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from ..core.checks import check_float, check_int, check_tensor

__all__ = ["RidgeProbe", "r2_score", "PROBE_ALPHAS"]

#: Default ridge penalties searched by leave-one-out (absolute, as scikit-learn's ``alpha``).
PROBE_ALPHAS = tuple(10.0 ** (k / 2) for k in range(-12, 13))


def r2_score(y_true: Float[Tensor, "n k"], y_pred: Float[Tensor, "n k"]) -> Float[Tensor, " k"]:
    """R2 per output (scikit-learn's convention: a constant column scores 1 if predicted exactly, else 0)."""
    sse = ((y_true - y_pred) ** 2).sum(0)
    sst = ((y_true - y_true.mean(0)) ** 2).sum(0)
    safe = torch.where(sst > 0, sst, torch.ones_like(sst))
    return torch.where(sst > 0, 1 - sse / safe, (sse == 0).to(sse.dtype))


class RidgeProbe:
    """Closed-form ridge with an unpenalised intercept: ``Y ~ X @ coef_ + intercept_``.

    The objective is scikit-learn's ``||Y - X B - b||^2 + alpha ||B||^2``. With
    ``alpha=None`` the penalty is chosen from ``alphas`` by exact leave-one-out
    error, computed for every alpha from one SVD of the centred ``X`` (``loo_mse_``
    holds it). ``rank`` makes it a reduced-rank ridge: the fitted values are projected
    onto their top ``rank`` principal directions (alpha is chosen before the projection).
    Work is done in float64; predictions have X's dtype and are differentiable in X.
    """

    def __init__(self, alpha: Optional[float] = None, alphas: Sequence[float] = PROBE_ALPHAS, rank: Optional[int] = None):
        self.alpha = None if alpha is None else check_float("alpha", alpha, min_value=0.0, strict_min=True)
        if not isinstance(alphas, Sequence) or isinstance(alphas, str) or len(alphas) == 0:
            raise ValueError(f"alphas must be a non-empty sequence of positive numbers, got {alphas!r}")
        self.alphas = tuple(check_float("alphas", a, min_value=0.0, strict_min=True) for a in alphas)
        self.rank = None if rank is None else check_int("rank", rank, min_value=1)

    def __repr__(self) -> str:
        alpha = getattr(self, "alpha_", self.alpha)
        return f"RidgeProbe(alpha={alpha if alpha is None else f'{alpha:g}'}, rank={self.rank})"

    @staticmethod
    def decompose(X: Float[Tensor, "n f"]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(column means, centred X, and its thin SVD u, s, vh), in float64: what :meth:`fit` needs of X. Pass it to
        ``fit(X, Y, decomposition=...)`` to fit several targets on the same X with one SVD."""
        x = check_tensor("X", X, ndim=2).double()
        mean = x.mean(0)
        xc = x - mean
        u, s, vh = torch.linalg.svd(xc, full_matrices=False)
        return mean, xc, u, s, vh

    def fit(self, X: Float[Tensor, "n f"], Y: Union[Float[Tensor, " n"], Float[Tensor, "n k"]],
            decomposition: Optional[tuple] = None) -> "RidgeProbe":
        """Fit on rows ``X`` ``[n, f]`` and targets ``Y``; ``decomposition``: :meth:`decompose` of this same ``X``."""
        X = check_tensor("X", X, ndim=2)
        Y = check_tensor("Y", Y, ndim=(1, 2))
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"X and Y must have the same number of rows, got {X.shape[0]} and {Y.shape[0]}")
        if X.shape[0] < 2:
            raise ValueError(f"X must have at least 2 rows to fit a probe with an intercept, got {X.shape[0]}")
        self._vector = Y.ndim == 1
        if decomposition is None:
            decomposition = self.decompose(X)
        elif not (isinstance(decomposition, tuple) and len(decomposition) == 5 and decomposition[1].shape == X.shape):
            raise ValueError(f"decomposition must be RidgeProbe.decompose(X) of this X (shape {tuple(X.shape)})")
        self.x_mean_, xc, u, s, vh = decomposition
        y = Y.double().reshape(X.shape[0], -1)
        y_mean = y.mean(0)
        yc = y - y_mean
        uty = u.T @ yc
        if self.alpha is None:
            self.loo_mse_ = self._loo_mse(u, s, uty, yc, torch.tensor(self.alphas, dtype=s.dtype, device=s.device))
            self.alpha_ = self.alphas[int(torch.argmin(self.loo_mse_))]
        else:
            self.alpha_ = self.alpha
        coef = vh.T @ ((s / (s**2 + self.alpha_))[:, None] * uty)
        if self.rank is not None and self.rank < coef.shape[1]:
            _, _, wh = torch.linalg.svd(xc @ coef, full_matrices=False)
            coef = coef @ (wh[: self.rank].T @ wh[: self.rank])
        self.coef_ = coef
        self.intercept_ = y_mean - self.x_mean_ @ coef
        return self

    @staticmethod
    def _loo_mse(u: Tensor, s: Tensor, uty: Tensor, yc: Tensor, alphas: Tensor) -> Tensor:
        """Exact leave-one-out MSE for every penalty ``[A]`` at once: residual / (1 - leverage),
        leverage including the intercept's 1/N."""
        shrink = s**2 / (s**2 + alphas[:, None])  # [A, r]
        # [N, r] @ [A, r, k]: the shrunken coordinates first (tiny), then one batched product; no [A, N, r] intermediate
        resid = yc - torch.matmul(u, shrink[:, :, None] * uty)  # [A, N, k]
        lev = 1.0 / yc.shape[0] + shrink @ (u**2).T  # [A, N]
        return ((resid / (1 - lev).clamp_min(1e-12)[..., None]) ** 2).mean((1, 2))

    def predict(self, X: Float[Tensor, "n f"]) -> Tensor:
        """``[N, k]`` predictions (``[N]`` if fitted on a vector)."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("RidgeProbe is not fitted: call fit(X, Y) first")
        X = check_tensor("X", X, ndim=2, finite=False)
        if X.shape[1] != self.coef_.shape[0]:
            raise ValueError(f"X must have {self.coef_.shape[0]} features, got {X.shape[1]}")
        out = (X.double() @ self.coef_ + self.intercept_).to(X.dtype)
        return out[:, 0] if self._vector else out

    def score(self, X: Float[Tensor, "n f"], Y: Union[Float[Tensor, " n"], Float[Tensor, "n k"]]) -> float:
        """R2 averaged over outputs (scikit-learn's ``uniform_average``)."""
        pred = self.predict(X).reshape(X.shape[0], -1).double()
        return float(r2_score(Y.double().reshape(X.shape[0], -1), pred).mean())
