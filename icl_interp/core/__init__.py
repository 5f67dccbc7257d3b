"""The ground floor: tasks, the model and its fast paths, checkpoints, the zoo's files, argument checks.

Nothing here imports the tools, training or analysis layers (``tests/test_structure.py`` keeps it so).
"""

from .._lazy import submodules

__getattr__, __dir__ = submodules(__name__, __file__)
