"""Compare two ``report.json`` files: every number of the first equal in the second to ~1e-9 relative.

    .venv/bin/python tests/compare_reports.py BEFORE/report.json AFTER/report.json [--rel 1e-9]

Used to check that a refactoring leaves ``icl-interp report``'s numbers unchanged.
Timing fields (``seconds``, ``plan``) are ignored; strings and booleans must match exactly;
lists are compared element by element, dicts key by key. Keys only in AFTER are
listed as additions (new facts are allowed); a key of BEFORE missing from AFTER, or
any differing value, is a failure (exit status 1). The last line sums it up.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: timing fields: ``seconds``, and ``plan`` (its measured forward time and the prediction from it; what the plan chose is
#: in ``methods``, which is compared)
TIMING = frozenset({"seconds", "plan"})


@dataclass
class Diff:
    """What :func:`compare` found: paths of differing values, of keys missing from / added in ``after``."""

    compared: int = 0
    mismatches: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    added: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.missing


def _same_number(a: float, b: float, rel: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-300) or a == b


def compare(before: Any, after: Any, rel: float = 1e-9, path: str = "", diff: Diff | None = None) -> Diff:
    """Walk ``before`` and ``after`` (parsed JSON) together; numbers within ``rel`` relative count as equal."""
    diff = Diff() if diff is None else diff
    if isinstance(before, dict) and isinstance(after, dict):
        for key in before:
            sub = f"{path}/{key}"
            if key in TIMING:
                continue
            if key not in after:
                diff.missing.append(sub)
            else:
                compare(before[key], after[key], rel, sub, diff)
        diff.added += [f"{path}/{key}" for key in after if key not in before]
    elif isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            diff.mismatches.append(f"{path}: {len(before)} items vs {len(after)}")
        for i, (a, b) in enumerate(zip(before, after)):
            compare(a, b, rel, f"{path}[{i}]", diff)
    elif isinstance(before, bool) or isinstance(after, bool) or not isinstance(before, (int, float)) or not isinstance(after, (int, float)):
        diff.compared += 1
        if before != after or type(before) is not type(after):
            diff.mismatches.append(f"{path}: {before!r} vs {after!r}")
    else:
        diff.compared += 1
        if not _same_number(float(before), float(after), rel):
            diff.mismatches.append(f"{path}: {before!r} vs {after!r} (relative {abs(before - after) / max(abs(before), 1e-300):.2e})")
    return diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rel", type=float, default=1e-9, help="relative tolerance for numbers (default 1e-9)")
    args = parser.parse_args(argv)
    diff = compare(json.loads(args.before.read_text()), json.loads(args.after.read_text()), args.rel)
    for label, items in (("differs", diff.mismatches), ("missing in after", diff.missing), ("only in after", diff.added)):
        for item in items:
            print(f"{label}: {item}")
    print(f"{diff.compared} values compared: {len(diff.mismatches)} differ, {len(diff.missing)} keys missing in after, "
          f"{len(diff.added)} keys added; {'SAME' if diff.ok else 'DIFFERENT'}")
    return 0 if diff.ok else 1


if __name__ == "__main__":
    sys.exit(main())
