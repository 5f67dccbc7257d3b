"""The science on top of the tools: studies (numbers), claims (verdicts on intervals), figures, the report, and
the recipes by name.
"""

from .._lazy import submodules

__getattr__, __dir__ = submodules(__name__, __file__)
