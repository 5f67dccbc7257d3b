"""The toolkit: every tool enters through :mod:`~icl_interp.tools.runner` (one validated clean run, hooks scoped)
and observes the model through TransformerLens hook points: masking, importance, patching, probing, attention views,
GD alignment, the learning coefficient, and evaluation against the baselines.
"""

from .._lazy import submodules

__getattr__, __dir__ = submodules(__name__, __file__)
