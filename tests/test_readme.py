"""The README's Python examples run as written (transformer-lens 4.x environment)."""

import re
from pathlib import Path

import pytest

from icl_interp.backend import tl_major

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(tl_major() < 4, reason="the examples use transformer-lens 4.x")]


def test_readme_has_an_example_per_section():
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code):
    import matplotlib

    matplotlib.use("Agg")
    exec(compile(code, str(README), "exec"), {})
