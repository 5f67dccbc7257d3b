"""The exact batched Lasso solver behind :class:`~icl_interp.baselines.estimators.Lasso` and :func:`lasso_path`.

A batched homotopy (LARS-Lasso) follows every prompt's regularisation path from
``max|X^T y|/n`` down to each alpha; the optimality equations are then solved on
the final support. A prompt is accepted when its duality gap (scikit-learn's,
divided by n) is at most ``tol * ||y||^2 / n``; the rare rest (numerical ties) are
finished by FISTA with adaptive restart. Private: the public names are
``icl_interp.baselines.estimators.Lasso`` and ``icl_interp.baselines.estimators.lasso_path`` (``ii.lasso_path``).
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from ..core.checks import check_float, check_int, check_tensor

__all__ = ["lasso_path"]


def _moments(xs: Tensor, ys: Tensor) -> tuple[Tensor, Tensor]:
    """``G = X^T X / n`` and ``c = X^T y / n``: what GD, ridge and Lasso need."""
    n = xs.shape[1]
    return xs.mT @ xs / n, torch.einsum("bnd,bn->bd", xs, ys) / n


def lasso_path(
    xs: Float[Tensor, "batch n d"], ys: Float[Tensor, "batch n"], alphas: Sequence[float], *, max_iter: int = 10_000, tol: float = 1e-8
) -> Float[Tensor, "alpha batch d"]:
    """Lasso coefficients of every prompt at every ``alpha`` (in the order given), from one homotopy path each.

    The same solutions as ``Lasso(alpha).fit(xs, ys).coef_`` for each alpha, for
    about the cost of the smallest alpha alone: the path passes every larger alpha
    on its way down. Float64 work, ``xs``'s dtype out.
    """
    check_tensor("xs", xs, ndim=3)
    check_tensor("ys", ys, shape=(xs.shape[0], xs.shape[1]))
    if not isinstance(alphas, (list, tuple)) or not alphas:
        raise ValueError(f"alphas must be a non-empty list of positive floats, got {alphas!r}")
    alphas = [check_float(f"alphas[{i}]", a, min_value=0.0, strict_min=True) for i, a in enumerate(alphas)]
    max_iter, tol = check_int("max_iter", max_iter, min_value=1), check_float("tol", tol, min_value=0.0)
    if xs.shape[1] == 0:
        return xs.new_zeros(len(alphas), xs.shape[0], xs.shape[2])
    return _lasso_solve(xs.double(), ys.double(), alphas, max_iter, tol).to(xs.dtype)


def _lasso_prefix_predictions_path(xs: Tensor, ys: Tensor, alphas: Sequence[float], max_iter: int, tol: float) -> Tensor:
    """``[A, B, n]``: at every k, each alpha's Lasso prediction of ``ys[:, k]`` from the first k examples (0 at k = 0)."""
    preds = ys.new_zeros(len(alphas), *ys.shape)
    for k in range(1, ys.shape[1]):
        coefs = _lasso_solve(xs[:, :k].double(), ys[:, :k].double(), alphas, max_iter, tol)
        preds[:, :, k] = torch.einsum("bd,abd->ab", xs[:, k], coefs.to(xs.dtype))
    return preds


def _lasso_solve(xs: Tensor, ys: Tensor, alphas: Sequence[float], max_iter: int, tol: float) -> Tensor:
    """``[A, B, d]``: the homotopy's supports, the exact solve on each, FISTA for the rare prompts whose gap is too big."""
    n = xs.shape[1]
    gram, c = _moments(xs, ys)
    order = sorted(set(alphas), reverse=True)
    signs = _lasso_path(gram, c, order)  # [A', B, d], alphas descending
    coefs = {}
    for a, sign in zip(order, signs):
        coef, ok = _support_solve(gram, c - a * sign, sign != 0, n)
        todo = ~ok | (_lasso_gap(xs, ys, a, coef) > tol * (ys * ys).mean(1))
        if bool(todo.any()):
            coef[todo] = _lasso_fista(xs[todo], ys[todo], a, max_iter, tol, coef[todo])
        coefs[a] = coef
    return torch.stack([coefs[a] for a in alphas])


def _support_solve(gram: Tensor, rhs: Tensor, mask: Tensor, n: Optional[int] = None) -> tuple[Tensor, Tensor]:
    """Solve ``G_SS v_S = rhs_S`` with ``v = 0`` off S (mask); ``ok`` is False where singular or |S| > n."""
    outer = mask[:, :, None] & mask[:, None, :]
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    sol, info = torch.linalg.solve_ex(torch.where(outer, gram, eye), (rhs * mask)[..., None])
    sol = sol[..., 0] * mask
    ok = (info == 0) & torch.isfinite(sol).all(-1)
    if n is not None:
        ok &= mask.sum(-1) <= n
    return torch.where(ok[:, None], sol, torch.zeros_like(sol)), ok


def _lasso_path(gram: Tensor, c: Tensor, alphas: Sequence[float]) -> Tensor:
    """Signs ``[A, B, d]`` (0 off the support) of the Lasso solutions at ``alphas`` (descending), by the homotopy method.

    Along the path the residual correlations ``g = c - G w`` equal ``lam * sign`` on the
    support and are below ``lam`` in size elsewhere; ``w`` moves linearly in ``lam``
    between events (a coordinate joins or drops out, or ``lam`` reaches the next alpha),
    so each step jumps to the next event.
    """
    d = c.shape[1]
    grid = torch.tensor(list(alphas), dtype=c.dtype, device=c.device)
    lam, first = c.abs().max(-1)
    sign = torch.zeros_like(c).scatter_(1, first[:, None], torch.sign(c.gather(1, first[:, None])))
    out = torch.zeros(len(grid), *c.shape, dtype=c.dtype, device=c.device)
    nxt = (grid[None, :] >= lam[:, None]).sum(-1)  # alphas above max|c| have the zero solution
    todo = torch.nonzero(nxt < len(grid))[:, 0]
    gram, c, lam, sign, nxt = gram[todo], c[todo], lam[todo], sign[todo], nxt[todo]
    w = torch.zeros_like(c)
    dropped = torch.zeros_like(c)  # sign of a coordinate that just dropped out: it sits on that boundary
    inf = torch.tensor(float("inf"), dtype=c.dtype, device=c.device)
    for _ in range(8 * d + 8 + len(grid)):
        if len(todo) == 0:
            break
        active = sign != 0
        direction, ok = _support_solve(gram, sign, active)  # dw / d(-lam)
        slope = (gram @ direction[..., None])[..., 0]
        g = c - (gram @ w[..., None])[..., 0]
        up, down = (lam[:, None] - g) / (1 - slope), (lam[:, None] + g) / (1 + slope)
        up = torch.where((up > 0) & (dropped <= 0), up, inf)
        down = torch.where((down > 0) & (dropped >= 0), down, inf)
        join = torch.where(active, inf, torch.nan_to_num(torch.minimum(up, down), nan=float("inf")))
        drop = torch.where(active, -w / direction, inf)
        drop = torch.where(drop > 0, drop, inf)
        (join_at, j_join), (drop_at, j_drop) = join.min(-1), drop.min(-1)
        target = lam - grid[nxt]
        gamma = torch.minimum(torch.minimum(join_at, drop_at), target)
        w = w + gamma[:, None] * direction
        lam = lam - gamma
        reached = target <= torch.minimum(join_at, drop_at)
        rows = torch.arange(len(todo), device=c.device)
        out[nxt[reached], todo[reached]] = sign[reached]
        nxt = nxt + reached.long()
        is_drop = ~reached & (drop_at < join_at)
        is_join = ~reached & ~is_drop
        new_sign = torch.sign((g - gamma[:, None] * slope).gather(1, j_join[:, None]))[:, 0]
        sign[rows[is_join], j_join[is_join]] = new_sign[is_join]
        dropped = torch.zeros_like(dropped)
        dropped[rows[is_drop], j_drop[is_drop]] = sign[rows[is_drop], j_drop[is_drop]]
        sign[rows[is_drop], j_drop[is_drop]] = 0
        w[rows[is_drop], j_drop[is_drop]] = 0
        _fill_rest(out, todo[~ok], nxt[~ok], sign[~ok])  # singular: the gap check sends these to FISTA
        keep = ok & (nxt < len(grid))
        todo, gram, c, lam, sign, w, dropped, nxt = (v[keep] for v in (todo, gram, c, lam, sign, w, dropped, nxt))
    _fill_rest(out, todo, nxt, sign)  # out of iterations: likewise
    return out


def _fill_rest(out: Tensor, rows: Tensor, nxt: Tensor, sign: Tensor) -> None:
    """``out[a, rows[i]] = sign[i]`` for every alpha index ``a >= nxt[i]``."""
    for i in range(len(rows)):
        out[int(nxt[i]):, rows[i]] = sign[i]


def _lasso_gap(xs: Tensor, ys: Tensor, alpha: float, w: Tensor) -> Tensor:
    """Duality gap of the Lasso: scikit-learn's formula divided by n."""
    resid = ys - (xs @ w[..., None])[..., 0]
    dual_norm = (resid[:, None, :] @ xs)[:, 0].abs().amax(-1) / xs.shape[1]  # ||X^T (y - Xw)||_inf / n
    const = torch.where(dual_norm > alpha, alpha / dual_norm.clamp_min(1e-300), torch.ones_like(dual_norm))
    resid_sq = (resid * resid).mean(1)
    return 0.5 * resid_sq * (1 + const**2) - const * (resid * ys).mean(1) + alpha * w.abs().sum(-1)


def _lasso_fista(xs: Tensor, ys: Tensor, alpha: float, max_iter: int, tol: float, init: Tensor) -> Tensor:
    """Batched FISTA with adaptive restart; every 10 iterations try the exact solve on the
    current support, and retire prompts whose duality gap is small enough."""
    n = xs.shape[1]
    gram, c = _moments(xs, ys)
    out = init.clone()
    top = torch.linalg.eigvalsh(gram)[:, -1]
    step = torch.where(top > 0, 1 / top.clamp_min(1e-300), torch.zeros_like(top))[:, None]
    threshold = tol * (ys * ys).mean(1)
    todo = torch.arange(c.shape[0], device=c.device)
    w, z, t = out.clone(), out.clone(), torch.ones_like(threshold)
    for it in range(1, max_iter + 1):
        u = z - step * ((gram @ z[..., None])[..., 0] - c)
        w_new = torch.sign(u) * (u.abs() - step * alpha).clamp_min(0)
        t_new = (1 + torch.sqrt(1 + 4 * t**2)) / 2
        restart = ((z - w_new) * (w_new - w)).sum(-1) > 0  # momentum points uphill: drop it
        beta = torch.where(restart, torch.zeros_like(t), (t - 1) / t_new)
        t = torch.where(restart, torch.ones_like(t), t_new)
        z = w_new + beta[:, None] * (w_new - w)
        w = w_new
        if it % 10 and it != max_iter:
            continue
        polished, ok = _support_solve(gram, c - alpha * torch.sign(w), w != 0, n)
        polished = torch.where(ok[:, None], polished, w)
        gap_w, gap_p = _lasso_gap(xs, ys, alpha, w), _lasso_gap(xs, ys, alpha, polished)
        out[todo] = torch.where((gap_p < gap_w)[:, None], polished, w)
        keep = torch.minimum(gap_w, gap_p) > threshold
        if not bool(keep.any()):
            return out
        todo, xs, ys, gram, c, step, threshold = (v[keep] for v in (todo, xs, ys, gram, c, step, threshold))
        w, z, t = w[keep], z[keep], t[keep]
    warnings.warn(
        f"Lasso(alpha={alpha:g}) did not converge for {len(todo)} prompt(s) in {max_iter} iterations",
        RuntimeWarning,
        stacklevel=4,
    )
    return out
