"""Recipe: algorithm. Usage: python recipes/algorithm.py --out DIR [--quick]  (same as: icl-interp recipe algorithm --out DIR)."""

import sys

from icl_interp.cli import main

if __name__ == "__main__":
    sys.exit(main(["recipe", "algorithm", *sys.argv[1:]]))
