"""Recipes by name: :func:`run_recipe` runs ``recipes/<name>.py``'s ``main``, as ``icl-interp recipe NAME`` does.

Each recipe file (the repository's ``recipes/`` folder) shows one experiment top to
bottom through the public API: load the models, sample prompts, call the study,
decide its claims, plot, save the JSON. Running the file itself keeps one source
for every number. The study functions live in :mod:`icl_interp.analysis.studies`.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..core.checks import check_choice
from ..core.devices import DEVICE_HELP, resolve_device

__all__ = ["RECIPES", "RECIPE_DIR", "run_recipe", "recipe_arguments"]

#: the recipe names, one file each in RECIPE_DIR
RECIPES = ("risk_curves", "head_importance", "pruning_probing", "preprocessing", "gd_steps", "algorithm", "multihead",
           "multihead_settings", "dynamics")
#: the repository's recipes folder (beside the package in a source checkout; a built wheel does not ship it)
RECIPE_DIR = Path(__file__).resolve().parents[2] / "recipes"


def run_recipe(name: str, out: Union[str, Path], quick: bool = False, device: Any = None) -> dict:
    """Run recipe ``name``: its figures and ``<name>.json`` (every plotted number) go into ``out``; returns the JSON's dict.

    ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ...; default None: the CPU): where the recipe's models run (checked
    before the recipe starts; the prompts are drawn on the CPU, so every device sees the same ones)."""
    check_choice("name", name, sorted(RECIPES))
    if device is not None:
        device = resolve_device(device, "device")
    if not isinstance(out, (str, Path)):
        raise TypeError(f"out must be a folder path (str or Path), got {type(out).__name__}")
    path = RECIPE_DIR / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"recipe {name!r} runs {path}, which is missing: the recipes ship with the repository, not the package")
    spec = importlib.util.spec_from_file_location(f"icl_interp_recipe_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(out, quick=bool(quick), device=device)


def recipe_arguments(doc: str, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse a recipe's command line, ``--out DIR [--quick] [--device D]``; ``doc`` (the recipe's docstring) is the help text."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the figures and the JSON")
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds to a minute, rough numbers")
    parser.add_argument("--device", default="auto", help=f"where the models run: {DEVICE_HELP} (default auto)")
    return parser.parse_args(argv)
