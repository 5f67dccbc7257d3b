"""Devices and training precision: one reading of ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"``.

``"auto"`` is CUDA when available, else the CPU. MPS is used only when asked for by
name: TransformerLens' results on MPS are unreliable (its own warning), so a model is
never put there by default. A device that is not available is refused with a
ValueError naming it, never replaced by another silently.
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional, Union

import torch

__all__ = ["DEVICE_HELP", "DTYPES", "check_device", "resolve_device", "check_model_there", "autocast"]

DEVICE_HELP = (
    "auto (CUDA when available, else CPU), cpu, cuda, cuda:N or mps "
    "(MPS only when asked for: TransformerLens' results on MPS are unreliable)"
)
DTYPES = ("float32", "bfloat16")  # training precision: float32, or bfloat16 autocast with float32 parameters


def check_device(name: str, device: Any) -> Union[str, torch.device]:
    """``device`` is ``"auto"``, a torch device string of a supported type, or a ``torch.device`` (availability not checked)."""
    if isinstance(device, torch.device):
        parsed = device
    elif isinstance(device, str):
        if device == "auto":
            return device
        try:
            parsed = torch.device(device)
        except (RuntimeError, ValueError):
            raise ValueError(f"{name} must be one of: {DEVICE_HELP}; got {device!r}") from None
    else:
        raise TypeError(f"{name} must be a str or torch.device ({DEVICE_HELP}), got {type(device).__name__}")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{name} must be one of: {DEVICE_HELP}; got {str(device)!r} (device type {parsed.type!r})")
    return device


def resolve_device(device: Union[str, torch.device] = "auto", name: str = "device") -> torch.device:
    """The ``torch.device`` for ``device``; a ValueError if it is unknown or not available here."""
    device = check_device(name, device)
    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ValueError(f"{name}={str(device)!r} but CUDA is not available here (torch {torch.__version__}, {build}); "
                             "use 'cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name}={str(device)!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={str(device)!r} but MPS is not available here; use 'cpu' or 'auto'")
    if dev.type != "cpu" and dev.index is None:  # the index tensors report, so devices compare equal
        dev = torch.device(dev.type, torch.cuda.current_device() if dev.type == "cuda" else 0)
    return dev


def check_model_there(device: torch.device, where: torch.device) -> None:
    """A model is never moved: a ``device`` other than ``where`` it is gets a ValueError naming both."""
    if where != device:
        raise ValueError(f"device={str(device)!r} but the model is on {where}: move the model (model.to(...)) or leave device unset")


def autocast(device: torch.device, dtype: Optional[str]) -> Any:
    """The training forward's precision context: bfloat16 autocast on ``device``'s type, or nothing for float32.

    Parameters, gradients and optimizer state stay float32; only the forward's
    matrix products (and what autocast lists with them) run in bfloat16.
    """
    if dtype in (None, "float32"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
