"""What several studies share: the per-layer P-probing risk, the JSON writer and the ``out`` folder type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

from ...core.atomic import atomic_write_bytes
from ...tools.probing import probe_all_layers
from ...tools.runner import model_norm

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


#: significant digits kept of a per-prompt number (a float32 forward's own precision; keeps report.json small)
PER_PROMPT_DIGITS = 6


def per_prompt_list(values: Any) -> list[float]:
    """Per-prompt numbers (a 1-D tensor or sequence) as a JSON-ready list, each rounded to :data:`PER_PROMPT_DIGITS`
    significant digits; the studies' means and the claims' bootstraps are all computed from these same lists."""
    flat = values.detach().double().cpu().reshape(-1).tolist() if hasattr(values, "detach") else [float(v) for v in values]
    return [float(f"{v:.{PER_PROMPT_DIGITS}g}") for v in flat]


def layer_risk(model: Any, data: Any, control: bool = False) -> tuple[list[float], Optional[list[float]]]:
    """P-probing risk per layer: held-out MSE of a y_query probe / norm (embed row first), and with
    ``control=True`` the same probes on a random model of the same config (else None)."""
    table = probe_all_layers(model, data, targets=["y_query"], control=control)
    norm = model_norm(model)
    return [row.mse / norm for row in table], ([row.control_mse / norm for row in table] if control else None)
