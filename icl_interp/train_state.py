"""Train-state checkpoints: the model, the AdamW moments and the run's metadata, written atomically.

``folder/state.safetensors`` holds the tensors (on the CPU, whatever device trained
them) and ``folder/state.json`` the step, the optimizer's hyper-parameters, the
configs, the log and the tensors' SHA-256. A truncated or replaced file is refused
at load. Loading puts the tensors on the model's device.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from . import backend
from .checkpoint import atomic_write_bytes, read_json

__all__ = ["STATE_FORMAT_VERSION", "save_state", "load_state", "warm_start", "check_resumable"]

STATE_FORMAT_VERSION = 1


def save_state(folder: Path, model: Any, opt: torch.optim.Optimizer, step: int, meta: dict) -> None:
    """Write the train state after ``step`` steps (tensors first, then the JSON that describes them)."""
    tensors = {f"model.{k}": v.detach().cpu() for k, v in model.own_state_dict().items()}
    opt_sd = opt.state_dict()
    for idx, st in opt_sd["state"].items():
        for name, val in st.items():
            tensors[f"opt.{idx}.{name}"] = torch.as_tensor(val).detach().cpu().clone().contiguous()
    raw = st_save({k: v.contiguous() for k, v in tensors.items()})
    state = {
        "format_version": STATE_FORMAT_VERSION,
        "step": step,
        "param_groups": opt_sd["param_groups"],
        "backend": f"tl{backend.tl_major()}",
        "sha256": hashlib.sha256(raw).hexdigest(),
        **meta,
    }
    atomic_write_bytes(folder / "state.safetensors", raw)
    atomic_write_bytes(folder / "state.json", json.dumps(state).encode())


def load_state(folder: Path, model: Any, opt: torch.optim.Optimizer) -> dict:
    """Load the train state in ``folder`` into ``model`` and ``opt``; returns its JSON (step, configs, log)."""
    state = read_json(folder / "state.json", "the training checkpoint")
    if state.get("format_version") != STATE_FORMAT_VERSION:
        raise ValueError(f"checkpoint format_version {state.get('format_version')!r}, expected {STATE_FORMAT_VERSION}")
    if state.get("backend") != f"tl{backend.tl_major()}":
        raise ValueError(f"checkpoint was written under {state.get('backend')}, cannot resume under tl{backend.tl_major()}")
    for key, kind in (("sha256", str), ("step", int), ("param_groups", list), ("log", list), ("train_config", dict),
                      ("model_config", dict), ("task", dict)):
        if not isinstance(state.get(key), kind):
            raise ValueError(f"the training checkpoint {folder / 'state.json'}: field {key!r} is "
                             f"{'missing' if key not in state else 'not a ' + kind.__name__}")
    raw = (folder / "state.safetensors").read_bytes()
    if hashlib.sha256(raw).hexdigest() != state["sha256"]:
        raise ValueError(f"{folder / 'state.safetensors'} does not match its recorded SHA-256 (truncated?)")
    tensors = st_load(raw)
    model.load_own_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    opt_state: dict = {}
    for key, val in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = val
    # the saved hyper-parameters, but the implementation (fused / foreach) of the device this run is on
    groups = [{**saved, **{k: g.get(k) for k in ("fused", "foreach")}} for saved, g in zip(state["param_groups"], opt.param_groups)]
    opt.load_state_dict({"state": opt_state, "param_groups": groups})
    return state


def check_resumable(state: dict, meta: dict, free: dict[str, tuple[str, ...]], defaults: Optional[dict] = None) -> None:
    """Refuse to resume when a config in ``meta`` differs from the checkpoint's, outside the ``free`` fields.

    ``defaults`` fill train-config fields a checkpoint written before they existed lacks.
    """
    for key, loose in free.items():
        saved = {**(defaults or {}), **state[key]} if key == "train_config" else state[key]
        saved = {k: v for k, v in saved.items() if k not in loose}
        now = {k: v for k, v in json.loads(json.dumps(meta[key])).items() if k not in loose}
        if saved != now:
            diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            raise ValueError(f"cannot resume: {key} differs from the checkpoint's (fields {diff})")


def warm_start(model: Any, source: str) -> None:
    """Copy the weights of a saved model (same architecture) into ``model``."""
    from .checkpoint import load_model

    donor = load_model(source)
    mine = {k: v for k, v in model.cfg.to_dict().items() if k not in ("seed", "task")}
    theirs = {k: v for k, v in donor.cfg.to_dict().items() if k not in ("seed", "task")}
    if mine != theirs:
        diff = sorted(k for k in mine if mine[k] != theirs.get(k))
        raise ValueError(f"init_from {source!r} has another architecture than the model (fields {diff} differ)")
    model.load_own_state_dict(donor.own_state_dict())
