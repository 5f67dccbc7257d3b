import importlib
import subprocess
import sys

import pytest

import icl_interp

pytestmark = pytest.mark.tl3


def test_every_public_name_resolves_to_a_function_or_class():
    # importing every submodule first must not shadow a public name (a module called like a function)
    for module in ("tasks", "model", "training", "evaluation", "baselines", "masking", "importance", "patching", "probing", "gd"):
        importlib.import_module(f"icl_interp.{module}")
    for name in icl_interp.__all__:
        value = getattr(icl_interp, name)
        assert not isinstance(value, type(sys)), f"icl_interp.{name} is a module"


def test_light_import_does_not_load_transformer_lens():
    code = (
        "import sys, icl_interp as ii; t = ii.SparseLinearRegression(d=4, s=1); "
        "from icl_interp.baselines import Lasso; import probes; "
        "b = t.sample(8, 6, seed=0); Lasso(0.1).fit(b.xs, b.ys); ii.evaluate(Lasso(0.1), t, n_points=6, n_prompts=20); "
        "print('transformer_lens' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"
