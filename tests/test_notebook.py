"""The notebook tour runs as written (executed with nbclient, transformer-lens 4.x environment)."""

from pathlib import Path

import pytest

from icl_interp.core.backend import tl_major

NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "tour.ipynb"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(tl_major() < 4, reason="the tour uses transformer-lens 4.x")]


def test_the_tour_executes_and_draws_its_figures(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "commit the tour without outputs"
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs if out.output_type == "error"]
    assert not errors
    assert images >= 5  # one figure per tool: risk curves, attention, importance, patching (and more)
