"""ICLTransformer: read-in, a TransformerLens hooked core, read-out.

Data path: ``(xs, ys) -> encode -> tokens -> read_in + pos -> hooked core
(blocks.{l}.* hook points) -> ln_final -> unembed (1 output) -> read_out``.

Two encodings:

* ``"interleaved"`` (Garg et al.): tokens ``x_1, y_1, x_2, ..., x_n`` (y zero-padded
  to d dims, the last y dropped); ``preds[:, i]`` is read at ``x_i``'s token and
  predicts ``y_i`` from the first ``i`` examples.
* ``"concatenated"`` (von Oswald et al.): tokens ``[x_i; y_i]`` and a query
  ``[x_n; 0]``; the model returns ``[B]``, the query's prediction.

The core runs on the residual stream (``start_at_layer=0``): the read-in and
positional embedding are ours, so ``blocks.0.hook_resid_pre`` is the encoded prompt.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from . import backend, fast_paths
from .checks import check_choice, check_int, check_tensor
from .devices import resolve_device
from .linear_attention import linear_attention
from .protocol import Layout, check_batch
from .tasks import ICLBatch, Task, task_from_dict

__all__ = ["ModelConfig", "ICLTransformer"]

ENCODINGS = ("interleaved", "concatenated")
NORMALIZATIONS = ("LN", "LNPre", "RMS", "RMSPre", None)
POSITIONALS = ("learned", "none")
ATTENTIONS = ("softmax", "linear")
ATTENTION_DIRS = ("causal", "bidirectional")


@dataclass
class ModelConfig:
    """Everything needed to rebuild an ICLTransformer (and, via ``task``, its task)."""

    d: int = 8
    n_layers: int = 3
    n_heads: int = 4
    d_model: int = 64
    d_head: Optional[int] = None  # default d_model // n_heads
    d_mlp: Optional[int] = None  # default 4 * d_model; unused when attn_only
    attn_only: bool = False
    normalization: Optional[str] = "LN"
    positional: str = "learned"
    encoding: str = "interleaved"
    max_points: int = 40
    act_fn: str = "gelu"
    seed: int = 0
    task: Optional[dict] = field(default=None)
    attention: str = "softmax"  # "linear": icl_interp.core.linear_attention (pattern = masked score / number of keys)
    attention_dir: str = "causal"  # "bidirectional" needs the concatenated encoding (the query's y is hidden)

    def __post_init__(self) -> None:
        self.d = check_int("d", self.d, min_value=1)
        self.n_layers = check_int("n_layers", self.n_layers, min_value=1)
        self.n_heads = check_int("n_heads", self.n_heads, min_value=1)
        self.d_model = check_int("d_model", self.d_model, min_value=1)
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise ValueError(f"d_head must be given when d_model ({self.d_model}) is not divisible by n_heads ({self.n_heads})")
            self.d_head = self.d_model // self.n_heads
        self.d_head = check_int("d_head", self.d_head, min_value=1)
        self.d_mlp = check_int("d_mlp", 4 * self.d_model if self.d_mlp is None else self.d_mlp, min_value=1)
        self.max_points = check_int("max_points", self.max_points, min_value=1)
        self.seed = check_int("seed", self.seed, min_value=0)
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        check_choice("positional", self.positional, POSITIONALS)
        check_choice("encoding", self.encoding, ENCODINGS)
        check_choice("act_fn", self.act_fn, ("gelu", "gelu_new", "relu", "silu"))
        check_choice("attention", self.attention, ATTENTIONS)
        check_choice("attention_dir", self.attention_dir, ATTENTION_DIRS)
        if self.attention_dir == "bidirectional" and self.encoding != "concatenated":
            raise ValueError(
                f"attention_dir='bidirectional' needs encoding='concatenated', got encoding={self.encoding!r}: "
                "with interleaved tokens every x_i would see its own y_i (and later ones), leaking the answer"
            )
        if self.task is not None:
            task = task_from_dict(self.task)  # validates
            if task.d != self.d:
                raise ValueError(f"task d ({task.d}) does not match model d ({self.d})")

    @property
    def n_ctx(self) -> int:
        """Tokens in a prompt of ``max_points`` examples."""
        return 2 * self.max_points - 1 if self.encoding == "interleaved" else self.max_points

    @property
    def d_in(self) -> int:
        """Width of an encoded token before the read-in."""
        return self.d if self.encoding == "interleaved" else self.d + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, spec: dict) -> "ModelConfig":
        if not isinstance(spec, dict):
            raise TypeError(f"model config must be a dict, got {type(spec).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(f"model config has unknown fields {unknown}; known fields are {sorted(known)}")
        return cls(**spec)


class ICLTransformer(nn.Module):
    """A TransformerLens hooked transformer trained to do in-context regression.

    ``model.hooked`` is the TransformerLens object (a 4.x ``TransformerBridge`` or
    a 3.x ``HookedTransformer``) and every hook name is TransformerLens'.
    """

    def __init__(self, cfg: ModelConfig, task: Optional[Task] = None, device: Optional[Any] = None):
        """``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``): built on the CPU with the seed, then moved there."""
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
        if task is not None:
            if not isinstance(task, Task):
                raise TypeError(f"task must be a Task, got {type(task).__name__}")
            if task.d != cfg.d:
                raise ValueError(f"task d ({task.d}) does not match cfg.d ({cfg.d})")
            cfg.task = task.to_dict()
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.read_in = nn.Linear(cfg.d_in, cfg.d_model)
            self.pos_emb = nn.Parameter(0.02 * torch.randn(cfg.n_ctx, cfg.d_model)) if cfg.positional == "learned" else None
        self.hooked = backend.build_core(cfg)
        if cfg.attention == "linear":  # on the core's own hook points; the query is no key of a concatenated prompt
            linear_attention(self.hooked, normalise="keys", query_key=cfg.encoding != "concatenated")
        self.eval()
        if device is not None:
            self.to(resolve_device(device))
        gen = torch.Generator().manual_seed(0)
        n = min(4, cfg.max_points)
        probe = ICLBatch(torch.randn(2, n, cfg.d, generator=gen), torch.randn(2, n, generator=gen), torch.zeros(2, cfg.d))
        self._check_fast_path(probe.to(self.read_in.weight.device))

    def _check_fast_path(self, probe: ICLBatch) -> None:
        """A ValueError unless ``fast=True`` (what training runs) computes the hooked forward's function on ``probe``.

        The tools check every path they use when they first meet a model (:func:`icl_interp.tools.runner.check_model`);
        training never enters through them, so the model checks its own fast path here, once, when it is built.
        """
        with torch.no_grad():
            resid = self.encode_batch(probe)
            fused = fast_paths.fused_forward(self.hooked, resid)
            if fused is None:  # no fast path for this core: fast=True runs the hooked forward
                return
            with backend.quiet_tl():
                own = self.hooked(resid, start_at_layer=0)
        gap = fast_paths.relative_gap(fused, own)
        if not gap <= fast_paths.SELF_CHECK_RTOL:
            raise ValueError(f"the fused forward differs from the hooked forward by {gap:.2g} (relative; tolerance "
                             f"{fast_paths.SELF_CHECK_RTOL:g}) on this core ({type(self.hooked).__name__}): fast=True is not supported")

    # -- the task it was trained on -------------------------------------------------
    @property
    def task(self) -> Optional[Task]:
        return None if self.cfg.task is None else task_from_dict(self.cfg.task)

    @property
    def device(self) -> torch.device:
        """Where its parameters are: prompts go there (``batch.to(model.device)``)."""
        return next(self.parameters()).device

    @property
    def query_only(self) -> bool:
        """True when the model predicts only the last y (concatenated encoding)."""
        return self.cfg.encoding == "concatenated"

    # -- encode ------------------------------------------------------------------------
    def check_inputs(self, xs: Any, ys: Any, name: str = "xs") -> None:
        """Validate a prompt batch against this model (shapes, d, context length, NaN)."""
        check_tensor(name if name == "xs" else f"{name}.xs", xs, ndim=3)
        b, n, d = xs.shape
        check_tensor("ys" if name == "xs" else f"{name}.ys", ys, shape=(b, n))
        if d != self.cfg.d:
            raise ValueError(f"{name} has d={d} but the model was built for d={self.cfg.d}")
        if n > self.cfg.max_points:
            raise ValueError(f"{name} has n_points={n}, more than the model's context max_points={self.cfg.max_points}")

    def tokens(self, xs: Float[Tensor, "batch n d"], ys: Float[Tensor, "batch n"]) -> Float[Tensor, "batch pos d_in"]:
        """The token sequence before the read-in."""
        b, n, d = xs.shape
        if self.cfg.encoding == "interleaved":
            y_tok = torch.zeros_like(xs)
            y_tok[..., 0] = ys
            # x_1, y_1, x_2, y_2, ..., x_n (the last y is never needed: causal)
            return torch.stack([xs, y_tok], dim=2).reshape(b, 2 * n, d)[:, : 2 * n - 1]
        ys_in = ys.clone()
        ys_in[:, -1] = 0.0
        return torch.cat([xs, ys_in.unsqueeze(-1)], dim=-1)

    def encode(self, xs: Float[Tensor, "batch n d"], ys: Float[Tensor, "batch n"]) -> Float[Tensor, "batch pos d_model"]:
        """The residual stream entering block 0 (``blocks.0.hook_resid_pre``)."""
        resid = self.read_in(self.tokens(xs, ys))
        if self.pos_emb is not None:
            resid = resid + self.pos_emb[: resid.shape[1]]
        return resid

    def encode_batch(self, batch: ICLBatch) -> Float[Tensor, "batch pos d_model"]:
        """Toolkit entry point: the batch to the core's input (a float residual)."""
        self.check_inputs(batch.xs, batch.ys)
        return self.encode(batch.xs, batch.ys)

    def layout(self, n_points: int, n_tokens: Optional[int] = None) -> Layout:
        """The token layout of a prompt of ``n_points`` examples (the one place it is written down).

        Interleaved: tokens ``x_1, y_1, ..., x_n``; example ``i``'s prediction at token ``2i``,
        token ``t`` belongs to example ``t // 2``. Concatenated: token ``i`` is ``[x_i; y_i]``,
        the query (last) token predicts.
        """
        n_points = check_int("n_points", n_points, min_value=1)
        if self.cfg.encoding == "interleaved":
            n_tok = 2 * n_points - 1
            return Layout(n_tok, n_tok - 1, torch.arange(0, n_tok, 2), torch.arange(n_tok) // 2)
        return Layout(n_points, n_points - 1, torch.arange(n_points), torch.arange(n_points))

    # -- read out ----------------------------------------------------------------------
    def readout(self, out: Float[Tensor, "batch pos 1"], batch: Optional[ICLBatch] = None) -> Tensor:
        """Core output to predictions: ``[B, n]`` (interleaved) or ``[B]`` (concatenated)."""
        if self.cfg.encoding == "interleaved":
            return out[:, 0::2, 0]
        return out[:, -1, 0]

    # -- run ---------------------------------------------------------------------------
    def _batch(self, xs: Any, ys: Any) -> ICLBatch:
        """The prompts as an ICLBatch on this model's device, in its dtype (the tools' policy)."""
        if isinstance(xs, ICLBatch):
            if ys is not None:
                raise TypeError("pass either an ICLBatch or (xs, ys), not both")
            batch = xs
        else:
            check_tensor("xs", xs, ndim=3)
            check_tensor("ys", ys, ndim=2)
            w = torch.zeros(xs.shape[0], xs.shape[2], dtype=xs.dtype, device=xs.device)
            batch = ICLBatch(xs, ys, w)
        return check_batch("xs" if not isinstance(xs, ICLBatch) else "data", batch, self)

    def forward(
        self, xs: Float[Tensor, "batch n d"] | ICLBatch, ys: Optional[Float[Tensor, "batch n"]] = None, *, fast: bool = False
    ) -> Tensor:
        """Predictions ``[B, n]`` (interleaved) or ``[B]`` (concatenated, the query).

        The TransformerLens forward runs, every hook point live. ``fast=True`` (what
        training asks for, ``TrainConfig.fast``) runs the same function on the core's
        torch modules without the hook machinery (``fast_paths.fused_forward``) when the
        core supports it and nothing is listening (no hook on any hook point, no
        torch hook on any module of the core); otherwise the hooked forward.
        """
        batch = self._batch(xs, ys)
        resid = self.encode(batch.xs, batch.ys)
        out = fast_paths.fused_forward(self.hooked, resid) if fast else None
        if out is None:
            with backend.quiet_tl():
                out = self.hooked(resid, start_at_layer=0)
        return self.readout(out)

    def run_with_hooks(self, xs: Any, ys: Any = None, *, fwd_hooks: Sequence[tuple[Any, Callable]] = (), **kwargs: Any) -> Tensor:
        """``hooked.run_with_hooks`` on the encoded prompt; returns predictions."""
        batch = self._batch(xs, ys)
        with backend.quiet_tl():
            out = self.hooked.run_with_hooks(self.encode(batch.xs, batch.ys), start_at_layer=0, fwd_hooks=list(fwd_hooks), **kwargs)
        return self.readout(out)

    def run_with_cache(self, xs: Any, ys: Any = None, **kwargs: Any) -> tuple[Tensor, Any]:
        """``hooked.run_with_cache`` on the encoded prompt; returns (predictions, cache)."""
        batch = self._batch(xs, ys)
        with backend.quiet_tl():
            out, cache = self.hooked.run_with_cache(self.encode(batch.xs, batch.ys), start_at_layer=0, **kwargs)
        return self.readout(out), cache

    # -- save / load (see checkpoint.py) ------------------------------------------------
    def own_state_dict(self) -> dict[str, Tensor]:
        """Our layers (read-in, positional) plus the core in the canonical layout."""
        out = {f"read_in.{k}": v.detach().clone() for k, v in self.read_in.state_dict().items()}
        if self.pos_emb is not None:
            out["pos_emb"] = self.pos_emb.detach().clone()
        out.update({f"hooked.{k}": v for k, v in backend.canonical_state_dict(self.hooked).items()})
        return out

    def load_own_state_dict(self, state: dict[str, Tensor]) -> None:
        """Inverse of :meth:`own_state_dict`; refuses missing, extra or mis-shaped tensors."""
        core = {k[len("hooked."):]: v for k, v in state.items() if k.startswith("hooked.")}
        own = {k: v for k, v in state.items() if not k.startswith("hooked.")}
        expected = {k: v for k, v in self.own_state_dict().items() if not k.startswith("hooked.")}
        if set(own) != set(expected):
            raise ValueError(f"weights do not match the model config: got {sorted(own)}, expected {sorted(expected)}")
        for k, v in expected.items():
            if tuple(own[k].shape) != tuple(v.shape):
                raise ValueError(f"weight {k!r} has shape {tuple(own[k].shape)}, the model config expects {tuple(v.shape)}")
        backend.load_canonical_state_dict(self.hooked, core)
        with torch.no_grad():
            self.read_in.weight.copy_(own["read_in.weight"])
            self.read_in.bias.copy_(own["read_in.bias"])
            if self.pos_emb is not None:
                self.pos_emb.copy_(own["pos_emb"])

    def __repr__(self) -> str:
        c = self.cfg
        return (
            f"ICLTransformer(d={c.d}, layers={c.n_layers}, heads={c.n_heads}, d_model={c.d_model}, "
            f"encoding={c.encoding!r}, core={type(self.hooked).__name__})"
        )
