"""Interventions: *what* is done to an activation, kept apart from *where* (a hook name).

Every intervention is a TransformerLens hook function, ``fn(activation, hook)``
returning the new activation or None, so ours and a user's follow one convention.
*Where* is a hook name; :func:`scoped` adds ``(name, fn)`` pairs through
TransformerLens' own level-scoped ``hooks()`` context (which applies 4.x hook
conversions such as ``hook_z``'s layout) and removes exactly those on every exit
path, leaving a user's hooks in force.

Writes follow TransformerLens' own patch setters: outside autograd they edit the
activation *in place* and return it. That matters on the 4.x bridge, where some
names are aliases of another point (``blocks.{l}.hook_resid_mid`` is
``blocks.{l}.ln2.hook_in``): a returned new tensor there reaches only the MLP's
input, an in-place edit reaches everything downstream, as on 3.x. Under autograd a
write returns a new tensor (``hook_z``, the only point written with gradients, is
not an alias).
"""

from __future__ import annotations

import contextlib
import difflib
from typing import Any, Callable, Iterable, Iterator, Optional

import torch
from torch import Tensor

__all__ = ["HookFn", "hook_point", "scoped", "capture", "replace_slice", "mix_heads"]

#: TransformerLens' hook convention: ``fn(activation, hook)`` -> replacement activation, or None to leave it
HookFn = Callable[..., Optional[Tensor]]


def hook_point(hooked: Any, name: str) -> Any:
    """The HookPoint called ``name``; a clear ValueError (with close matches) if there is none."""
    if not isinstance(name, str):
        raise TypeError(f"hook name must be a str, got {type(name).__name__}")
    if name not in hooked.hook_dict:
        close = difflib.get_close_matches(name, list(hooked.hook_dict), n=5)
        raise ValueError(f"hook name {name!r} is not a hook point of this model; close matches: {close}")
    return hooked.hook_dict[name]


@contextlib.contextmanager
def scoped(hooked: Any, hooks: Iterable[tuple[str, HookFn]]) -> Iterator[None]:
    """``(name, fn)`` hooks active for the duration of the block (TransformerLens ``hooks()``), always removed."""
    hooks = list(hooks)
    if not hooks:
        yield
        return
    for name, _ in hooks:
        hook_point(hooked, name)
    with hooked.hooks(fwd_hooks=hooks):
        yield


def _in_place(act: Tensor, *others: Tensor) -> bool:
    """Edit in place unless autograd tracks the activation or the written values."""
    return not (torch.is_grad_enabled() and (act.requires_grad or any(o.requires_grad for o in others)))


def capture(store: dict, key: Any, *, index: Any = None, detach: bool = True) -> HookFn:
    """Read: ``store[key] = activation`` (or ``activation[index]``), detached unless ``detach=False``.

    An undetached capture returns the activation, so the stored tensor is the one that
    flows on (on 4.x points with a layout conversion, such as ``hook_z``, the hook sees a
    converted copy): gradients with respect to it are the model's.
    """

    def fn(act: Tensor, hook: Any = None) -> Optional[Tensor]:
        got = act if index is None else act[index]
        store[key] = got.detach() if detach else got
        return None if detach else act

    return fn


def replace_slice(source: Tensor, index: tuple) -> HookFn:
    """Write: ``activation[index] = source[index]`` (activation patching's interchange)."""

    def fn(act: Tensor, hook: Any = None) -> Tensor:
        values = source[index].to(act.dtype)
        if _in_place(act, values):
            act[index] = values
            return act
        out = act.clone()
        out[index] = values
        return out

    return fn


def mix_heads(keep: Tensor, replacement: Optional[Callable[[Tensor], Optional[Tensor]]] = None) -> HookFn:
    """Write on ``hook_z`` ``[B, pos, head, d_head]``: ``z * keep + (1 - keep) * replacement(z)``.

    ``keep`` is ``[head]`` or ``[B, head]`` (1 keep, 0 ablate, fractions interpolate);
    ``replacement(z)`` gives what an ablated head's z becomes (None or returning None: zeros).
    """

    def fn(z: Tensor, hook: Any = None) -> Tensor:
        k = (keep[None, None, :, None] if keep.ndim == 1 else keep[:, None, :, None]).to(z)  # its dtype and device
        repl = None if replacement is None else replacement(z)
        new = z * k if repl is None else z * k + (1 - k) * repl.to(z)
        if _in_place(z, new):
            z.copy_(new)
            return z
        return new

    return fn
