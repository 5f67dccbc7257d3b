"""The seed papers' experiments as study functions; the recipes and the report call the same ones.

Each study takes models (or none) and prompts, computes every number it plots and
every number a claim is decided on (:mod:`icl_interp.analysis.claims`), and returns them as a
JSON-ready dict; with ``out`` it also saves its figure there
(:mod:`icl_interp.analysis.study_plots`). Nothing here trains a model or states a verdict.

In the order the report runs them: :mod:`.risk` (risk curves against the tuned
baselines), :mod:`.heads` (importance, pruning, the noise sweep), :mod:`.mechanism`
(layer 0 as preprocessing, later layers as GD steps), :mod:`.algorithm` (PtO and the
baselines with no model), :mod:`.second_seed` (single- vs multi-head softmax attention, also in
the seed's other settings).
"""

from ._common import layer_risk, save_json
from .algorithm import PTO_CANDIDATES, algorithm_study
from .dynamics import dynamics_study, llc_history, llc_stages, load_history
from .heads import importance_study, noise_pruning_study, pruning_study
from .mechanism import OTHER_TARGETS, PREPROCESSING_TARGETS, gd_distance, gd_study, preprocessing_study
from .risk import baseline_suite, head_count_summary, risk_study
from .second_seed import fit_inverse_d, multihead_study, prior_study, settings_study
from .single import single_model_studies

__all__ = [
    "risk_study", "baseline_suite", "head_count_summary", "importance_study", "pruning_study", "noise_pruning_study",
    "preprocessing_study", "gd_study", "gd_distance", "algorithm_study", "multihead_study", "settings_study", "prior_study", "fit_inverse_d",
    "single_model_studies", "dynamics_study", "load_history", "llc_history", "llc_stages", "layer_risk", "save_json", "PTO_CANDIDATES", "PREPROCESSING_TARGETS", "OTHER_TARGETS",
]
