"""Import cost: the light path of icl_interp (tasks, baselines) vs ``import transformer_lens``, each in a fresh process.

The light path is ``import icl_interp``, sampling a task and importing the baselines;
it must not import TransformerLens (checked: the child process exits non-zero if
``transformer_lens`` is in ``sys.modules``). Wall time of the whole child process
(interpreter start included), median of the repeats; both children get OMP_NUM_THREADS=1.
A bare ``python -c pass`` and ``import torch`` (which tasks need) are timed too, as floors.

    .venv/bin/python benchmarks/import_cost.py [--full]   # 3 repeats (--full: 7)
"""

import os
import subprocess
import sys
import time

import _common as common

LIGHT = (
    "import sys, icl_interp\n"
    "batch = icl_interp.SparseLinearRegression(d=8, s=2, noise_std=0.5).sample(64, 16, seed=0)\n"
    "from icl_interp.baselines.estimators import Lasso\n"
    "Lasso(0.1).fit(batch.xs, batch.ys)\n"
    "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('transformer_lens', 'transformers'))\n"
    "sys.exit(f'the light path imported {heavy[:5]}' if heavy else 0)\n"
)
HEAVY = "import transformer_lens"


def run(code: str) -> float:
    """Wall seconds of a fresh ``python -c code``; raises if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=common.ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True)  # fmt: skip
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise common.Disagreement(f"child process failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    common.header("import_cost")
    repeats = args.repeats or (7 if args.full else 3)
    codes = {"bare": "pass", "torch": "import torch", "light": LIGHT, "tl": HEAVY}
    times, _ = common.compare({k: (lambda code=code: run(code)) for k, code in codes.items()}, repeats, warmup=1)
    bare, torch_s, light, tl = (times[k].wall for k in codes)
    print("agree: the light path did not import transformer_lens or transformers")
    print(
        f"fresh process, median of {repeats}: python -c pass {bare:.2f} s; import torch {torch_s:.2f} s; "
        f"icl_interp light path (import, sample, Lasso) {light:.2f} s (torch + {light - torch_s:.2f} s); "
        f"import transformer_lens {tl:.2f} s (torch + {tl - torch_s:.2f} s)"
    )
    print(f"RATIO import_cost {tl / light:.2f}x (import transformer_lens {tl:.3g} s / ours {light:.3g} s, wall time)")


if __name__ == "__main__":
    main()
