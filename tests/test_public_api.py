import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import icl_interp

pytestmark = pytest.mark.tl3
ROOT = Path(__file__).parent.parent


DOCUMENTED = ROOT / "docs" / "api" / "index.md"


def _documented_names() -> set[str]:
    """The names in the "The top level" table of the API page."""
    text = DOCUMENTED.read_text()
    table = text[text.index("## The top level"):text.index("## The layers")]
    return {name for row in table.splitlines() if row.startswith("| ") and not row.startswith("| what")
            for name in re.findall(r"`(\w+)`", row.split("|")[2])}


def test_the_top_level_is_exactly_the_documented_list():
    assert set(icl_interp.__all__) - {"__version__"} == _documented_names()
    assert 30 <= len(_documented_names()) <= 40  # a small face: the rest lives in the layers


def test_every_layer_is_reachable_from_the_top_and_loads_its_modules_on_first_use():
    import icl_interp as ii

    assert ii.analysis.studies.risk_study is importlib.import_module("icl_interp.analysis.studies").risk_study
    assert ii.baselines.tuning.best_ridge.__module__ == "icl_interp.baselines.tuning"
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        getattr(ii.tools, "nothing_here")  # noqa: B009
    with pytest.raises(AttributeError, match="no attribute 'runner'"):
        getattr(ii, "runner")  # noqa: B009  (the old flat module: one name per thing, it lives in ii.tools)


def test_every_public_name_resolves_to_a_function_or_class():
    # importing every layer's modules first must not shadow a public name (a module called like a function)
    for module in ("core.tasks", "core.model", "training.loop", "tools.evaluation", "baselines", "tools.masking",
                   "tools.importance", "tools.patching", "tools.probing", "tools.gd_alignment"):
        importlib.import_module(f"icl_interp.{module}")
    for name in icl_interp.__all__:
        value = getattr(icl_interp, name)
        assert not isinstance(value, type(sys)), f"icl_interp.{name} is a module"


def test_light_import_does_not_load_transformer_lens():
    code = (
        "import sys, icl_interp as ii; t = ii.SparseLinearRegression(d=4, s=1); "
        "from icl_interp.baselines.estimators import Lasso; import probes; "
        "b = t.sample(8, 6, seed=0); Lasso(0.1).fit(b.xs, b.ys); ii.evaluate(Lasso(0.1), t, n_points=6, n_prompts=20); "
        "print('transformer_lens' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"
