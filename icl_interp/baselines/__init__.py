"""The baselines a trained model is measured against, one estimator interface (``fit(xs, ys)`` per prompt, then
``predict``): least squares, ridge, lasso, gradient descent, preprocess-then-optimize, the oracle and averaging
(:mod:`~icl_interp.baselines.estimators`); their tuning on held-out prompts (:mod:`~icl_interp.baselines.tuning`);
the preprocessing the seed paper's first layer is claimed to compute (:mod:`~icl_interp.baselines.preprocess`).
The lasso's homotopy solver is private (``_lasso``).
"""

from .._lazy import submodules
from .estimators import GD, OLS, Averaging, Estimator, Lasso, OracleOLS, PreprocessThenOptimize, Ridge, lasso_path

__all__ = ["Estimator", "OLS", "Ridge", "Lasso", "GD", "PreprocessThenOptimize", "OracleOLS", "Averaging", "lasso_path"]

__getattr__, __dir__ = submodules(__name__, __file__)
