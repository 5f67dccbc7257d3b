"""Writing to disk so that nothing is lost: each artifact is replaced as one unit, checked writable before the work.

- :func:`atomic_write_bytes`: one file (a temp file in the same folder, fsync, ``os.replace``, fsync the folder).
- :func:`atomic_write_folder`: a folder of files (written beside it, synced, switched in by two renames; the old
  folder is moved aside to ``.NAME.old`` between them and a loader that finds only that copy moves it back with
  :func:`recover_set_aside`).
- :func:`writable_folder` / :func:`writable_file`: an output location checked (created, a file written and removed)
  before hours of work rather than after.

A failure or a kill at any point leaves the previous artifact or the new complete one, never a mix.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Mapping, Union

__all__ = ["atomic_write_bytes", "atomic_write_folder", "recover_set_aside", "writable_folder", "writable_file", "fsync_dir"]


def fsync_dir(folder: Union[str, Path]) -> None:
    """Make ``folder``'s entries (a rename, a new or removed file) durable. A no-op on Windows, whose folders cannot be opened."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(fd_or_path: Union[int, Path], data: bytes) -> None:
    """Write ``data`` to a new file (or an open descriptor) and fsync it."""
    with (os.fdopen(fd_or_path, "wb") if isinstance(fd_or_path, int) else open(fd_or_path, "xb")) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Union[str, Path], data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one (and the new one survives a power cut)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # the permissions of a file written with open(), not mkstemp's 0600
        _write_synced(fd, data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _set_aside(path: Path) -> Path:
    return path.parent / f".{path.name}.old"


def recover_set_aside(path: Union[str, Path]) -> Path:
    """The folder to read for ``path``: ``path`` itself, or the previous version an interrupted :func:`atomic_write_folder`
    left set aside as ``.NAME.old`` (moved back to ``path``, with a warning saying nothing is lost)."""
    path = Path(path)
    old = _set_aside(path)
    if path.exists() or not path.name or not old.is_dir():
        return path
    try:
        os.rename(old, path)
        fsync_dir(path.parent)
    except OSError as e:  # a read-only location: read the set-aside copy where it is
        warnings.warn(f"{path} was being replaced when its writer stopped; its previous version is intact in {old} "
                      f"(could not move it back: {e.strerror}); reading it from there", stacklevel=3)
        return old
    warnings.warn(f"{path} was being replaced when its writer stopped; its previous version, set aside as {old.name}, "
                  "is moved back: nothing is lost", stacklevel=3)
    return path


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (folders after their contents)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(folder)


def _check_target(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise ValueError(f"path {str(path)!r} is a file, not a folder")
    here = Path.cwd().resolve()
    target = path.resolve()
    if not path.name or target == here or target in here.parents:
        raise ValueError(f"path {str(path)!r} is the current folder or holds it: save into a folder of its own")


def atomic_write_folder(path: Union[str, Path], files: Mapping[str, bytes]) -> Path:
    """Replace folder ``path`` by one holding ``files`` (name -> bytes) as one unit; returns ``path``.

    The new folder is written beside it (``.NAME.new-XXXX``) and synced; the old one is moved aside
    (``.NAME.old``), the new one renamed in, the old one deleted. Entries of the old folder that ``files``
    does not name (``snapshots/``, a ``dynamics.json``) are carried over (hard links where the file system
    allows). A failure anywhere leaves the old folder in place, or set aside where :func:`recover_set_aside`
    (called by every loader) finds it.
    """
    path = Path(path)
    _check_target(path)
    for name in files:
        if not name or Path(name).name != name or name.startswith("."):
            raise ValueError(f"files keys must be plain file names, got {name!r}")
    if recover_set_aside(path) != path:  # only a set-aside copy in a read-only location: the write would fail anyway
        raise ValueError(f"cannot replace {path}: its previous version is set aside in a read-only location")
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.new-"
    for stale in [p for p in parent.iterdir() if p.name.startswith(prefix)]:  # a writer killed before its switch
        shutil.rmtree(stale, ignore_errors=True)
    old = _set_aside(path)
    new = parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
    new.mkdir()  # (not mkdtemp: the folder gets the usual permissions, not 0700)
    moved = False
    try:
        for name, data in files.items():
            _write_synced(new / name, data)
        if path.is_dir():
            for entry in path.iterdir():
                if entry.name in files:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, new / entry.name, symlinks=True, copy_function=_link_or_copy)
                else:
                    _link_or_copy(str(entry), str(new / entry.name))
        _fsync_tree(new)
        if old.exists():  # left by an earlier switch whose clean-up failed; path is complete
            shutil.rmtree(old)
        if path.exists():
            os.rename(path, old)
            moved = True
        os.rename(new, path)
        moved = False
    except BaseException:
        if moved and not path.exists():
            os.rename(old, path)
        shutil.rmtree(new, ignore_errors=True)
        raise
    fsync_dir(parent)
    shutil.rmtree(old, ignore_errors=True)
    return path


def writable_folder(path: Union[str, Path], name: str = "out") -> Path:
    """Create folder ``path`` (with its parents) and check a file can be written there, before any work; returns it."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"{name} must be a folder path (str or Path), got {type(path).__name__}")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{name} {str(p)!r} is a file, not a folder: choose a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{name} {str(p)!r} cannot be created ({e.strerror}): choose another folder") from None
    try:
        fd, probe = tempfile.mkstemp(dir=p, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{name} {str(p)!r} is not writable ({e.strerror}): choose another folder") from None
    return p


def writable_file(path: Union[str, Path], name: str = "out") -> Path:
    """Check that file ``path`` can be written (its folder created if missing, and writable) before any work; returns it."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"{name} must be a file path (str or Path), got {type(path).__name__}")
    p = Path(path)
    if p.is_dir() or not p.name:
        raise ValueError(f"{name} {str(p)!r} is a folder: give a file name")
    writable_folder(p.parent, f"{name}'s folder")
    return p
