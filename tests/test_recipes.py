"""Every recipe and the report run in --quick mode; their JSON has the keys their plots show."""

import json

import pytest

from icl_interp.checkpoint import zoo_names
from icl_interp.experiments import RECIPES, run_recipe

pytestmark = [pytest.mark.slow, pytest.mark.skipif("default" not in zoo_names(), reason="needs the shipped default model")]

KEYS = {
    "risk_curves": ["curves", "figure"],
    "head_importance": ["ablation", "gradient", "layer0_every_head_raises_error", "later_layers_top_head_share", "figure"],
    "pruning_probing": ["mask", "error_full", "error_pruned", "probe_risk_full", "probe_risk_pruned", "noise_sweep", "figure"],
    "preprocessing": ["rows", "rows_all_positions", "best_candidate", "best_gain_over_input", "figure"],
    "gd_steps": ["steps", "probe_risk_per_layer", "gd_risk", "pto_risk", "alignment", "figure"],
    "algorithm": ["settings", "figure"],  # each setting: curves, pto_choice
    "multihead": ["models", "comparisons", "figure"],
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_quick(name, tmp_path):
    from icl_interp.experiments import SOFTMAX_ZOO

    if name == "multihead" and not set(SOFTMAX_ZOO) <= set(zoo_names()):
        pytest.skip("the one-layer softmax models are not in the zoo")
    run_recipe(name, tmp_path, quick=True)
    data = json.loads((tmp_path / f"{name}.json").read_text())
    for key in KEYS[name]:
        assert key in data, key
    assert (tmp_path / data["figure"]).is_file()
    if name == "pruning_probing":
        for level in data["noise_sweep"]["levels"].values():
            assert {"error_full", "error_pruned", "noise_floor"} <= set(level)
    if name == "algorithm":
        assert all(len(st["pto_choice"]) == st["n_points"] for st in data["settings"])


def test_report_quick(tmp_path):
    from icl_interp.cli import main

    assert main(["report", "--out", str(tmp_path), "--quick"]) == 0
    text = (tmp_path / "report.md").read_text()
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["claims"]) >= 5
    for claim in report["claims"]:
        assert claim["verdict"] in ("reproduced", "not reproduced", "mixed") and claim["verdict"] in text
    for png in ("risk_curves.png", "head_importance.png", "pruning_probing.png", "preprocessing_probes.png", "gd_steps.png"):
        assert (tmp_path / png).is_file() and png in text
