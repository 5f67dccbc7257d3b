"""Input validation shared by every public entry point (public: probes and user code may use it).

Each helper raises ``ValueError`` or ``TypeError`` whose message names the
argument, what it got and what was expected, before any work starts.
"""

from __future__ import annotations

import json
import numbers
from typing import Any, Sequence

import torch


def check_int(name: str, value: Any, *, min_value: int | None = None, max_value: int | None = None) -> int:
    """An integer (not a bool) within [min_value, max_value]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if min_value is not None and value < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    strict_min: bool = False,
) -> float:
    """A finite real number within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if min_value is not None:
        if strict_min and value <= min_value:
            raise ValueError(f"{name} must be > {min_value}, got {value}")
        if not strict_min and value < min_value:
            raise ValueError(f"{name} must be >= {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_tensor(
    name: str,
    x: Any,
    *,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | None] | None = None,
    floating: bool = True,
    finite: bool = True,
    nonempty: bool = True,
) -> torch.Tensor:
    """A torch tensor of the given rank/shape, floating point and finite."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(x.shape)}")
    if shape is not None:
        if x.ndim != len(shape) or any(s is not None and s != xs for s, xs in zip(shape, x.shape)):
            want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
            raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if finite and x.is_floating_point() and x.device.type != "meta" and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    return x


def check_layer(name: str, layer: Any, n_layers: int) -> int:
    """A layer index, 0-indexed as in TransformerLens (the paper's "first layer" is 0): an int in [0, n_layers - 1].
    Every tool checks a layer here, so a layer means the same thing and is refused the same way everywhere."""
    return check_int(name, layer, min_value=0, max_value=n_layers - 1)


def check_json(name: str, value: Any) -> Any:
    """A value JSON can write (str, number, bool, None, lists and str-keyed dicts of them); the message names the bad key."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        if isinstance(value, dict):
            for key, item in value.items():
                check_json(f"{name}[{key!r}]", item)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                check_json(f"{name}[{i}]", item)
        raise TypeError(f"{name} must be JSON-serialisable (str, number, bool, None, list, dict): {e}") from None
    return value
