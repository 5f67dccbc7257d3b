"""Train-state checkpoints: the model, the AdamW moments and the run's metadata, in one file replaced atomically.

``folder/state.safetensors`` holds the tensors (on the CPU, whatever device trained
them) and, in its header's ``metadata``, the JSON document: the step, the optimizer's
hyper-parameters, the configs, the log and the SHA-256 of the tensor data. One file
replaced by one rename: a kill at any moment leaves the previous checkpoint or the
new one, never the tensors of one step with the JSON of another. A corrupted file is
refused at load. Loading puts the tensors on the model's device.

Checkpoints of format 1 (written before this one) kept the JSON in ``state.json``
beside the tensors; they still resume. Where a folder holds both, the one-file form
(JSON in the header) wins, and the next checkpoint removes the old ``state.json``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional, Union

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..core import backend
from ..core.atomic import atomic_write_bytes

__all__ = ["STATE_FORMAT_VERSION", "has_checkpoint", "save_state", "read_state", "read_state_tensors", "apply_state",
           "load_state", "warm_start", "check_resumable"]

STATE_FORMAT_VERSION = 2  # 1: the JSON in a separate state.json (still read)
STATE = "state.safetensors"
LEGACY_JSON = "state.json"
_META_KEY = "icl_interp.train_state"  # the checkpoint header's key (a file format: unchanged when modules move)


def has_checkpoint(folder: Union[str, Path]) -> bool:
    """Whether ``folder`` holds a training checkpoint (either form); :func:`read_state` says whether it is readable."""
    folder = Path(folder)
    return (folder / STATE).is_file() or (folder / LEGACY_JSON).is_file()


def _data(raw: bytes) -> memoryview:
    """The tensor data of a safetensors file: what follows its 8-byte header length and its header."""
    return memoryview(raw)[8 + int.from_bytes(raw[:8], "little"):]


def save_state(folder: Path, model: Any, opt: torch.optim.Optimizer, step: int, meta: dict) -> None:
    """Write the train state after ``step`` steps: one safetensors file carrying its JSON document in the header."""
    folder = Path(folder)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.own_state_dict().items()}
    opt_sd = opt.state_dict()
    for idx, st in opt_sd["state"].items():
        for name, val in st.items():
            tensors[f"opt.{idx}.{name}"] = torch.as_tensor(val).detach().cpu().clone().contiguous()
    state = {
        "format_version": STATE_FORMAT_VERSION,
        "step": step,
        "param_groups": opt_sd["param_groups"],
        "backend": f"tl{backend.tl_major()}",
        "sha256": hashlib.sha256(_data(st_save(tensors))).hexdigest(),  # the data section does not depend on the metadata
        **meta,
    }
    raw = st_save(tensors, metadata={_META_KEY: json.dumps(state)})
    for stale in folder.glob(f".{STATE}.*.tmp") if folder.is_dir() else ():  # left by a writer killed mid-write
        stale.unlink(missing_ok=True)
    atomic_write_bytes(folder / STATE, raw)
    (folder / LEGACY_JSON).unlink(missing_ok=True)  # a format-1 run's JSON now describes an older step


def _header_metadata(path: Path) -> Optional[dict]:
    """The ``metadata`` of safetensors file ``path``, read from its header alone (no tensor is loaded); None when absent."""
    try:
        with open(path, "rb") as f:
            size = path.stat().st_size
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n > size - 8:
                raise ValueError("the file is shorter than its header says (truncated?)")
            header = json.loads(f.read(n))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the training checkpoint {path}: {e}") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else None


def read_state(folder: Union[str, Path]) -> dict:
    """The JSON document of the checkpoint in ``folder`` (step, configs, log), read without loading a tensor.

    Refuses a format or a TransformerLens line it cannot resume under, so a run can decide
    whether to resume before any weight is touched.
    """
    folder = Path(folder)
    meta = _header_metadata(folder / STATE) if (folder / STATE).is_file() else None
    if meta is not None and _META_KEY in meta:
        source, text, expected = folder / STATE, meta[_META_KEY], STATE_FORMAT_VERSION
    else:
        source, expected = folder / LEGACY_JSON, 1
        try:
            text = source.read_text()
        except OSError as e:
            raise ValueError(f"cannot read the training checkpoint in {folder}: {e.strerror} ({source.name}); "
                             f"{STATE} carries no JSON of its own") from None
    try:
        state = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"cannot read the training checkpoint {source}: its JSON is invalid ({e})") from None
    if not isinstance(state, dict) or state.get("format_version") != expected:
        got = state.get("format_version") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"checkpoint {source} has format_version {got!r}, expected {expected}")
    if state.get("backend") != f"tl{backend.tl_major()}":
        raise ValueError(f"checkpoint was written under {state.get('backend')}, cannot resume under tl{backend.tl_major()}")
    for key, kind in (("sha256", str), ("step", int), ("param_groups", list), ("log", list), ("train_config", dict),
                      ("model_config", dict), ("task", dict)):
        if not isinstance(state.get(key), kind):
            raise ValueError(f"the training checkpoint {source}: field {key!r} is "
                             f"{'missing' if key not in state else 'not a ' + kind.__name__}")
    return state


def read_state_tensors(folder: Union[str, Path], state: dict) -> dict[str, torch.Tensor]:
    """The tensors of the checkpoint whose JSON is ``state`` (from :func:`read_state`), checked against its SHA-256."""
    path = Path(folder) / STATE
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read the training checkpoint {path}: {e.strerror}") from None
    body = _data(raw) if state["format_version"] == STATE_FORMAT_VERSION else raw
    if hashlib.sha256(body).hexdigest() != state.get("sha256"):
        raise ValueError(f"{path} does not match its recorded SHA-256 (truncated, or replaced since its JSON was read?)")
    try:
        return st_load(raw)
    except Exception as e:  # safetensors raises its own error type
        raise ValueError(f"{path} is not a readable safetensors file: {e}") from None


def apply_state(model: Any, opt: torch.optim.Optimizer, state: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Load checkpoint ``tensors`` into ``model`` and ``opt``; on a failure the model keeps its weights."""
    before = {k: v.detach().clone() for k, v in model.own_state_dict().items()}
    try:
        model.load_own_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        opt_state: dict = {}
        for key, val in tensors.items():
            if key.startswith("opt."):
                _, idx, name = key.split(".", 2)
                opt_state.setdefault(int(idx), {})[name] = val
        # the saved hyper-parameters, but the implementation (fused / foreach) of the device this run is on
        groups = [{**saved, **{k: g.get(k) for k in ("fused", "foreach")}} for saved, g in zip(state["param_groups"], opt.param_groups)]
        opt.load_state_dict({"state": opt_state, "param_groups": groups})
    except Exception:
        model.load_own_state_dict(before)
        raise


def load_state(folder: Union[str, Path], model: Any, opt: torch.optim.Optimizer) -> dict:
    """Load the train state in ``folder`` into ``model`` and ``opt``; returns its JSON (step, configs, log)."""
    state = read_state(folder)
    apply_state(model, opt, state, read_state_tensors(folder, state))
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
    from ..core.checkpoint import load_model

    donor = load_model(source)
    mine = {k: v for k, v in model.cfg.to_dict().items() if k not in ("seed", "task")}
    theirs = {k: v for k, v in donor.cfg.to_dict().items() if k not in ("seed", "task")}
    if mine != theirs:
        diff = sorted(k for k in mine if mine[k] != theirs.get(k))
        raise ValueError(f"init_from {source!r} has another architecture than the model (fields {diff} differ)")
    model.load_own_state_dict(donor.own_state_dict())
