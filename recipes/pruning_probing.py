"""Recipe: pruning_probing. Usage: python recipes/pruning_probing.py --out DIR [--quick]  (same as: icl-interp recipe pruning_probing --out DIR)."""

import sys

from icl_interp.cli import main

if __name__ == "__main__":
    sys.exit(main(["recipe", "pruning_probing", *sys.argv[1:]]))
