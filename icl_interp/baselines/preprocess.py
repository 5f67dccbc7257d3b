"""Preprocessing hypotheses for "preprocess-then-optimize" (PtO).

The seed paper's explanation of a trained ICL transformer is that layer 0
*preprocesses* the in-context inputs with a map computed from the context
itself, and later layers run gradient steps on the preprocessed data. The exact
map is unknown, so this module provides a small family of candidates, all
built from the feature-target correlation ``r = X^T y / n``:

- ``identity``: ``x``
- ``reweight``: ``r * x`` (coordinatewise)
- ``power(p)``: ``|r|^p * x``
- ``rank_one(c)``: ``x + c (r . x) r``

Every preprocessing is a callable ``pre(xs_context, ys_context, x) -> x~`` with
``xs_context [B,n,d]``, ``ys_context [B,n]`` and ``x [B,m,d]``; any user
function with that signature can be used wherever a preprocessing is expected.
New named maps can be added to :data:`PREPROCESSINGS` as ``fn(r, x, **params)``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import torch
from jaxtyping import Float
from torch import Tensor

from ..core.checks import check_float, check_tensor

__all__ = [
    "Preprocessing",
    "PREPROCESSINGS",
    "correlation",
    "get_preprocessing",
    "as_preprocessing",
    "identity",
    "reweight",
    "power",
    "rank_one",
]

PreprocessFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def correlation(xs: Float[Tensor, "batch n d"], ys: Float[Tensor, "batch n"]) -> Float[Tensor, "batch d"]:
    """The feature-target correlation ``r = X^T y / n`` per prompt (zeros when n = 0)."""
    xs, ys = check_context(xs, ys)
    n = xs.shape[1]
    if n == 0:
        return xs.new_zeros(xs.shape[0], xs.shape[2])
    return torch.einsum("bnd,bn->bd", xs, ys) / n


def check_context(xs: Any, ys: Any, xs_name: str = "xs", ys_name: str = "ys") -> tuple[Tensor, Tensor]:
    """Validate a context ``xs [B,n,d]``, ``ys [B,n]``; n = 0 is allowed, B and d must be >= 1."""
    xs = check_tensor(xs_name, xs, ndim=3, nonempty=False)
    b, n, d = xs.shape
    if b == 0 or d == 0:
        raise ValueError(f"{xs_name} must have batch >= 1 and d >= 1, got shape {tuple(xs.shape)}")
    ys = check_tensor(ys_name, ys, shape=(b, n), nonempty=False)
    return xs, ys


def _identity(r: Tensor, x: Tensor) -> Tensor:
    return x


def _reweight(r: Tensor, x: Tensor) -> Tensor:
    return r[:, None, :] * x


def _power(r: Tensor, x: Tensor, p: float = 1.0) -> Tensor:
    return r.abs()[:, None, :] ** p * x


def _rank_one(r: Tensor, x: Tensor, c: float = 1.0) -> Tensor:
    return x + c * (x @ r[:, :, None]) * r[:, None, :]


#: Named maps ``fn(r [B,d], x [B,m,d], **params) -> [B,m,d]``; parameters are floats with defaults.
PREPROCESSINGS: dict[str, Callable[..., Tensor]] = {
    "identity": _identity,
    "reweight": _reweight,
    "power": _power,
    "rank_one": _rank_one,
}

# Lower bounds on parameters where the map needs one (|r|^p is undefined at r = 0 for p < 0).
_PARAM_MIN = {("power", "p"): 0.0}


@dataclass(frozen=True)
class Preprocessing:
    """A named preprocessing from :data:`PREPROCESSINGS` with its parameters."""

    name: str
    params: dict[str, float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.name not in PREPROCESSINGS:
            raise ValueError(f"preprocessing name must be one of {sorted(PREPROCESSINGS)}, got {self.name!r}")
        if not isinstance(self.params, dict):
            raise TypeError(f"params must be a dict, got {type(self.params).__name__}")
        fn = PREPROCESSINGS[self.name]
        allowed = [p for p in inspect.signature(fn).parameters if p not in ("r", "x")]
        params = {}
        for key, value in self.params.items():
            if key not in allowed:
                raise ValueError(f"preprocessing {self.name!r} takes parameters {allowed}, got {key!r}")
            params[key] = check_float(key, value, min_value=_PARAM_MIN.get((self.name, key)))
        object.__setattr__(self, "params", params)

    def transform(
        self, r: Float[Tensor, "batch d"], x: Float[Tensor, "batch m d"]
    ) -> Float[Tensor, "batch m d"]:
        """Apply the map given precomputed context statistics ``r``."""
        return PREPROCESSINGS[self.name](r, x, **self.params)

    def __call__(
        self,
        xs_context: Float[Tensor, "batch n d"],
        ys_context: Float[Tensor, "batch n"],
        x: Float[Tensor, "batch m d"],
    ) -> Float[Tensor, "batch m d"]:
        """Map the inputs ``x`` using statistics of the context ``(xs_context, ys_context)``."""
        xs_context, ys_context = check_context(xs_context, ys_context, "xs_context", "ys_context")
        b, _, d = xs_context.shape
        x = check_tensor("x", x, shape=(b, None, d), nonempty=False)
        return self.transform(correlation(xs_context, ys_context).to(x.dtype), x)

    def __str__(self) -> str:
        args = ",".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.name}({args})" if args else self.name


def get_preprocessing(name: str, **params: float) -> Preprocessing:
    """The named preprocessing with the given parameters, e.g. ``get_preprocessing("power", p=2)``."""
    return Preprocessing(name, dict(params))


def as_preprocessing(spec: Union[str, Preprocessing, PreprocessFn], **params: float) -> PreprocessFn:
    """Accept a name (with ``params``), a :class:`Preprocessing` or a user callable."""
    if isinstance(spec, str):
        return get_preprocessing(spec, **params)
    if params:
        raise ValueError(f"params {sorted(params)} can only be given with a preprocessing name, got {spec!r}")
    if callable(spec):
        return spec
    raise TypeError(f"preprocessing must be a name, a Preprocessing or a callable, got {type(spec).__name__}")


identity = Preprocessing("identity")
reweight = Preprocessing("reweight")


def power(p: float = 1.0) -> Preprocessing:
    """``|r|^p * x``: reweighting by the magnitude of the correlation."""
    return Preprocessing("power", {"p": p})


def rank_one(c: float = 1.0) -> Preprocessing:
    """``x + c (r . x) r``: boost the direction of the correlation."""
    return Preprocessing("rank_one", {"c": c})
