"""Trained models shipped with the package; load them with ``icl_interp.load_model(name)``.

``index.json`` declares how they relate (head-count siblings, the noise sweep, the
concatenated-token twin, the second seed's set); :func:`siblings` reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

__all__ = ["Siblings", "siblings"]

INDEX = Path(__file__).parent / "index.json"


@dataclass(frozen=True)
class Siblings:
    """A zoo model's declared relatives (``index.json``'s roles), each only if it is in the zoo in use.

    ``head_counts`` includes the model itself; ``noise_sweep`` holds (all heads,
    single head or None) pairs, the model's own included; ``second_seed`` is empty
    unless every model of the set is present; ``second_seed_settings`` holds
    (setting, its models) for each of the seed's other settings whose models are all present;
    ``linear_twin`` is the same task learnt by the seed's theory class (bidirectional linear attention).
    """

    head_counts: tuple[str, ...] = ()
    single_head: Optional[str] = None
    noise_sweep: tuple[tuple[str, Optional[str]], ...] = ()
    concat_twin: Optional[str] = None
    second_seed: tuple[str, ...] = ()
    second_seed_settings: tuple[tuple[str, tuple[str, ...]], ...] = ()
    linear_twin: Optional[str] = None


def siblings(name: Any) -> Siblings:
    """The relatives of zoo model ``name`` that the current zoo holds (``use_zoo`` respected); none for a non-anchor.

    ``name`` is a zoo name; anything else (a folder, a model in memory, None) has no siblings.
    """
    from ..checkpoint import zoo_names

    if not isinstance(name, str):
        return Siblings()
    entry = json.loads(INDEX.read_text())["siblings"].get(name)
    present = set(zoo_names())
    if entry is None or name not in present:
        return Siblings()

    def have(n: Optional[str]) -> Optional[str]:
        return n if n in present else None

    return Siblings(
        head_counts=tuple(n for n in entry.get("head_counts", []) if n in present),
        single_head=have(entry.get("single_head")),
        noise_sweep=tuple((full, have(single)) for full, single in entry.get("noise_sweep", []) if full in present),
        concat_twin=have(entry.get("concat_twin")),
        second_seed=tuple(entry.get("second_seed", [])) if set(entry.get("second_seed", [])) <= present else (),
        second_seed_settings=tuple((setting, tuple(names)) for setting, names in entry.get("second_seed_settings", {}).items()
                                   if set(names) <= present),
        linear_twin=have(entry.get("linear_twin")),
    )
