"""Recipe: risk_curves. Usage: python recipes/risk_curves.py --out DIR [--quick]  (same as: icl-interp recipe risk_curves --out DIR)."""

import sys

from icl_interp.cli import main

if __name__ == "__main__":
    sys.exit(main(["recipe", "risk_curves", *sys.argv[1:]]))
