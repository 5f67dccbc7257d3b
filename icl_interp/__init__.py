"""icl_interp: train in-context-learning transformers and take them apart.

The public face: the names a researcher types (tasks, the model, load/save, train,
the tools, the report). The imports under ``TYPE_CHECKING`` are the one list of them:
IDEs and type checkers read it, and at run time each name is imported on first use
(``__getattr__``), so ``import icl_interp`` stays light (TransformerLens is not loaded).
The docs' API page lists the same names (a test keeps them equal).

Everything else lives in the layers, each a subpackage loaded on first use:
:mod:`~icl_interp.core` (tasks, model, checkpoints), :mod:`~icl_interp.baselines`,
:mod:`~icl_interp.tools`, :mod:`~icl_interp.training`, :mod:`~icl_interp.zoo` and
:mod:`~icl_interp.analysis` (studies, claims, figures, the report).
"""

from __future__ import annotations

import ast
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._lazy import submodules

__version__ = "0.1.0"

if TYPE_CHECKING:
    # tasks and the model
    from .core.tasks import ICLBatch, Task, LinearRegression, SparseLinearRegression, Curriculum
    from .core.model import ModelConfig, ICLTransformer
    # saved models: folders, the zoo, Garg et al.'s checkpoints
    from .core.checkpoint import save_model, load_model, zoo_names
    from .core.garg import import_garg
    # training
    from .training.loop import TrainConfig, train, snapshots
    from .training.presets import preset_model, train_preset
    # the tools: a user's model, the shared clean run, then one function per question
    from .tools.runner import attach, prepare, CleanRun
    from .tools.masking import mask_heads, masked
    from .tools.importance import head_importance, prune_heads
    from .tools.patching import patch_activations, patched, corrupt_batch
    from .tools.probing import probe_layer, probe_all_layers
    from .tools.gd_alignment import gd_alignment
    from .tools.attention_view import attention_profile, plot_attention
    from .tools.learning_coefficient import llc
    from .tools.evaluation import evaluate
    # the report
    from .analysis.report import write_report, load_report

def _exports() -> dict[str, str]:
    """``{name: module}`` read from the ``TYPE_CHECKING`` imports above (one list, no second table)."""
    tree = ast.parse(Path(__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    return {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}


_EXPORTS = _exports()
__all__ = sorted(_EXPORTS) + ["__version__"]


_layers, _ = submodules(__name__, __file__)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        return _layers(name)  # a layer (icl_interp.tools ...), or an AttributeError
    value = getattr(import_module(f"icl_interp.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return __all__
