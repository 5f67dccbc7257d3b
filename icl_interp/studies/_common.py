"""What several studies share: the per-layer P-probing risk, the JSON writer and the ``out`` folder type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

from ..atomic import atomic_write_bytes
from ..probing import probe_all_layers
from ..runner import model_norm

PathLike = Union[str, Path, None]


def save_json(data: dict, out: PathLike, name: str) -> Optional[Path]:
    """Write ``data`` as ``out/name`` (indented JSON; the folder is created); nothing when ``out`` is None."""
    if out is None:
        return None
    if not isinstance(data, dict):
        raise TypeError(f"data must be a dict, got {type(data).__name__}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty file name, got {name!r}")
    path = Path(out) / name
    atomic_write_bytes(path, json.dumps(data, indent=1).encode())  # a failed write leaves the previous file whole
    return path


def layer_risk(model: Any, data: Any, control: bool = False) -> tuple[list[float], Optional[list[float]]]:
    """P-probing risk per layer: held-out MSE of a y_query probe / norm (embed row first), and with
    ``control=True`` the same probes on a random model of the same config (else None)."""
    table = probe_all_layers(model, data, targets=["y_query"], control=control)
    norm = model_norm(model)
    return [row.mse / norm for row in table], ([row.control_mse / norm for row in table] if control else None)
