"""Scoped hooks: add ours, always remove exactly ours.

Hooks are plain torch forward hooks on TransformerLens ``HookPoint`` modules, so
TransformerLens' own bookkeeping (``reset_hooks``, ``hooks(...)``) never touches
them and removing them never touches a user's hooks, which stay in force.
"""

from __future__ import annotations

import contextlib
import difflib
from typing import Any, Callable, Iterable, Iterator, Optional

from torch import Tensor

__all__ = ["scoped_hooks", "hook_point", "HookFn"]

# fn(activation) -> replacement activation, or None to leave it unchanged
HookFn = Callable[[Tensor], Optional[Tensor]]


def hook_point(hooked: Any, name: str) -> Any:
    """The HookPoint called ``name``; a clear ValueError (with close matches) if there is none."""
    if not isinstance(name, str):
        raise TypeError(f"hook name must be a str, got {type(name).__name__}")
    hook_dict = hooked.hook_dict
    if name not in hook_dict:
        close = difflib.get_close_matches(name, list(hook_dict), n=5)
        raise ValueError(f"hook name {name!r} is not a hook point of this model; close matches: {close}")
    return hook_dict[name]


@contextlib.contextmanager
def scoped_hooks(hooked: Any, hooks: Iterable[tuple[str, HookFn]], *, prepend: bool = False) -> Iterator[None]:
    """Register ``(name, fn)`` hooks for the duration of the block; removed on every exit path.

    ``prepend=True`` runs them before the hooks already on the point (a user's).
    """
    handles = []
    try:
        for name, fn in hooks:
            point = hook_point(hooked, name)

            def _wrap(module: Any, inputs: Any, output: Tensor, _fn: HookFn = fn) -> Optional[Tensor]:
                # TL 4.x hook points may store activations in another layout and convert
                # them for hooks (e.g. hook_z): do what HookPoint.add_hook does
                conv = getattr(module, "hook_conversion", None)
                result = _fn(output if conv is None else conv.convert(output))
                return result if (result is None or conv is None) else conv.revert(result)

            handles.append(point.register_forward_hook(_wrap, prepend=prepend))
        yield
    finally:
        for handle in handles:
            handle.remove()
