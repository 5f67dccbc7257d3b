"""A second device on a CPU-only machine: tensors marked as on ``cuda:0`` follow CUDA's placement rules.

No GPU has been lent to this project's sessions, so code meant to run a model on a GPU is checked here: under
:class:`RemoteDevice`, the model's parameters and buffers are *marked* as remote. Every torch function (operators,
methods, factories) then sees the placement CUDA would give: a marked tensor reports ``device == cuda:0``; an op's
result is marked when an input is; an op that mixes a marked tensor with an unmarked one that is not a 0-dim tensor
raises, as CUDA's "Expected all tensors to be on the same device" does (a CPU index into a remote tensor is allowed,
as on CUDA); ``.to("cuda")`` / ``.to(t.device)`` / ``device=`` in a factory mark, ``.cpu()`` / ``.to("cpu")``
unmark, and ``.numpy()`` of a marked tensor raises. The data stay on the CPU, so numbers are exact.

It is a check of placement only: kernels, speed and memory are not emulated, and code that calls the CUDA runtime
itself (``torch.cuda.*``) is not covered.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

REMOTE = torch.device("cuda", 0)
_MARK = "_emulated_remote"
_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__}
_TO_NUMPY = {torch.Tensor.numpy, torch.Tensor.__array__}
_COPY = {torch.Tensor.copy_, torch._has_compatible_shallow_copy_type}  # allowed between devices
_DEVICE, _IS_CUDA, _DATA = torch._C.TensorBase.device, torch._C.TensorBase.is_cuda, torch._C.TensorBase.data


class DeviceMismatch(RuntimeError):
    """What CUDA would raise: tensors of one op on two devices."""


def is_remote(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and getattr(t, _MARK, False)


def _mark(t: Any, remote: bool = True) -> Any:
    if isinstance(t, torch.Tensor):
        setattr(t, _MARK, remote)
    return t


def mark_module(module: torch.nn.Module) -> torch.nn.Module:
    """The module "moved" to the emulated device: its parameters and buffers marked (in place)."""
    for t in (*module.parameters(), *module.buffers()):
        _mark(t)
    return module


def _device_type(value: Any) -> Any:
    """'remote' / 'cpu' for a device-like value, None for anything else (a dtype, a bool)."""
    if isinstance(value, torch.Tensor):
        return "remote" if is_remote(value) else "cpu"
    if isinstance(value, str):
        try:
            value = torch.device(value)
        except RuntimeError:
            return None
    if isinstance(value, torch.device):
        return "cpu" if value.type == "cpu" else "remote"
    return None


def _fresh(result: Any, source: torch.Tensor) -> Any:
    return result.clone() if result is source else result  # a move makes a new tensor; .to() returns self when no-op


class RemoteDevice(TorchFunctionMode):
    """``with RemoteDevice(): ...`` runs the block with marked tensors behaving as on ``cuda:0`` (see the module)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        owner = getattr(func, "__self__", None)  # a property's getter arrives as the descriptor's bound __get__
        if owner is _DEVICE:
            return REMOTE if is_remote(args[0]) else func(*args)
        if owner is _IS_CUDA:
            return is_remote(args[0])
        if owner is _DATA and getattr(func, "__name__", "") == "__set__":  # param.data = moved (what Module.to does)
            func(*args)
            _mark(args[0], is_remote(args[1]))
            return None
        if func in (torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.cuda):
            return self._move(func, args, kwargs)
        if func in _TO_NUMPY and is_remote(args[0]) and not kwargs.get("force"):  # numpy(force=True) copies to the host
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host "
                            "memory first. (emulated)")
        if func is torch.Tensor.__deepcopy__:  # (self, memo): the memo holds other tensors, anywhere
            return _mark(func(*args, **kwargs), is_remote(args[0]))
        target = kwargs.get("device")
        if target is not None and _device_type(target) is not None:  # a factory (or like-op) told where to put its result
            where = _device_type(target)
            kwargs["device"] = "cpu"
            return tree_map(lambda t: _mark(t, where == "remote"), func(*args, **kwargs))
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if func in _COPY:
            return func(*args, **kwargs)
        self._check(func, args, tensors)
        result = func(*args, **kwargs)
        if any(is_remote(t) for t in tensors):
            inputs = {id(t) for t in tensors}
            # a new tensor computed from a remote one is remote; an unmarked input returned as is (in place) stays as it is
            result = tree_map(lambda t: _mark(t) if isinstance(t, torch.Tensor) and id(t) not in inputs else t, result)
        return result

    def _move(self, func: Any, args: tuple, kwargs: dict) -> Any:
        source = args[0]
        if func is torch.Tensor.cpu:
            return _mark(_fresh(func(*args, **kwargs), source), False)
        if func is torch.Tensor.cuda:
            return source if is_remote(source) else _mark(source.clone())
        where, dtype = None, kwargs.get("dtype")
        for a in (*args[1:], kwargs.get("device")):
            if isinstance(a, torch.dtype):
                dtype = a
            elif isinstance(a, torch.Tensor):  # .to(other): other's device and dtype
                where, dtype = _device_type(a), a.dtype
            elif _device_type(a) is not None:
                where = _device_type(a)
        result = source.to(dtype=dtype, memory_format=kwargs.get("memory_format", torch.preserve_format)) if dtype is not None else source
        here = "remote" if is_remote(source) else "cpu"
        if where is None or where == here:
            return result if result is source else _mark(result, here == "remote")
        return _mark(_fresh(result, source), where == "remote")

    @staticmethod
    def _check(func: Any, args: tuple, tensors: list) -> None:
        """Raise as CUDA would where ``func`` mixes devices (``tensors``: every tensor among its arguments)."""
        if func in _INDEXING:  # t[idx] / t[idx] = v: the index may be on the CPU when t is remote
            base, index = args[0], args[1]
            idx = [t for t in tree_flatten(index)[0] if isinstance(t, torch.Tensor)]
            if not is_remote(base) and any(is_remote(t) for t in idx):
                raise DeviceMismatch("indices should be either on cpu or on the same device as the indexed tensor (cpu) (emulated)")
            if func is torch.Tensor.__setitem__ and idx:  # a basic index (ints, slices) copies, which crosses devices
                value = args[2]
                if isinstance(value, torch.Tensor) and value.ndim > 0 and is_remote(value) != is_remote(base):
                    raise DeviceMismatch(f"{func.__name__}: value on {'cuda:0' if is_remote(value) else 'cpu'}, "
                                         f"tensor on {'cuda:0' if is_remote(base) else 'cpu'} (emulated)")
            return
        remote = [t for t in tensors if is_remote(t)]
        local = [t for t in tensors if not is_remote(t) and t.ndim > 0]
        if remote and local:
            name = getattr(func, "__name__", repr(func))
            raise DeviceMismatch(f"Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu! "
                                 f"({name}, shapes remote {[tuple(t.shape) for t in remote][:3]}, cpu "
                                 f"{[tuple(t.shape) for t in local][:3]}) (emulated)")
