"""Saving and loading models: safetensors weights + a JSON config, no pickle.

A saved model is a folder with ``model.safetensors`` (our layers plus the core in
HookedTransformer layout, loadable under transformer-lens 3.x and 4.x) and
``config.json`` (format version, ModelConfig, task, the weights' SHA-256 and a
fingerprint: the model's predictions on a fixed prompt). The folder is replaced
as one unit (:func:`icl_interp.atomic.atomic_write_folder`); loading refuses a
truncated file, a hash mismatch, an unknown format version, weights that do not
fit the config, or a fingerprint that does not reproduce, instead of returning a
silently different model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .atomic import atomic_write_bytes, atomic_write_folder, recover_set_aside
from .devices import resolve_device
from .model import ICLTransformer, ModelConfig
from .validation import check_json

__all__ = ["save_model", "load_model", "zoo_names", "zoo_folder", "use_zoo", "atomic_write_bytes", "FORMAT_VERSION"]

FORMAT = "icl_interp.model"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
ZOO = Path(__file__).parent / "zoo"
_FINGERPRINT_TOL = 1e-4
_RESERVED = ("format", "format_version", "model", "weights_sha256", "fingerprint")  # config.json's own fields


def _fingerprint_batch(d: int, n_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(12345)
    n = min(4, n_points)
    return torch.randn(2, n, d, generator=gen), torch.randn(2, n, generator=gen)


@torch.no_grad()
def _fingerprint(model: Any) -> list:
    xs, ys = _fingerprint_batch(model.cfg.d, model.cfg.max_points)
    device = model.read_in.weight.device
    return model(xs.to(device), ys.to(device)).reshape(-1).tolist()


def save_model(model: Any, path: Union[str, Path], **extra: Any) -> Path:
    """Save ``model`` (an ICLTransformer) into folder ``path``; ``extra`` (JSON values) goes into config.json.

    Over an existing model the new folder is written beside it and switched in by renames: a failure or a kill
    at any point leaves the old model loadable (its other files, such as ``snapshots/``, are kept).
    """
    if not isinstance(model, ICLTransformer):
        raise TypeError(f"model must be an ICLTransformer, got {type(model).__name__}")
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a folder path (str or Path), got {type(path).__name__}")
    path = Path(path)
    reserved = sorted(set(extra) & set(_RESERVED))
    if reserved:
        raise ValueError(f"extra fields {reserved} would overwrite config.json's own fields {list(_RESERVED)}: rename them")
    for key, value in extra.items():  # before anything is written
        check_json(f"extra[{key!r}]", value)
    weights = st_save({k: v.detach().cpu().contiguous() for k, v in model.own_state_dict().items()})
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.cfg.to_dict(),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "fingerprint": _fingerprint(model),
        **extra,
    }
    return atomic_write_folder(path, {WEIGHTS: weights, CONFIG: json.dumps(config, indent=1).encode()})

_zoo_dirs = [ZOO]  # the last one is where zoo names resolve (use_zoo pushes another)


def zoo_names() -> list[str]:
    """Names of the models in the zoo: the package's, or inside ``use_zoo(folder)`` that folder's."""
    zoo = _zoo_dirs[-1]
    if not zoo.is_dir():
        return []
    return sorted(p.name for p in zoo.iterdir() if (p / CONFIG).is_file() and not p.name.startswith("."))


@contextlib.contextmanager
def use_zoo(folder: Union[str, Path]) -> Iterator[Path]:
    """Inside the block, zoo names (``load_model(name)``, ``zoo_names()``) resolve in ``folder`` (e.g. a retrained zoo)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder {str(folder)!r} is not a directory of saved models")
    _zoo_dirs.append(folder)
    try:
        yield folder
    finally:
        _zoo_dirs.pop()


def _resolve(path_or_name: Union[str, Path]) -> Path:
    if not isinstance(path_or_name, (str, Path)):
        raise TypeError(f"path_or_name must be a str or Path, got {type(path_or_name).__name__}")
    p = recover_set_aside(path_or_name)  # an interrupted save_model's set-aside copy is moved back
    if p.is_dir():
        return p
    if isinstance(path_or_name, str) and (recover_set_aside(_zoo_dirs[-1] / path_or_name) / CONFIG).is_file():
        return _zoo_dirs[-1] / path_or_name
    raise ValueError(f"path_or_name {str(path_or_name)!r} is neither a saved model folder nor a zoo name; zoo names: {zoo_names()}")


def zoo_folder(name: str) -> Path:
    """The folder of zoo model ``name`` (in the zoo in force: the package's, or ``use_zoo``'s)."""
    if name not in zoo_names():
        raise ValueError(f"name {name!r} is not in the zoo; zoo names: {zoo_names()}")
    return _zoo_dirs[-1] / name


def read_config(path: Union[str, Path]) -> dict:
    """The validated config.json of a saved model (folder or zoo name)."""
    folder = _resolve(path)
    cfg_file = folder / CONFIG
    if not cfg_file.is_file():
        raise ValueError(f"{folder} has no {CONFIG}: not a saved icl_interp model")
    try:
        config = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_file} is not valid JSON ({e}); the file may be truncated") from None
    if config.get("format") != FORMAT:
        raise ValueError(f"{cfg_file} has format {config.get('format')!r}, expected {FORMAT!r}")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{cfg_file} has format_version {config.get('format_version')!r}; this icl_interp reads version {FORMAT_VERSION}"
        )
    return config


def load_model(path_or_name: Union[str, Path] = "default", device: Optional[Any] = None) -> Any:
    """Load a saved model from a folder, or a shipped one by name (``"default"``).

    ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ...): checked on the CPU against its
    fingerprint, then moved there. Its parameters are float32 whatever it was trained in.
    """
    if device is not None:
        device = resolve_device(device)
    folder = _resolve(path_or_name)
    config = read_config(folder)
    raw = (folder / WEIGHTS).read_bytes() if (folder / WEIGHTS).is_file() else None
    if raw is None:
        raise ValueError(f"{folder} has no {WEIGHTS}")
    if hashlib.sha256(raw).hexdigest() != config.get("weights_sha256"):
        raise ValueError(f"{folder / WEIGHTS} does not match the SHA-256 in {CONFIG}: truncated or replaced weights")
    try:
        state = st_load(raw)
    except Exception as e:  # safetensors raises its own error type
        raise ValueError(f"{folder / WEIGHTS} is not a readable safetensors file: {e}") from None
    model = ICLTransformer(ModelConfig.from_dict(config["model"]))
    model.load_own_state_dict(state)
    fp = torch.tensor(config.get("fingerprint", []))
    got = torch.tensor(_fingerprint(model))
    if fp.shape != got.shape or not torch.allclose(fp, got, atol=_FINGERPRINT_TOL, rtol=_FINGERPRINT_TOL):
        raise ValueError(f"{folder}: the loaded model does not reproduce its saved fingerprint predictions")
    model.saved_config = config
    return model if device is None else model.to(device)
