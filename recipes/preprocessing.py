"""Recipe: preprocessing. Usage: python recipes/preprocessing.py --out DIR [--quick]  (same as: icl-interp recipe preprocessing --out DIR)."""

import sys

from icl_interp.cli import main

if __name__ == "__main__":
    sys.exit(main(["recipe", "preprocessing", *sys.argv[1:]]))
