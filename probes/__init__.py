"""The catalogue of P-probe targets (see :mod:`probes.targets`); importable without TransformerLens."""

from .targets import *  # noqa: F403  (the public names are targets.__all__)
from .targets import __all__  # noqa: F401
