"""Recipe: multihead. Usage: python recipes/multihead.py --out DIR [--quick]  (same as: icl-interp recipe multihead --out DIR)."""

import sys

from icl_interp.cli import main

if __name__ == "__main__":
    sys.exit(main(["recipe", "multihead", *sys.argv[1:]]))
