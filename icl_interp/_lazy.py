"""Submodules loaded on first attribute access, so ``icl_interp.tools.masking.masked`` works after ``import icl_interp``.

``import icl_interp`` stays light (TransformerLens loads only when a module that
needs it is first used), and a package names its submodules without importing them.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Callable


def submodules(package: str, init_file: str) -> tuple[Callable[[str], ModuleType], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package ``package`` whose ``__init__.py`` is ``init_file``: every ``.py``
    file and subpackage beside it is an attribute, imported on first use."""
    here = Path(init_file).parent
    names = sorted({p.stem for p in here.glob("*.py") if p.stem != "__init__"} | {p.name for p in here.iterdir() if (p / "__init__.py").is_file()})

    def __getattr__(name: str) -> ModuleType:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return import_module(f"{package}.{name}")

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__
