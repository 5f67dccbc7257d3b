"""``python -m icl_interp ...`` is the ``icl-interp`` command (what torchrun launches: ``torchrun ... -m icl_interp train ...``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
