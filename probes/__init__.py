"""The catalogue of P-probe targets (see :mod:`probes.targets`); importable without TransformerLens."""

from .targets import (
    GD_STEPS,
    LASSO_ALPHA,
    RIDGE_ALPHA,
    Target,
    context,
    default_lr,
    estimator_prediction,
    gd_prediction,
    get,
    list_targets,
    names,
    register,
    resolve,
    unregister,
)

__all__ = [
    "Target",
    "register",
    "unregister",
    "get",
    "names",
    "list_targets",
    "resolve",
    "gd_prediction",
    "estimator_prediction",
    "default_lr",
    "context",
    "RIDGE_ALPHA",
    "LASSO_ALPHA",
    "GD_STEPS",
]
