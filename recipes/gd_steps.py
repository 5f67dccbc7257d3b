"""Recipe: gd_steps. Usage: python recipes/gd_steps.py --out DIR [--quick]  (same as: icl-interp recipe gd_steps --out DIR)."""

import sys

from icl_interp.cli import main

if __name__ == "__main__":
    sys.exit(main(["recipe", "gd_steps", *sys.argv[1:]]))
