"""icl_interp: train in-context-learning transformers and take them apart.

The public API. Names that need TransformerLens (the model, training, the
toolkit) load it on first use, so ``import icl_interp`` with tasks, baselines
and probes on given activations stays light.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # tasks
    "ICLBatch": "tasks", "Task": "tasks", "LinearRegression": "tasks", "SparseLinearRegression": "tasks",
    "Curriculum": "tasks", "task_from_dict": "tasks",
    # model, checkpoints, training
    "ModelConfig": "model", "ICLTransformer": "model",
    "save_model": "checkpoint", "load_model": "checkpoint", "zoo_names": "checkpoint", "use_zoo": "checkpoint",
    "TrainConfig": "training", "train": "training", "train_preset": "presets", "retrain_zoo": "presets",
    # baselines and evaluation
    "evaluate": "evaluation", "EvalResult": "evaluation",
    "OLS": "baselines", "Ridge": "baselines", "Lasso": "baselines", "GD": "baselines",
    "PreprocessThenOptimize": "baselines", "OracleOLS": "baselines", "Averaging": "baselines",
    "tune": "baselines", "best_ridge": "baselines", "best_lasso": "baselines", "best_gd": "baselines",
    "best_pto": "baselines", "prefix_predictions": "baselines", "lasso_path": "baselines",
    "Preprocessing": "preprocess", "get_preprocessing": "preprocess", "correlation": "preprocess",
    "plot_risk_curves": "plotting", "plot_head_importance": "plotting",
    # attaching a user's model
    "attach": "runner", "AttachedModel": "runner",
    # toolkit
    "mask_heads": "masking", "masked": "masking",
    "head_importance": "importance", "prune_heads": "importance",
    "patch_activations": "patching", "patched": "patching", "corrupt_batch": "patching", "PatchResult": "patching",
    "probe_layer": "probing", "probe_all_layers": "probing", "ProbeResult": "probing", "ProbeTable": "probing",
    "RidgeProbe": "probing", "collect_activations": "probing",
    "gd_alignment": "gd", "GDAlignment": "gd",
    # experiments and the report
    "run_recipe": "experiments", "write_report": "report",
}

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
