"""One optimizer step of :func:`icl_interp.train`: the loss, backward, gradient clipping, AdamW.

The loss is a module (:class:`LossModule`) so that DistributedDataParallel can wrap it
and ``torch.compile`` compile it. While nothing listens to the core (no hook on any
hook point or module), it runs the fused forward (:func:`icl_interp.core.fast_paths.native_forward`)
and computes only what the loss reads: the last block runs its queries and MLP at the
x tokens (interleaved) or the query (concatenated) alone. Otherwise the ordinary
hooked forward runs, so a user's hook fires. Both are the model's own function (tested
against ``model(xs, ys)``). ``dtype="bfloat16"`` runs the forward under autocast; the
parameters, gradients and AdamW moments stay float32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..core import fast_paths
from ..core.devices import autocast
from .distributed import Dist

__all__ = ["LossModule", "TrainStep", "make_optimizer", "read_positions"]


def make_optimizer(model: nn.Module, cfg: Any, device: torch.device) -> torch.optim.AdamW:
    """AdamW over every parameter; the fused kernel where torch has one (CPU and CUDA: one pass over all tensors)."""
    fused = True if device.type in ("cpu", "cuda") else None
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=fused)


def read_positions(model: Any, n_points: int) -> tuple[int, int]:
    """``(first, every)``: the core output positions ``first::every`` that ``model.readout`` reads (from its layout)."""
    lay = model.layout(n_points)
    if model.query_only:
        return lay.query, 1
    tokens = lay.example_tokens.tolist()
    every = tokens[1] - tokens[0] if len(tokens) > 1 else 1
    if tokens != list(range(tokens[0], lay.n_tokens, every)):
        raise ValueError(f"the layout's prediction tokens {tokens} are not every {every}-th token to the end")
    return tokens[0], every


class LossModule(nn.Module):
    """The normalised MSE of a batch (``preds`` against ``ys``, or against the last y for query-only models)."""

    def __init__(self, model: nn.Module, norm: float):
        super().__init__()
        self.model = model
        self.norm = norm

    def forward(self, xs: Tensor, ys: Tensor, fused: bool, first: int, every: int) -> Tensor:
        if fused:
            out = fast_paths.native_forward(self.model.hooked, self.model.encode(xs, ys), read=slice(first, None, every))
            preds = out[:, :, 0]
            preds = preds[:, 0] if self.model.query_only else preds
        else:
            preds = _hooked_predictions(self.model, xs, ys)
        target = ys[:, -1] if preds.ndim == 1 else ys
        return ((preds.float() - target) ** 2).mean() / self.norm


@torch.compiler.disable
def _hooked_predictions(model: nn.Module, xs: Tensor, ys: Tensor) -> Tensor:
    """The hooked forward (a listener is set); never compiled: hooks are Python."""
    return model(xs, ys)


class TrainStep:
    """``step(batch, lr, t)``: one AdamW step on ``batch`` (this rank's slice); returns the slice's loss."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, cfg: Any, norm: float, device: torch.device, dist: Dist):
        self.model, self.opt, self.cfg, self.device = model, opt, cfg, device
        self.params = list(model.parameters())
        loss: nn.Module = dist.wrap(LossModule(model, norm), device)
        self.loss = torch.compile(loss) if cfg.compile else loss
        self._reads: dict[int, tuple[int, int]] = {}

    def __call__(self, batch: Any, lr: float, t: int) -> Tensor:
        for group in self.opt.param_groups:
            group["lr"] = lr
        hooked = self.model.hooked
        fused = self.cfg.fast and fast_paths.usable(hooked) and fast_paths.nothing_listening(hooked)
        if batch.n_points not in self._reads:
            self._reads[batch.n_points] = read_positions(self.model, batch.n_points)
        first, every = self._reads[batch.n_points]
        with autocast(self.device, self.cfg.dtype):
            loss = self.loss(batch.xs, batch.ys, fused, first, every)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        if not bool(torch.isfinite(norm)):  # the all-reduced gradient: every rank raises at the same step
            raise FloatingPointError(f"the loss or its gradient became non-finite at step {t} (loss {loss.item():.4g}, "
                                     f"gradient norm {norm.item():.4g}); lower lr or enable grad_clip")
        self.opt.step()
        return loss.detach()
