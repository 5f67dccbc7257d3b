"""Import checkpoints of Garg et al. (2022), github.com/dtsip/in-context-learning.

Their ``TransformerModel`` is a read-in ``Linear(n_dims, n_embd)``, a Hugging Face
``GPT2Model`` run on ``inputs_embeds`` (learned positions over ``2 * n_positions``
tokens, ``gelu_new``, LayerNorm eps 1e-5, attention scaled by 1/sqrt(d_head), no
dropout at eval) and a read-out ``Linear(n_embd, 1)``; tokens are interleaved
``x_1, [y_1, 0...], x_2, ...`` and predictions are read at the x tokens. That is
exactly an interleaved :class:`~icl_interp.core.model.ICLTransformer` with
``act_fn="gelu_new"`` and LayerNorm: the read-in and positions map to ours, the
blocks, final norm and read-out to the core in HookedTransformer's canonical layout
(so one mapping serves transformer-lens 3.x and 4.x), the read-out being the
unembedding with one output.

Positions: our model keeps ``2 * n_positions - 1`` of their ``2 * n_positions``
position rows. The last row only ever serves the final y token, which no prediction
reads (attention is causal and the last prediction sits at ``x_n``).

Which file a run folder gives (their ``train.py`` writes ``state.pt`` every
``save_every_steps`` and keeps ``model_{i}.pt`` every ``keep_every_steps``):

* ``step=None``: ``state.pt``, the latest training state (what their ``eval.py``
  loads by default). A folder without one is refused, naming its ``model_{i}.pt``.
* ``step=i``: ``model_{i}.pt``; ``step="latest"``: the ``model_{i}.pt`` of largest i.

Files are read with ``torch.load(..., weights_only=True)`` (tensors and plain
containers only, never arbitrary pickled objects) and ``config.yaml`` with
``yaml.safe_load``.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path
from typing import Any, Optional, Union

import torch
from einops import rearrange
from torch import Tensor

from .checks import check_int
from .tasks import LinearRegression, SparseLinearRegression, Task

__all__ = ["import_garg", "read_garg_config", "garg_state_to_own"]

REPOSITORY = "dtsip/in-context-learning"
CONFIG_KEYS = ("n_dims", "n_positions", "n_embd", "n_layer", "n_head")
_STATE = "state.pt"
_KEPT = re.compile(r"model_(\d+)\.pt")
# tensors a Garg checkpoint may hold that the model never uses: the token embedding
# (inputs_embeds bypasses it), and older transformers' causal-mask buffers
_IGNORED = re.compile(r"_backbone\.wte\.weight|_backbone\.h\.\d+\.attn\.(bias|masked_bias)")


def read_garg_config(path: Union[str, Path]) -> dict:
    """The ``model`` values (and the task, if any) of a Garg et al. ``config.yaml``.

    Returns ``{"n_dims", "n_positions", "n_embd", "n_layer", "n_head"}`` (those it
    holds) plus ``"task"`` / ``"task_kwargs"`` from its ``training`` section.
    """
    import yaml  # PyYAML (in pyproject; transformers requires it too)

    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"config file {str(path)!r} is not UTF-8 text (byte {e.start}): corrupted, or not a config.yaml") from None
    except yaml.YAMLError as e:
        raise ValueError(f"config file {str(path)!r} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict):
        raise ValueError(f"config file {str(path)!r} must be a mapping with a 'model' mapping (Garg et al.'s config.yaml), got {spec!r:.200}")
    model = spec["model"]
    family = model.get("family", "gpt2")
    if family != "gpt2":
        raise ValueError(f"model.family in {str(path)!r} must be 'gpt2' (the only family this importer reads), got {family!r}")
    out = {k: model[k] for k in CONFIG_KEYS if k in model}
    training = spec.get("training") if isinstance(spec.get("training"), dict) else {}
    out["task"] = training.get("task")
    out["task_kwargs"] = training.get("task_kwargs") or {}
    return out


def _task_from_garg(name: Any, kwargs: Any, d: int) -> Optional[Task]:
    """Our task for theirs, where one is the same distribution (x ~ N(0, I), w ~ scale * N(0, I))."""
    if not isinstance(kwargs, dict) or set(kwargs) - {"scale", "sparsity"}:
        return None
    scale = kwargs.get("scale", 1)
    try:
        if name == "linear_regression" and "sparsity" not in kwargs:
            return LinearRegression(d=d, w_std=scale)
        if name == "sparse_linear_regression":
            return SparseLinearRegression(d=d, s=kwargs.get("sparsity", 3), w_std=scale)
    except (TypeError, ValueError):  # values our task refuses (e.g. sparsity > d): record no task
        return None
    return None


def _resolve(path: Path, step: Any) -> tuple[Path, Optional[Path]]:
    """(weights file, config.yaml or None) for a run folder or a file."""
    if not path.exists():
        raise ValueError(f"path {str(path)!r} does not exist; expected a Garg et al. run folder or a .pt file")
    config = path / "config.yaml" if path.is_dir() else path.parent / "config.yaml"
    config = config if config.is_file() else None
    if not path.is_dir():
        if step is not None:
            raise ValueError(f"step applies to a run folder; path {str(path)!r} is a file, got step={step!r}")
        return path, config
    if config is None:
        raise ValueError(f"run folder {str(path)!r} has no config.yaml; pass the weights file and n_dims=..., n_positions=... instead")
    kept = sorted(int(m.group(1)) for p in path.iterdir() if (m := _KEPT.fullmatch(p.name)))
    if step is None:
        if not (path / _STATE).is_file():
            raise ValueError(f"run folder {str(path)!r} has no {_STATE}; its kept models are steps {kept} (pass step=i or step='latest')")
        return path / _STATE, config
    if step == "latest":
        if not kept:
            raise ValueError(f"step='latest' needs a model_{{i}}.pt in {str(path)!r}, found none")
        step = kept[-1]
    step = check_int("step", step, min_value=0)
    if step not in kept:
        raise ValueError(f"step={step}: {str(path)!r} has no model_{step}.pt; its kept models are steps {kept}")
    return path / f"model_{step}.pt", config


def _refusal(message: str) -> str:
    """What torch's weights-only unpickler refused, in our words (its advice to load unsafely is dropped)."""
    found = re.search(r"GLOBAL\s+([\w.]+)", message)
    if found:
        return (f"it refers to the Python object {found.group(1)}, and pickled objects other than tensors and plain "
                f"containers are never unpickled here (that could run code); re-save the checkpoint's "
                f"state dict with torch.save(model.state_dict(), path) where the code that made it runs")
    op = re.search(r"Unsupported operand\s+(\d+)", message)
    what = f" (pickle operation {op.group(1)} is not allowed)" if op else ""
    return (f"not a torch checkpoint of tensors and plain containers{what}; either not a torch checkpoint at all, "
            f"or one holding pickled objects, which are never unpickled here (that could run code)")


def _load(file: Path) -> tuple[dict[str, Tensor], Optional[int]]:
    """(model state dict, train_step or None) from a training state or a plain state dict."""
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's message advises weights_only=False: never passed on
        raise ValueError(f"{str(file)!r} is not readable as tensors and plain containers: {_refusal(str(e))}") from None
    except Exception as e:  # a truncated or foreign file: torch raises several kinds
        reason = _refusal(str(e)) if "weights_only" in str(e) else " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"{str(file)!r} is not a readable torch checkpoint: {reason}") from None
    step = None
    if isinstance(obj, dict) and "model_state_dict" in obj:
        step = obj.get("train_step")
        step = int(step) if isinstance(step, int) and not isinstance(step, bool) else None
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise ValueError(
            f"{str(file)!r} must hold a state dict (names to tensors) or a training state with 'model_state_dict', "
            f"got {type(obj).__name__}"
        )
    return dict(obj), step


def _expected_shapes(n_dims: int, n_positions: int, n_embd: int, n_layer: int) -> dict[str, tuple[int, ...]]:
    """Every tensor the importer reads, with the shape the config implies (HF Conv1D weights are [in, out])."""
    m = n_embd
    shapes = {
        "_read_in.weight": (m, n_dims), "_read_in.bias": (m,),
        "_backbone.wpe.weight": (2 * n_positions, m),
        "_backbone.ln_f.weight": (m,), "_backbone.ln_f.bias": (m,),
        "_read_out.weight": (1, m), "_read_out.bias": (1,),
    }
    for layer in range(n_layer):
        h = f"_backbone.h.{layer}."
        shapes.update({
            h + "ln_1.weight": (m,), h + "ln_1.bias": (m,), h + "ln_2.weight": (m,), h + "ln_2.bias": (m,),
            h + "attn.c_attn.weight": (m, 3 * m), h + "attn.c_attn.bias": (3 * m,),
            h + "attn.c_proj.weight": (m, m), h + "attn.c_proj.bias": (m,),
            h + "mlp.c_fc.weight": (m, 4 * m), h + "mlp.c_fc.bias": (4 * m,),
            h + "mlp.c_proj.weight": (4 * m, m), h + "mlp.c_proj.bias": (m,),
        })
    return shapes


def _check_state(state: dict[str, Tensor], shapes: dict[str, tuple[int, ...]], where: str) -> None:
    missing = [k for k in shapes if k not in state]
    if missing:
        raise ValueError(
            f"state dict of {where} lacks {missing[:4]}{'...' if len(missing) > 4 else ''}: expected a Garg et al. "
            f"TransformerModel (keys _read_in.*, _backbone.h.{{i}}.*, _read_out.*) with the config's n_layer"
        )
    extra = sorted(k for k in state if k not in shapes and not _IGNORED.fullmatch(k))
    if extra:
        raise ValueError(f"state dict of {where} has weights the config does not describe: {extra[:4]} (check n_layer)")
    for k, want in shapes.items():
        t = state[k]
        if tuple(t.shape) != want:
            raise ValueError(f"weight {k!r} in {where} has shape {tuple(t.shape)}, the config values imply {want} "
                             f"(check n_dims, n_positions, n_embd)")
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise ValueError(f"weight {k!r} in {where} must be finite floating point, got dtype {t.dtype}")
    for k, t in state.items():  # old transformers saved the causal mask: it must be one
        if k.endswith("attn.bias") and t.ndim == 4 and t.shape[-1] == t.shape[-2]:
            n = t.shape[-1]
            if not torch.equal(t.reshape(-1, n, n).bool(), torch.ones(n, n, dtype=torch.bool).tril().expand(t.reshape(-1, n, n).shape)):
                raise ValueError(f"buffer {k!r} in {where} is not a causal mask: not a GPT-2 decoder")


def garg_state_to_own(state: dict[str, Tensor], n_layer: int, n_head: int, n_positions: int) -> dict[str, Tensor]:
    """Their tensors under our names: ``read_in.*``, ``pos_emb`` and the core as ``hooked.*`` (canonical layout).

    Every core tensor except the token and position embeddings (which a model run
    from the residual stream never uses) is produced; float32 copies.
    """
    g = {k: v.detach().to(torch.float32) for k, v in state.items()}
    out = {
        "read_in.weight": g["_read_in.weight"], "read_in.bias": g["_read_in.bias"],
        "pos_emb": g["_backbone.wpe.weight"][: 2 * n_positions - 1],
        "hooked.ln_final.w": g["_backbone.ln_f.weight"], "hooked.ln_final.b": g["_backbone.ln_f.bias"],
        "hooked.unembed.W_U": g["_read_out.weight"].T, "hooked.unembed.b_U": g["_read_out.bias"],
    }
    for layer in range(n_layer):
        h, c = f"_backbone.h.{layer}.", f"hooked.blocks.{layer}."
        out.update({
            c + "ln1.w": g[h + "ln_1.weight"], c + "ln1.b": g[h + "ln_1.bias"],
            c + "ln2.w": g[h + "ln_2.weight"], c + "ln2.b": g[h + "ln_2.bias"],
            c + "attn.b_O": g[h + "attn.c_proj.bias"],
            # Conv1D stores [in, out]: x @ W + b, the layout HookedTransformer uses too
            c + "attn.W_O": rearrange(g[h + "attn.c_proj.weight"], "(h e) m -> h e m", h=n_head),
            c + "mlp.W_in": g[h + "mlp.c_fc.weight"], c + "mlp.b_in": g[h + "mlp.c_fc.bias"],
            c + "mlp.W_out": g[h + "mlp.c_proj.weight"], c + "mlp.b_out": g[h + "mlp.c_proj.bias"],
        })
        weights = g[h + "attn.c_attn.weight"].chunk(3, dim=1)  # q, k, v columns, each (head d_head)
        biases = g[h + "attn.c_attn.bias"].chunk(3)
        for name, w, b in zip("QKV", weights, biases):
            out[c + f"attn.W_{name}"] = rearrange(w, "m (h e) -> h m e", h=n_head)
            out[c + f"attn.b_{name}"] = rearrange(b, "(h e) -> h e", h=n_head)
    return {k: v.contiguous().clone() for k, v in out.items()}


def import_garg(
    path: Union[str, Path],
    *,
    step: Union[None, int, str] = None,
    n_dims: Optional[int] = None,
    n_positions: Optional[int] = None,
    n_embd: Optional[int] = None,
    n_layer: Optional[int] = None,
    n_head: Optional[int] = None,
    task: Optional[Task] = None,
) -> Any:
    """A Garg et al. checkpoint as an :class:`~icl_interp.core.model.ICLTransformer` with the same predictions.

    ``path``: a run folder (``config.yaml`` plus ``state.pt`` / ``model_{i}.pt``; see
    the module docstring for ``step``) or a ``.pt`` file (a training state or a plain
    state dict). Config values come from ``config.yaml`` (the folder's, or the one
    beside the file) and from the keyword arguments; a value given both ways must
    agree. ``task`` records the task (default: theirs from ``config.yaml`` when ours
    has the same distribution). ``model.imported_from`` says where it came from;
    pass it to ``save_model(model, out, imported_from=model.imported_from)``.
    """
    from .model import ICLTransformer, ModelConfig

    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or Path, got {type(path).__name__}")
    if task is not None and not isinstance(task, Task):
        raise TypeError(f"task must be a Task, got {type(task).__name__}")
    if step is not None and step != "latest" and (isinstance(step, bool) or not isinstance(step, int)):
        raise TypeError(f"step must be None, an int or 'latest', got {type(step).__name__} {step!r}")
    file, config_file = _resolve(Path(path), step)
    given = {"n_dims": n_dims, "n_positions": n_positions, "n_embd": n_embd, "n_layer": n_layer, "n_head": n_head}
    from_yaml = read_garg_config(config_file) if config_file is not None else {}
    values = {}
    for key in CONFIG_KEYS:
        if given[key] is not None:
            given[key] = check_int(key, given[key], min_value=1)
        if given[key] is not None and key in from_yaml and given[key] != from_yaml[key]:
            raise ValueError(f"{key}={given[key]!r} disagrees with {key}: {from_yaml[key]!r} in {str(config_file)!r}")
        value = given[key] if given[key] is not None else from_yaml.get(key)
        if value is None:
            raise ValueError(f"{key} is needed: pass {key}=... (no config.yaml beside {str(file)!r} gives it)")
        values[key] = check_int(key, value, min_value=1)
    if values["n_embd"] % values["n_head"]:
        raise ValueError(f"n_embd ({values['n_embd']}) must be divisible by n_head ({values['n_head']}), as in GPT-2")

    state, train_step = _load(file)
    _check_state(state, _expected_shapes(values["n_dims"], values["n_positions"], values["n_embd"], values["n_layer"]), repr(str(file)))
    if task is None and config_file is not None:
        task = _task_from_garg(from_yaml.get("task"), from_yaml.get("task_kwargs"), values["n_dims"])
    cfg = ModelConfig(d=values["n_dims"], n_layers=values["n_layer"], n_heads=values["n_head"], d_model=values["n_embd"],
                      max_points=values["n_positions"], act_fn="gelu_new", normalization="LN", positional="learned",
                      encoding="interleaved")
    model = ICLTransformer(cfg, task)
    own = model.own_state_dict()
    mapped = garg_state_to_own(state, values["n_layer"], values["n_head"], values["n_positions"])
    unused = {"hooked.embed.W_E", "hooked.pos_embed.W_pos"}  # the core runs from the residual stream
    assert set(own) - unused == set(mapped), sorted(set(own) ^ set(mapped))
    model.load_own_state_dict({**own, **mapped})
    model.imported_from = {
        "format": "garg2022",
        "repository": REPOSITORY,
        "file": str(file.resolve()),
        "file_sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
        "config_file": None if config_file is None else str(config_file.resolve()),
        "train_step": train_step if train_step is not None else (int(m.group(1)) if (m := _KEPT.fullmatch(file.name)) else None),
        "garg_model": values,
        "garg_task": from_yaml.get("task"),
    }
    return model
