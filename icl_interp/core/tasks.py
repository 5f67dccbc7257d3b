"""In-context regression tasks: the data every other module consumes.

A task samples prompts ``(x_1, y_1, ..., x_n, y_n)`` with ``y_i = <w, x_i> + noise``
and a fresh ``w`` per prompt. ``task.sample`` returns an :class:`ICLBatch`.
The same seed always gives the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from .checks import check_float, check_int, check_tensor

__all__ = [
    "ICLBatch",
    "Task",
    "LinearRegression",
    "SparseLinearRegression",
    "Curriculum",
    "task_from_dict",
]


@dataclass(frozen=True)
class ICLBatch:
    """A batch of in-context prompts: inputs ``xs``, targets ``ys`` and true weights ``w``."""

    xs: Float[Tensor, "batch n d"]
    ys: Float[Tensor, "batch n"]
    w: Float[Tensor, "batch d"]

    def __post_init__(self) -> None:
        check_tensor("xs", self.xs, ndim=3)
        b, n, d = self.xs.shape
        check_tensor("ys", self.ys, shape=(b, n))
        check_tensor("w", self.w, shape=(b, d))
        for name, t in (("ys", self.ys), ("w", self.w)):
            if t.device != self.xs.device:
                raise ValueError(f"{name} is on {t.device} but xs on {self.xs.device}: an ICLBatch lives on one device")
            if t.dtype != self.xs.dtype:
                raise TypeError(f"{name} has dtype {t.dtype} but xs {self.xs.dtype}: an ICLBatch has one dtype")

    @property
    def batch_size(self) -> int:
        return self.xs.shape[0]

    @property
    def n_points(self) -> int:
        return self.xs.shape[1]

    @property
    def d(self) -> int:
        return self.xs.shape[2]

    def __len__(self) -> int:
        return self.batch_size

    def __getitem__(self, idx: Any) -> "ICLBatch":
        """Select prompts (rows); the result is again an ``ICLBatch``."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1 if idx != -1 else None)
        return ICLBatch(self.xs[idx], self.ys[idx], self.w[idx])

    def truncate(self, n_points: int) -> "ICLBatch":
        """Keep the first ``n_points`` examples of every prompt."""
        n_points = check_int("n_points", n_points, min_value=1, max_value=self.n_points)
        return ICLBatch(self.xs[:, :n_points], self.ys[:, :n_points], self.w)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "ICLBatch":
        """The batch on ``device`` and/or in floating ``dtype``."""
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        return ICLBatch(*(t.to(device=device, dtype=dtype) for t in (self.xs, self.ys, self.w)))

    @property
    def device(self) -> torch.device:
        return self.xs.device

    @property
    def dtype(self) -> torch.dtype:
        return self.xs.dtype


def _generator(seed: Optional[int], generator: Optional[torch.Generator]) -> torch.Generator:
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(check_int("seed", seed, min_value=0))
    return gen


@dataclass
class Task:
    """Linear regression ``y = <w, x> + noise_std * eps`` with ``w = w_mean + w_std * g``.

    ``x_cov`` (a ``[d, d]`` covariance) makes the inputs correlated; ``w_mean``
    gives the weights a non-zero prior mean (the second seed's "prior knowledge").
    ``x_local`` in [0, 1) makes the examples local (the second seed's "local
    examples", our definition): every input of a prompt, query included, is
    ``sqrt(a) c + sqrt(1 - a) z`` around a per-prompt centre ``c ~ N(0, I)``, so any two
    inputs of a prompt have correlation ``a`` and each input is still ``N(0, I)`` (then
    ``x_cov``); the points are exchangeable, so every prefix of a prompt is local too.
    Subclasses choose the support of ``w``.
    """

    d: int
    noise_std: float = 0.0
    w_mean: Optional[list[float]] = None
    w_std: float = 1.0
    x_cov: Optional[list[list[float]]] = None
    x_local: float = 0.0
    name: str = field(default="linear_regression", init=False)

    def __post_init__(self) -> None:
        self.d = check_int("d", self.d, min_value=1)
        self.noise_std = check_float("noise_std", self.noise_std, min_value=0.0)
        self.w_std = check_float("w_std", self.w_std, min_value=0.0)
        self.x_local = check_float("x_local", self.x_local, min_value=0.0)
        if self.x_local >= 1.0:
            raise ValueError(f"x_local must be in [0, 1) (the correlation of two inputs of a prompt), got {self.x_local}")
        if self.w_mean is not None:
            mean = torch.as_tensor(self.w_mean, dtype=torch.float32)
            if mean.ndim == 0:
                mean = mean.expand(self.d)
            check_tensor("w_mean", mean, shape=(self.d,))
            self.w_mean = mean.tolist()
        self._chol: Optional[Tensor] = None
        if self.x_cov is not None:
            cov = torch.as_tensor(self.x_cov, dtype=torch.float64)
            check_tensor("x_cov", cov, shape=(self.d, self.d))
            if not torch.allclose(cov, cov.T, atol=1e-8):
                raise ValueError("x_cov must be symmetric")
            chol, info = torch.linalg.cholesky_ex(cov)
            if int(info) != 0:
                raise ValueError("x_cov must be positive definite")
            self.x_cov = cov.tolist()
            self._chol = chol.float()

    # -- what subclasses change -------------------------------------------------
    @property
    def norm(self) -> float:
        """Normaliser of squared errors (Garg et al.): d for dense, s for sparse."""
        return float(self.d)

    def _support(self, batch_size: int, active: int, gen: torch.Generator) -> Tensor:
        """A 0/1 mask ``[B, d]`` of the coordinates of w that may be non-zero."""
        mask = torch.zeros(batch_size, self.d)
        mask[:, :active] = 1.0
        return mask

    # -- sampling -----------------------------------------------------------------
    def sample(
        self,
        batch_size: int,
        n_points: int,
        *,
        seed: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        active_dims: Optional[int] = None,
    ) -> ICLBatch:
        """Sample ``batch_size`` prompts of ``n_points`` examples each.

        ``active_dims`` (curriculum) zeroes every coordinate of x and w past it.
        """
        batch_size = check_int("batch_size", batch_size, min_value=1)
        n_points = check_int("n_points", n_points, min_value=1)
        active = self.d if active_dims is None else check_int("active_dims", active_dims, min_value=1, max_value=self.d)
        self._check_active(active)
        gen = _generator(seed, generator)
        xs = torch.randn(batch_size, n_points, self.d, generator=gen)
        if self.x_local > 0:  # drawn only when set, so the other tasks' batches are unchanged
            centre = torch.randn(batch_size, 1, self.d, generator=gen)
            xs = self.x_local**0.5 * centre + (1.0 - self.x_local) ** 0.5 * xs
        if self._chol is not None:
            xs = xs @ self._chol.T
        support = self._support(batch_size, active, gen)
        w = torch.randn(batch_size, self.d, generator=gen) * self.w_std
        if self.w_mean is not None:
            w = w + torch.tensor(self.w_mean)
        w = w * support
        if active < self.d:
            xs[..., active:] = 0.0
        ys = torch.einsum("bnd,bd->bn", xs, w)
        if self.noise_std > 0:
            ys = ys + self.noise_std * torch.randn(batch_size, n_points, generator=gen)
        return ICLBatch(xs, ys, w)

    def _check_active(self, active: int) -> None:
        pass

    # -- (de)serialisation ----------------------------------------------------------
    def to_dict(self) -> dict:
        out = {"name": self.name, "d": self.d, "noise_std": self.noise_std, "w_std": self.w_std}
        if self.w_mean is not None:
            out["w_mean"] = list(self.w_mean)
        if self.x_cov is not None:
            out["x_cov"] = [list(r) for r in self.x_cov]
        if self.x_local > 0:
            out["x_local"] = self.x_local
        return out


@dataclass
class LinearRegression(Task):
    """Dense linear regression: every coordinate of w is drawn."""


@dataclass
class SparseLinearRegression(Task):
    """Sparse linear regression: ``s`` random coordinates of w are non-zero."""

    s: int = 3

    def __post_init__(self) -> None:
        self.name = "sparse_linear_regression"
        super().__post_init__()
        self.s = check_int("s", self.s, min_value=1)
        if self.s > self.d:
            raise ValueError(f"s must be <= d (s={self.s}, d={self.d})")

    @property
    def norm(self) -> float:
        return float(self.s)

    def _check_active(self, active: int) -> None:
        if active < self.s:
            raise ValueError(f"active_dims must be >= s={self.s}, got {active}")

    def _support(self, batch_size: int, active: int, gen: torch.Generator) -> Tensor:
        scores = torch.rand(batch_size, active, generator=gen)
        idx = scores.argsort(dim=1)[:, : self.s]
        mask = torch.zeros(batch_size, self.d)
        mask.scatter_(1, idx, 1.0)
        return mask

    def to_dict(self) -> dict:
        return {**super().to_dict(), "s": self.s}


def task_from_dict(spec: dict) -> Task:
    """Rebuild a task from :meth:`Task.to_dict` output."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"task spec must be a dict with a 'name', got {spec!r}")
    kinds = {"linear_regression": LinearRegression, "sparse_linear_regression": SparseLinearRegression}
    kind = spec["name"]
    if kind not in kinds:
        raise ValueError(f"task name must be one of {sorted(kinds)}, got {kind!r}")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    return kinds[kind](**kwargs)


@dataclass
class Curriculum:
    """Garg et al.'s curriculum: active dims and prompt length grow in steps.

    Every ``dims_every`` steps the active dimension grows by ``dims_inc`` from
    ``dims_start`` to ``dims_end``; likewise for the number of points.
    """

    dims_start: int
    dims_end: int
    points_start: int
    points_end: int
    dims_inc: int = 1
    dims_every: int = 2000
    points_inc: int = 2
    points_every: int = 2000

    def __post_init__(self) -> None:
        for name in ("dims_start", "dims_end", "points_start", "points_end", "dims_inc", "points_inc"):
            check_int(name, getattr(self, name), min_value=1 if "inc" not in name else 0)
        for name in ("dims_every", "points_every"):
            check_int(name, getattr(self, name), min_value=1)
        if self.dims_start > self.dims_end:
            raise ValueError(f"dims_start ({self.dims_start}) must be <= dims_end ({self.dims_end})")
        if self.points_start > self.points_end:
            raise ValueError(f"points_start ({self.points_start}) must be <= points_end ({self.points_end})")

    @classmethod
    def constant(cls, dims: int, points: int) -> "Curriculum":
        return cls(dims, dims, points, points)

    def at(self, step: int) -> tuple[int, int]:
        """(active_dims, n_points) in force at training step ``step``."""
        step = check_int("step", step, min_value=0)
        dims = min(self.dims_end, self.dims_start + self.dims_inc * (step // self.dims_every))
        points = min(self.points_end, self.points_start + self.points_inc * (step // self.points_every))
        return dims, points
