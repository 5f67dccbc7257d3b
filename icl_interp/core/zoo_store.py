"""Where the zoo's files come from: a source checkout's zoo folder, the user cache, or a download.

``index.json``'s ``"files"`` records every file of every zoo model with its SHA-256 and size (the manifest).
A model is found, in this order:

1. in the zoo folder next to this module, when it holds the model (a source checkout: ``make demo`` runs offline);
2. in the user cache (``$ICL_INTERP_CACHE``, default the platform's cache folder, e.g. ``~/.cache/icl_interp``),
   ``CACHE/zoo/NAME/``, every file there of the recorded size and hash;
3. downloaded into the cache from ``$ICL_INTERP_ZOO_URL`` (default: ``index.json``'s ``"url"``) with pooch, every
   file checked against its recorded SHA-256; a file that does not match is refused and not kept.

A wheel ships the code, the index and the ``default`` model only. ``python -m icl_interp.zoo publish DIR`` prepares
the folder to publish (``DIR/NAME/FILE`` for every model, and the index): serve it over HTTP(S) anywhere (a
static file host, a release, a bucket) and point ``ICL_INTERP_ZOO_URL`` at it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional, Union

__all__ = ["ENV_URL", "ENV_CACHE", "ZooFetchError", "manifest", "legacy", "cache_dir", "zoo_url", "fetch", "local_folder",
           "file_records", "refresh_manifest", "publish"]

ENV_URL = "ICL_INTERP_ZOO_URL"
ENV_CACHE = "ICL_INTERP_CACHE"
#: the zoo's folder in a source checkout or installation (the package's ``zoo/``: its index, and whatever models ship)
HERE = Path(__file__).resolve().parents[1] / "zoo"
INDEX = HERE / "index.json"
INDEX_NAME = "index.json"


class ZooFetchError(OSError):
    """A zoo model's files could not be had: not shipped here, not cached, and not downloadable."""


_read: dict[tuple, dict] = {}  # index.json parsed once per (path, modification time): zoo_names() asks on every load


def _index() -> dict:
    stat = INDEX.stat()
    key = (str(INDEX), stat.st_mtime_ns, stat.st_size)
    if key not in _read:
        _read.clear()
        _read[key] = json.loads(INDEX.read_text())
    return _read[key]


def manifest() -> dict[str, dict[str, dict]]:
    """``{name: {relative path: {"sha256", "size"}}}`` for every zoo model (index.json's ``"files"``)."""
    return _index().get("files", {})


def legacy() -> dict[str, str]:
    """Models kept only to reproduce earlier zoos: ``{name: why}`` (index.json's ``"legacy"``)."""
    return _index().get("legacy", {})


def cache_dir() -> Path:
    """The user cache the zoo downloads into: ``$ICL_INTERP_CACHE/zoo``, else the platform's cache folder."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser() / "zoo"
    import pooch

    return Path(pooch.os_cache("icl_interp")) / "zoo"


def zoo_url() -> Optional[str]:
    """The base URL of a published zoo: ``$ICL_INTERP_ZOO_URL``, else index.json's ``"url"`` (None when neither)."""
    url = os.environ.get(ENV_URL) or _index().get("url")
    return url.rstrip("/") if url else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _complete(folder: Path, files: dict[str, dict], check_hash: bool) -> bool:
    """Every recorded file in ``folder`` with its recorded size (and, with ``check_hash``, its SHA-256)."""
    for rel, rec in files.items():
        p = folder / rel
        if not p.is_file() or p.stat().st_size != rec["size"] or (check_hash and _sha256(p) != rec["sha256"]):
            return False
    return True


def _needed(files: dict[str, dict], everything: bool) -> dict[str, dict]:
    """The files a use needs: a model's top-level files (config, weights, logs), or with ``everything`` its snapshots too."""
    return files if everything else {rel: rec for rel, rec in files.items() if "/" not in rel}


def local_folder(name: str, *, everything: bool = False) -> Optional[Path]:
    """The model's folder without downloading: the installation's zoo (a checkout; a wheel's ``default``), then the
    cache (hashes checked); None if neither holds the files needed (``everything``: the snapshots too)."""
    files = manifest().get(name)
    if (HERE / name / "config.json").is_file() and (files is None or _complete(HERE / name, _needed(files, everything), check_hash=False)):
        return HERE / name
    if files and _complete(cache_dir() / name, _needed(files, everything), check_hash=True):
        return cache_dir() / name
    return None


def fetch(name: str, *, everything: bool = False, progress: bool = False) -> Path:
    """The folder of zoo model ``name``: found locally or downloaded into the cache (every file's SHA-256 checked).

    ``everything``: also the files below the top level (``default``'s training snapshots: 15 MB).
    """
    found = local_folder(name, everything=everything)
    if found is not None:
        return found
    files = manifest().get(name)
    if files is None:
        raise ValueError(f"name {name!r} is not a zoo model; zoo models: {sorted(manifest())}")
    files = _needed(files, everything)
    url = zoo_url()
    listed = ", ".join(sorted(files)) if len(files) <= 6 else f"{len(files)} files"
    if url is None:
        raise ZooFetchError(f"zoo model {name!r} is not in this installation (a wheel ships only the index and `default`) and no "
                            f"download location is set: set {ENV_URL} to a published zoo (docs/zoo.md, 'Publishing the zoo'), "
                            f"or put its files ({listed}) in {cache_dir() / name}")
    import pooch

    folder = cache_dir() / name
    for rel, rec in sorted(files.items()):
        try:
            sub = Path(rel)
            pooch.retrieve(f"{url}/{name}/{rel}", known_hash=f"sha256:{rec['sha256']}", fname=sub.name, path=folder / sub.parent,
                           progressbar=progress)
        except ValueError as e:  # pooch: the downloaded file's hash differs (the file is not kept)
            raise ValueError(f"{url}/{name}/{rel} does not match the SHA-256 recorded in index.json ({e}); "
                             f"the published zoo at {ENV_URL}={url} is not this icl_interp's") from None
        except Exception as e:  # requests' connection and HTTP errors
            raise ZooFetchError(f"could not download zoo model {name!r} ({listed}) from {url}: {type(e).__name__}: {e}. "
                                f"Set {ENV_URL} to a reachable copy of the zoo, or put the files in {folder}") from None
    return folder


# -- maintaining the manifest and publishing ----------------------------------------------------

def file_records(folder: Union[str, Path]) -> dict[str, dict]:
    """``{relative path: {"sha256", "size"}}`` for every file of a model folder (hidden files left out)."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): {"sha256": _sha256(p), "size": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def refresh_manifest(zoo: Union[str, Path] = HERE) -> dict[str, Any]:
    """Record every model folder of ``zoo`` (a checkout's zoo) in index.json's ``"files"``; returns the new manifest."""
    from .atomic import atomic_write_bytes

    zoo = Path(zoo)
    index_path = zoo / INDEX_NAME
    index = json.loads(index_path.read_text())
    names = sorted(p.name for p in zoo.iterdir() if (p / "config.json").is_file() and not p.name.startswith("."))
    index["files"] = {n: file_records(zoo / n) for n in names}
    atomic_write_bytes(index_path, (json.dumps(index, indent=1) + "\n").encode())
    return index["files"]


def publish(out: Union[str, Path], zoo: Union[str, Path] = HERE) -> dict[str, int]:
    """Prepare the folder to publish: ``out/NAME/FILE`` for every model in the manifest (hashes verified) and the index.

    Returns ``{"models": .., "files": .., "bytes": ..}``. Refuses when a checkout file differs from its record
    (run :func:`refresh_manifest` first) or when ``out`` is not an empty or absent folder.
    """
    zoo, out = Path(zoo), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"out {str(out)!r} must be an empty or new folder, got one that holds files (or a file)")
    files = json.loads((zoo / INDEX_NAME).read_text()).get("files", {})
    for name, recs in files.items():
        if not _complete(zoo / name, recs, check_hash=True):
            raise ValueError(f"zoo model {name!r} in {zoo} differs from index.json's record: run "
                             f"`python -m icl_interp.zoo refresh` first")
    total = count = 0
    for name, recs in files.items():
        for rel, rec in recs.items():
            dst = out / name / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(zoo / name / rel, dst)
            total, count = total + rec["size"], count + 1
    shutil.copyfile(zoo / INDEX_NAME, out / INDEX_NAME)
    return {"models": len(files), "files": count, "bytes": total}
