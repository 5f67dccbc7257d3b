"""Data-parallel training on torch.distributed: every rank trains on its slice of the one global batch.

``torchrun --standalone --nproc_per_node=N -m icl_interp train ...`` starts N processes
and sets ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE``; :func:`context` reads them and joins
the process group (gloo on the CPU, NCCL on CUDA, each rank on ``cuda:LOCAL_RANK``).
Step t's global batch is the single-process batch (seeded by ``(seed, t)``); rank r
takes its r-th equal slice, and DistributedDataParallel averages the gradients over
the ranks, so the update is the single-process update (up to the order of
floating-point sums). Only rank 0 evaluates and writes (checkpoints, log, snapshots,
the final model), shows the progress bar and logs to wandb; its stop decision (the
``max_minutes`` chunks) is broadcast so that every rank stops at the same step.
Resuming reads the checkpoint on every rank: across machines, ``--out`` must be on a
shared file system.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from ..core.devices import resolve_device
from ..core.tasks import ICLBatch

__all__ = ["Dist", "context"]

# The core's token and positional embeddings never run (the core starts at the residual stream):
# DDP must not wait for their gradients.
_UNUSED = ("model.hooked.embed.", "model.hooked.pos_embed.")


@dataclass
class Dist:
    """This process's place in a data-parallel run (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, batch: ICLBatch) -> ICLBatch:
        """This rank's equal slice of the global batch."""
        if not self.active:
            return batch
        per = batch.batch_size // self.world_size
        return batch[self.rank * per : (self.rank + 1) * per]

    def mean(self, value: torch.Tensor) -> float:
        """The mean of a scalar over the ranks (the global batch's loss from the ranks' slice losses)."""
        if not self.active:
            return float(value)
        total = value.detach().float().reshape(1).clone()
        dist.all_reduce(total)
        return float(total) / self.world_size

    def agree(self, flag: bool, device: torch.device) -> bool:
        """Rank 0's ``flag`` on every rank (a decision all ranks must take at the same step)."""
        if not self.active:
            return flag
        t = torch.tensor([int(flag)], device=device)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``module`` under DistributedDataParallel (gradients averaged over the ranks during backward)."""
        if not self.active:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        unused = [n for n, _ in module.named_parameters() if n.startswith(_UNUSED)]
        DDP._set_params_and_buffers_to_ignore_for_model(module, unused)
        return DDP(module, device_ids=[device.index] if device.type == "cuda" else None)

    def close(self, wait: bool = True) -> None:
        """Wait for every rank (unless this one failed), then leave the process group if :func:`context` joined it."""
        if self.active and wait:
            dist.barrier()
        if self.owns_group:
            dist.destroy_process_group()


def _env_world() -> tuple[int, int, int]:
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def context(device: Optional[str], batch_size: int, default_type: str = "cpu") -> tuple[Dist, Optional[torch.device]]:
    """The run's :class:`Dist` and this rank's device (None in a single process: the caller decides).

    Joins the process group that torchrun's environment describes, unless one is
    already initialised (then uses it). ``device``: ``None`` (the model's device type,
    ``default_type``), ``"auto"``, ``"cpu"`` or ``"cuda"`` (each rank takes
    ``cuda:LOCAL_RANK``). The global batch must split evenly over the ranks.
    """
    if dist.is_available() and dist.is_initialized():
        world, rank, local = dist.get_world_size(), dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
        owns = False
    else:
        (world, rank, local), owns = _env_world(), True
    if world <= 1:
        return Dist(), None
    request = device if device is not None else default_type
    dev = resolve_device(request, "device")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"data-parallel training runs on cpu (gloo) or cuda (NCCL), got device={request!r}")
    if dev.type == "cuda":
        if request != "auto" and torch.device(request).index is not None:
            raise ValueError(f"under torchrun give device='cuda' (each rank takes cuda:LOCAL_RANK), not {request!r}")
        dev = resolve_device(f"cuda:{local}", "device")
        torch.cuda.set_device(dev)
    if batch_size % world:
        raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of processes ({world})")
    if owns:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local, owns), dev
