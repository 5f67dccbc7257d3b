"""icl_interp: train in-context-learning transformers and take them apart.

The public API. The imports under ``TYPE_CHECKING`` are the one list of public
names: IDEs and type checkers read them, and at run time each name is imported on
first use (``__getattr__``), so ``import icl_interp`` with tasks, baselines and
probes on given activations stays light (TransformerLens is not loaded).
"""

from __future__ import annotations

import ast
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    # tasks
    from .tasks import ICLBatch, Task, LinearRegression, SparseLinearRegression, Curriculum, task_from_dict
    # the model, checkpoints, training
    from .model import ModelConfig, ICLTransformer
    from .checkpoint import save_model, load_model, zoo_names, use_zoo
    from .garg import import_garg
    # linear attention, and hand-built transformers that run GD / preprocess-then-optimize
    from .attention import linear_attention
    from .constructions import gd_model, pto_model, build_construction
    from .training import TrainConfig, train, snapshots
    from .devices import resolve_device
    from .presets import preset_model, train_preset, retrain_zoo
    # baselines and evaluation
    from .evaluation import evaluate, EvalResult, ratio_interval
    from .baselines import OLS, Ridge, Lasso, GD, PreprocessThenOptimize, OracleOLS, Averaging, lasso_path
    from .tuning import Tuned, tune, best_ridge, best_lasso, best_gd, best_pto, prefix_predictions
    from .preprocess import Preprocessing, get_preprocessing, correlation
    from .plotting import plot_risk_curves, plot_head_importance
    # the model the tools accept, a user's model, the shared clean run
    from .protocol import ToolModel, Layout, AttachedModel
    from .runner import attach, CleanRun, prepare, check_model
    # toolkit
    from .masking import mask_heads, masked
    from .importance import head_importance, prune_heads
    from .patching import patch_activations, patched, corrupt_batch, PatchResult
    from .probing import probe_layer, probe_all_layers, ProbeResult, ProbeTable, collect_activations
    from .ridge_probe import RidgeProbe
    from .gd import gd_alignment, GDAlignment
    from .learning_coefficient import llc, llc_of_loss, LLCResult
    from .attention_view import AttentionProfile, attention_profile, plot_attention, attention_html
    # studies, their figures, claims, the zoo index, recipes and the report
    from .studies import risk_curves, head_count_summary, importance_study, pruning_study, noise_pruning_study
    from .studies import preprocessing_study, gd_study, algorithm_study, multihead_study, settings_study, prior_study, save_json
    from .studies import single_model_studies, dynamics_study, load_history
    from .study_plots import save_figure, plot_risk_study, plot_importance_study, plot_pruning_study
    from .study_plots import plot_noise_pruning_study, plot_preprocessing_study, plot_gd_study, plot_algorithm_study
    from .study_plots import plot_multihead_study, plot_settings_study, plot_dynamics_study
    from .claims import Claim
    from .zoo import siblings, Siblings
    from .experiments import run_recipe, recipe_arguments
    from .report import write_report


def _exports() -> dict[str, str]:
    """``{name: module}`` read from the ``TYPE_CHECKING`` imports above (one list, no second table)."""
    tree = ast.parse(Path(__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    return {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}


_EXPORTS = _exports()
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'icl_interp' has no attribute {name!r}")
    value = getattr(import_module(f"icl_interp.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return __all__
