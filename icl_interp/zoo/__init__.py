"""Trained models shipped with the package; load them with ``icl_interp.load_model(name)``.

``index.json`` declares how they relate (head-count siblings, the noise sweep, the
concatenated-token twin, the second seed's set); :func:`siblings` reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

__all__ = ["Siblings", "siblings", "siblings_from", "seeds", "recipe", "ROLES"]

#: the roles a model's relatives can have (index.json's "roles" says what each is for)
ROLES = ("head_counts", "single_head", "noise_sweep", "concat_twin", "second_seed", "second_seed_settings", "linear_twin")


@dataclass(frozen=True)
class Siblings:
    """A zoo model's declared relatives (``index.json``'s roles), each only if it is in the zoo in use.

    ``head_counts`` includes the model itself; ``noise_sweep`` holds (all heads,
    single head or None) pairs, the model's own included; ``second_seed`` is empty
    unless every model of the set is present; ``second_seed_settings`` holds
    (setting, its models) for each of the seed's other settings whose models are all present;
    ``linear_twin`` is the same task learnt by the seed's theory class (bidirectional linear attention).
    A comparison is fair only between models trained alike: the head-count siblings, the single-head
    sibling, the concatenated-token twin and each noise level's all-heads model must share the anchor's
    :func:`recipe`, each level's single-head model its pair's; a declared sibling that does not is left out
    and named in ``other_recipe``.
    """

    head_counts: tuple[str, ...] = ()
    #: declared siblings left out of a comparison: trained with another recipe than the model they are compared with
    other_recipe: tuple[str, ...] = ()
    #: declared siblings the zoo in use does not hold (not trained yet, or another zoo)
    missing: tuple[str, ...] = ()
    single_head: Optional[str] = None
    noise_sweep: tuple[tuple[str, Optional[str]], ...] = ()
    concat_twin: Optional[str] = None
    second_seed: tuple[str, ...] = ()
    second_seed_settings: tuple[tuple[str, tuple[str, ...]], ...] = ()
    linear_twin: Optional[str] = None


def siblings(name: Any) -> Siblings:
    """The relatives of zoo model ``name`` that the current zoo holds (``use_zoo`` respected); none for a non-anchor.

    ``name`` is a zoo name (``"default"`` or ``"zoo:default"``: siblings are the zoo's, so a bare name here
    is always the zoo's); a path (a ``Path``, a str with a slash), a model in memory or None has no siblings.
    A name neither in the zoo nor declared in its index raises a ValueError listing the zoo names, as
    ``load_model`` does.
    """
    from ..core.checkpoint import ZOO_PREFIX, _is_path_like, zoo_names

    if not isinstance(name, str) or _is_path_like(name):
        return Siblings()
    name = name[len(ZOO_PREFIX):] if name.startswith(ZOO_PREFIX) else name
    from ..core.zoo_store import _index

    index = _index()  # parsed once per modification of index.json
    present = set(zoo_names())
    if name not in present and name not in _every_declared(index):
        raise ValueError(f"name {name!r} is not in the zoo; zoo names: {sorted(present)}")
    entry = index["siblings"].get(name)
    if entry is None or name not in present:
        return Siblings()
    return _siblings_of(name, entry, present)


def siblings_from(name: Any, declared: Any) -> Siblings:
    """The relatives of a model outside the zoo's index (a saved folder, an imported model) declared by the caller.

    ``declared`` is a JSON file (path) or a dict in the form of one ``index.json`` ``"siblings"`` entry, e.g.
    ``{"single_head": "runs/h1/model", "head_counts": ["runs/h4/model", "runs/h1/model"], "concat_twin": "zoo:default-concat"}``:
    each model a saved folder (relative paths are read from the file's folder) or a zoo name. ``name`` is the anchor
    as the caller loads it (a folder or zoo name). Roles: :data:`ROLES`.
    """
    from ..core.checkpoint import resolve_model

    base = Path(".")
    if isinstance(declared, (str, Path)):
        path = Path(declared)
        try:
            declared = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"siblings file {str(path)!r} is not a readable JSON file ({e})") from None
        base = path.parent
    if not isinstance(declared, dict):
        raise TypeError(f"declared must be a JSON file or a dict of roles, got {type(declared).__name__}")
    unknown = sorted(set(declared) - set(ROLES))
    if unknown:
        raise ValueError(f"declared has unknown roles {unknown}; the roles are {list(ROLES)}")

    from ..core.checkpoint import ZOO_PREFIX, _is_path_like

    def folder(n: Any) -> bool:
        return isinstance(n, Path) or (isinstance(n, str) and _is_path_like(n) and not n.startswith(ZOO_PREFIX))

    anchor = str(name)
    anchor_at = Path(anchor).resolve() if folder(name) else None

    def where(n: Any) -> Any:  # a folder, read from the file's folder (the anchor's own spelling for the anchor); a zoo name as it is
        if not isinstance(n, str):
            raise TypeError(f"declared: every model must be a str (a folder or a zoo name), got {n!r}")
        if not folder(n):
            return anchor if n == anchor else n
        at = (base / n).resolve()
        return anchor if at == anchor_at else str(at)

    entry = json.loads(json.dumps(declared))
    for key, value in entry.items():
        if isinstance(value, str):
            entry[key] = where(value)
        elif isinstance(value, list):
            entry[key] = [[where(x) for x in v] if isinstance(v, list) else where(v) for v in value]
        elif isinstance(value, dict):
            entry[key] = {k: [where(x) for x in v] for k, v in value.items()}
    present = {anchor}
    for n in _declared(entry):
        try:
            resolve_model(n)
            present.add(n)
        except ValueError:
            pass
    return _siblings_of(anchor, entry, present)


def _siblings_of(name: str, entry: dict, present: set) -> Siblings:
    """``entry``'s declared relatives of ``name`` among ``present``, each comparison only between models trained alike."""
    other: list[str] = []
    recipes: dict[str, Optional[dict]] = {}  # each model's config read once

    def have(n: Optional[str]) -> Optional[str]:
        return n if n in present else None

    def alike(n: Optional[str], ref: str = name) -> Optional[str]:
        """``n`` if present and trained with ``ref``'s recipe (else None; a present one is noted in ``other``)."""
        if n not in present or n == ref:
            return have(n)
        for m in (n, ref):
            if m not in recipes:
                recipes[m] = recipe(m)
        if recipes[n] != recipes[ref]:
            other.append(n)
            return None
        return n

    return Siblings(
        head_counts=tuple(n for n in entry.get("head_counts", []) if alike(n)),
        single_head=alike(entry.get("single_head")),
        noise_sweep=tuple((full, alike(single, full)) for full, single in entry.get("noise_sweep", []) if alike(full)),
        concat_twin=alike(entry.get("concat_twin")),
        other_recipe=tuple(dict.fromkeys(other)),
        missing=tuple(n for n in dict.fromkeys(_declared(entry)) if n not in present),
        second_seed=tuple(entry.get("second_seed", [])) if set(entry.get("second_seed", [])) <= present else (),
        second_seed_settings=tuple((setting, tuple(names)) for setting, names in entry.get("second_seed_settings", {}).items()
                                   if set(names) <= present),
        linear_twin=have(entry.get("linear_twin")),
    )


def seeds(name: Any) -> dict[int, str]:
    """The training seeds of zoo model ``name`` that the zoo in use holds: ``{0: name, k: its seed-k model}``.

    ``index.json``'s ``"seeds"`` names, per model, the models trained with the same recipe and
    ``--seed k`` (``icl-interp train --preset NAME --seed k``); a model without seeds, a folder or a
    model in memory has only itself (``{0: name}``, or ``{}`` when ``name`` is not a zoo name).
    """
    from ..core.checkpoint import ZOO_PREFIX, zoo_names

    if isinstance(name, str) and name.startswith(ZOO_PREFIX):
        name = name[len(ZOO_PREFIX):]
    if not isinstance(name, str) or name not in zoo_names():
        return {}
    from ..core.zoo_store import _index

    declared = _index().get("seeds", {}).get(name, {})
    present = set(zoo_names())
    return {0: name, **{int(k): n for k, n in sorted(declared.items(), key=lambda kv: int(kv[0])) if n in present}}


def _every_declared(index: dict) -> set[str]:
    """Every model name the index knows: the anchors and all they declare (trained or not)."""
    seeds = {n for model, declared in index.get("seeds", {}).items() for n in (model, *declared.values())}
    return seeds | {n for anchor, entry in index["siblings"].items() for n in (anchor, *_declared(entry))}


def _declared(entry: dict) -> list[str]:
    """Every model name an index entry declares, in order."""
    names = [*entry.get("head_counts", []), entry.get("single_head"), *(n for pair in entry.get("noise_sweep", []) for n in pair),
             entry.get("concat_twin"), *entry.get("second_seed", []),
             *(n for group in entry.get("second_seed_settings", {}).values() for n in group), entry.get("linear_twin")]
    return [n for n in names if n is not None]


#: train-config fields that do not change what a model learns (bookkeeping, output, hardware), that a comparison
#: itself varies (``min_points``: the concatenated twin trains on shorter prompts too), or the training seed (a recipe's
#: seeds are samples of one recipe: :func:`seeds`)
_NOT_RECIPE = ("seed", "progress", "threads", "checkpoint_every", "device", "compile", "log_to", "keep_every", "keep_log",
               "eval_every", "eval_prompts", "min_points", "fast", "extra", "dtype", "init_from")


#: model-config fields a comparison varies (heads, token encoding, the task and its noise) or that follow from those
#: (d_head); the rest (depth, width, MLP, normalisation, positions, attention kind, context) is the architecture
_NOT_ARCHITECTURE = ("n_heads", "d_head", "encoding", "task", "seed")


def recipe(name: str) -> Optional[dict]:
    """The training recipe a zoo model (or a saved folder: a str with a slash) records: its train config without bookkeeping fields and, under
    ``"architecture"``, its model config without what a comparison varies; fields a config predates at their defaults
    (None when it records no train config, e.g. a hand-built construction). A 3-layer model is no head-count sibling of
    a 4-layer one, whatever their schedules."""
    from ..core.checkpoint import ZOO_PREFIX, _is_path_like, read_config
    from ..core.model import ModelConfig
    from ..training.loop import TrainConfig

    config = read_config(name if name.startswith(ZOO_PREFIX) or _is_path_like(name) else ZOO_PREFIX + name)  # a folder, or the zoo's
    train = config.get("training", {}).get("train_config")
    if train is None:
        return None
    return {**_recorded(TrainConfig, train, _NOT_RECIPE),
            "architecture": _recorded(ModelConfig, config["model"], _NOT_ARCHITECTURE)}


def _recorded(cls: type, saved: dict, skip: tuple[str, ...]) -> dict:
    """``saved`` (a dataclass config as written to JSON) with the fields it predates at ``cls``'s defaults, less ``skip``."""
    from dataclasses import MISSING, fields

    defaults = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
    full = json.loads(json.dumps({**defaults, **saved}))  # tuples as lists, as read from JSON
    return {k: v for k, v in full.items() if k not in skip}
