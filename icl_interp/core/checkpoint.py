"""Saving and loading models: safetensors weights + a JSON config, no pickle.

A saved model is a folder with ``model.safetensors`` (our layers plus the core in
HookedTransformer layout, loadable under transformer-lens 3.x and 4.x) and
``config.json`` (format version, ModelConfig, task, the weights' SHA-256 and a
fingerprint: the model's predictions on a fixed prompt). The folder is replaced
as one unit (:func:`icl_interp.core.atomic.atomic_write_folder`); loading refuses a
truncated file, a hash mismatch, an unknown format version, weights that do not
fit the config, or a fingerprint that does not reproduce, instead of returning a
silently different model; every refusal names the file and the field.

Names and folders (:func:`resolve_model`): a ``Path``, or a str with a slash
(``./default``, ``runs/x/model``), is always a folder; ``zoo:NAME`` is always the
zoo's model; a bare ``NAME`` is the zoo's model or a folder of that name, whichever
exists, and is refused, showing both spellings, when both do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .atomic import atomic_write_bytes, atomic_write_folder, recover_set_aside
from .checks import check_json
from .devices import resolve_device
from .model import ICLTransformer, ModelConfig

__all__ = ["save_model", "load_model", "zoo_names", "zoo_folder", "use_zoo", "atomic_write_bytes", "FORMAT_VERSION",
           "resolve_model", "read_json", "ZOO_PREFIX"]

FORMAT = "icl_interp.model"  # the saved-model format's name (a file format, not a module path)
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
ZOO = Path(__file__).resolve().parents[1] / "zoo"
#: ``zoo:NAME`` always means the zoo's model NAME, whatever folders the working directory holds
ZOO_PREFIX = "zoo:"
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
    """Names of the models in the zoo: the package's (installed or fetched on first use: :mod:`icl_interp.core.zoo_store`),
    or inside ``use_zoo(folder)`` that folder's."""
    zoo = _zoo_dirs[-1]
    here = {p.name for p in zoo.iterdir() if (p / CONFIG).is_file() and not p.name.startswith(".")} if zoo.is_dir() else set()
    if zoo == ZOO:
        from .zoo_store import manifest

        here |= set(manifest())
    return sorted(here)


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


def _is_path_like(text: str) -> bool:
    return any(sep and sep in text for sep in ("/", os.sep, os.altsep))


def resolve_model(path_or_name: Union[str, Path]) -> tuple[Path, Optional[str]]:
    """(folder, zoo name or None) of a saved model given as a folder or a zoo name.

    The rule: a ``Path``, or a str with a slash, is a folder; ``"zoo:NAME"`` is the zoo's
    model; a bare ``"NAME"`` is whichever of the two exists, and a ValueError showing both
    spellings (``zoo:NAME``, ``./NAME``) when both do: a folder never shadows a zoo model silently.
    """
    if not isinstance(path_or_name, (str, Path)):
        raise TypeError(f"path_or_name must be a str or Path, got {type(path_or_name).__name__}")
    if isinstance(path_or_name, str) and path_or_name.startswith(ZOO_PREFIX):
        name = path_or_name[len(ZOO_PREFIX):]
        if name not in zoo_names():
            raise ValueError(f"path_or_name {path_or_name!r}: {name!r} is not in the zoo; zoo names: {zoo_names()}")
        return zoo_folder(name), name
    p = recover_set_aside(path_or_name)  # an interrupted save_model's set-aside copy is moved back
    if isinstance(path_or_name, Path) or _is_path_like(path_or_name):
        if not p.is_dir():
            raise ValueError(f"path_or_name {str(path_or_name)!r} is not a folder (a Path or a str with a slash is always "
                             f"a folder; a zoo model is {ZOO_PREFIX}NAME); zoo names: {zoo_names()}")
        return p, None
    in_zoo = path_or_name in zoo_names()
    if in_zoo and p.is_dir():
        raise ValueError(f"{path_or_name!r} is both a zoo model and a folder here ({p.resolve()}): write "
                         f"{ZOO_PREFIX}{path_or_name} for the zoo model or ./{path_or_name} for the folder")
    if in_zoo:
        return zoo_folder(path_or_name), path_or_name
    if p.is_dir():
        return p, None
    raise ValueError(f"path_or_name {path_or_name!r} is neither a saved model folder nor a zoo name; zoo names: {zoo_names()}")


def _resolve(path_or_name: Union[str, Path]) -> Path:
    return resolve_model(path_or_name)[0]


def zoo_folder(name: str, *, everything: bool = False) -> Path:
    """The folder of zoo model ``name`` (``zoo:`` prefix optional; in the zoo in force: the package's, or ``use_zoo``'s).

    A package zoo model the installation does not hold is downloaded into the user cache first
    (:func:`icl_interp.core.zoo_store.fetch`; ``everything``: its training snapshots too).
    """
    if isinstance(name, str) and name.startswith(ZOO_PREFIX):
        name = name[len(ZOO_PREFIX):]
    if name not in zoo_names():
        raise ValueError(f"name {name!r} is not in the zoo; zoo names: {zoo_names()}")
    if _zoo_dirs[-1] == ZOO:
        from .zoo_store import fetch

        return fetch(name, everything=everything)
    return recover_set_aside(_zoo_dirs[-1] / name)


def read_json(path: Union[str, Path], what: str = "file") -> dict:
    """The JSON object in ``path``; a ValueError naming the file if it is unreadable, not text, not JSON or not an object."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ValueError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise ValueError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} {path} is not UTF-8 text (byte {e.start}): the file is corrupted or is not JSON") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path} is not valid JSON ({e}); the file may be truncated") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} {path} must hold a JSON object, got a JSON {type(value).__name__}")
    return value


def _fields(config: dict, where: Path) -> None:
    """The fields load_model needs: a ValueError naming the file and the field that is missing or wrong."""
    for key, kind, expected in (("model", dict, "an object (the model config)"),
                                ("weights_sha256", str, "the weights' SHA-256 as a hex string"),
                                ("fingerprint", list, "a list of numbers (the model's predictions on a fixed prompt)")):
        if key not in config:
            raise ValueError(f"{where} has no {key!r} field ({expected}): it was not written by save_model, or was edited")
        if not isinstance(config[key], kind):
            raise ValueError(f"{where}: field {key!r} must be {expected}, got {json.dumps(config[key])[:80]}")
    fp = config["fingerprint"]
    if not fp or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in fp):
        raise ValueError(f"{where}: field 'fingerprint' must be a non-empty list of numbers, got {json.dumps(fp)[:80]}")


def read_config(path: Union[str, Path]) -> dict:
    """The validated config.json of a saved model (folder or zoo name)."""
    folder = _resolve(path)
    cfg_file = folder / CONFIG
    if not cfg_file.is_file():
        raise ValueError(f"{folder} has no {CONFIG}: not a saved icl_interp model")
    config = read_json(cfg_file, "model config")
    if config.get("format") != FORMAT:
        raise ValueError(f"{cfg_file}: field 'format' is {config.get('format')!r}, expected {FORMAT!r}")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{cfg_file}: field 'format_version' is {config.get('format_version')!r}; this icl_interp reads version {FORMAT_VERSION}"
        )
    _fields(config, cfg_file)
    return config


def load_model(path_or_name: Union[str, Path] = "zoo:default", device: Optional[Any] = None) -> Any:
    """Load a saved model from a folder, or a shipped one by name (``"default"``; the rule: :func:`resolve_model`).

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
    if hashlib.sha256(raw).hexdigest() != config["weights_sha256"]:
        raise ValueError(f"{folder / WEIGHTS} does not match the SHA-256 in field 'weights_sha256' of {folder / CONFIG}: truncated or replaced weights")
    try:
        state = st_load(raw)
    except Exception as e:  # safetensors raises its own error type
        raise ValueError(f"{folder / WEIGHTS} is not a readable safetensors file: {e}") from None
    try:
        model_cfg = ModelConfig.from_dict(config["model"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{folder / CONFIG}: field 'model': {e}") from None
    model = ICLTransformer(model_cfg)
    model.load_own_state_dict(state)
    fp = torch.tensor(config["fingerprint"], dtype=torch.float32)
    got = torch.tensor(_fingerprint(model))
    if fp.shape != got.shape or not torch.allclose(fp, got, atol=_FINGERPRINT_TOL, rtol=_FINGERPRINT_TOL):
        raise ValueError(f"{folder}: the loaded model does not reproduce its saved fingerprint predictions")
    model.saved_config = config
    return model if device is None else model.to(device)
