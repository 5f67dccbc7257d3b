"""Disk fault injection for the "nothing lost" tests, and a writer of format-1 (two-file) training checkpoints."""

import builtins
import errno
import hashlib
import io
import json
import os
from pathlib import Path


class InjectedFault(OSError):
    """The error a faulted disk operation raises (an OSError, as a full disk or an I/O error would)."""


class DiskFaults:
    """Counts the disk writes made while active and makes the ``fail_at``-th one fail.

    Counted (in call order): every file opened for writing (a faulted one writes half of its first
    ``write`` and then raises ENOSPC, the disk-full case that leaves a truncated file), ``os.replace``,
    ``os.rename``, ``os.link`` and ``os.fsync`` (a faulted one raises EIO without acting). ``ops``
    records each counted call, so a first run without a fault tells how many there are.
    """

    def __init__(self, monkeypatch, fail_at=None):
        self.fail_at, self.ops, self.fired = fail_at, [], None
        real_open = io.open

        def counted(name, what):
            self.ops.append(f"{name} {what}")
            if len(self.ops) == self.fail_at:
                self.fired = self.ops[-1]
                return True
            return False

        def fake_open(file, mode="r", *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            if any(c in mode for c in "wax+") and counted("open", getattr(f, "name", file)):
                return _HalfWriter(f)
            return f

        def wrap(name):
            real = getattr(os, name)

            def fake(*args, **kwargs):
                if counted(name, args[0] if args else ""):
                    raise InjectedFault(errno.EIO, f"injected fault at {name}")
                return real(*args, **kwargs)

            monkeypatch.setattr(os, name, fake)

        monkeypatch.setattr(io, "open", fake_open)
        monkeypatch.setattr(builtins, "open", fake_open)
        for name in ("replace", "rename", "link", "fsync"):
            wrap(name)

    def index(self, prefix, contains="", default=None):
        """1-based index of the first recorded op starting with ``prefix`` whose argument contains ``contains`` (else ``default``)."""
        return next((i for i, op in enumerate(self.ops, 1) if op.startswith(prefix) and contains in op), default)


class _HalfWriter:
    """A file whose first write stores half of its data and then fails as a full disk does."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        raise InjectedFault(errno.ENOSPC, "injected fault: no space left on device")

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
        return False


def write_legacy_checkpoint(folder, edit=None):
    """Rewrite the checkpoint in ``folder`` in format 1: tensors in state.safetensors, the JSON (with the file's SHA-256) in
    state.json, as runs begun before the one-file form write it; ``edit(state)`` may change the JSON first."""
    from safetensors.torch import load_file
    from safetensors.torch import save as st_save

    from icl_interp.training.state import read_state

    folder = Path(folder)
    state = read_state(folder)
    raw = st_save(load_file(folder / "state.safetensors"))
    state.update(format_version=1, sha256=hashlib.sha256(raw).hexdigest())
    if edit is not None:
        edit(state)
    (folder / "state.safetensors").write_bytes(raw)
    (folder / "state.json").write_text(json.dumps(state))
    return state
