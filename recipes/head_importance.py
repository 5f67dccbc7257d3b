"""Recipe: head_importance. Usage: python recipes/head_importance.py --out DIR [--quick]  (same as: icl-interp recipe head_importance --out DIR)."""

import sys

from icl_interp.cli import main

if __name__ == "__main__":
    sys.exit(main(["recipe", "head_importance", *sys.argv[1:]]))
