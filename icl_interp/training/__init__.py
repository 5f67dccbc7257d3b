"""Training: the loop (:mod:`~icl_interp.training.loop`), one optimisation step, resumable state, data parallelism,
run tracking, the presets that name the zoo's recipes, and sweeps over presets x seeds on a cluster.
"""

from .._lazy import submodules

__getattr__, __dir__ = submodules(__name__, __file__)
