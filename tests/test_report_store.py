"""report.json without the per-prompt numbers, which go to a gzipped file beside it; load_report puts them back."""

import json

import pytest

from icl_interp.analysis.report import PER_PROMPT_KEYS, _save, load_report

RESULTS = {"model": "m", "importance": {"clean_error": 0.5, "per_prompt": {"clean": [0.4, 0.6]}, "by_ablation": {
    "zero": {"ablation": [[0.1]], "per_prompt": [[0.5, 0.7]]}}},
    "multihead": {"comparisons": [{"p": 8, "per_prompt_c_multi": [1.0, 2.0]}, {"p": 16}]},
    "claims": [{"id": "a", "verdict": "undecided", "interval": [0.1, 0.2]}]}


def test_per_prompt_numbers_leave_report_json_and_come_back(tmp_path):
    _save(RESULTS, tmp_path)
    slim = json.loads((tmp_path / "report.json").read_text())
    assert "per_prompt" not in slim["importance"] and "per_prompt" not in slim["importance"]["by_ablation"]["zero"]
    assert slim["multihead"]["comparisons"] == [{"p": 8}, {"p": 16}] and slim["claims"] == RESULTS["claims"]
    assert load_report(tmp_path) == RESULTS and {"per_prompt", "per_prompt_c_multi"} <= PER_PROMPT_KEYS
    first = slim["per_prompt_file"]
    _save({**RESULTS, "importance": {**RESULTS["importance"], "per_prompt": {"clean": [0.3, 0.6]}}}, tmp_path)
    assert [p.name for p in tmp_path.glob("per_prompt-*.json.gz")] != [first]      # the old file is gone, the new one named
    assert load_report(tmp_path)["importance"]["per_prompt"]["clean"] == [0.3, 0.6]


def test_load_report_needs_a_report_folder(tmp_path):
    with pytest.raises(ValueError, match="report.json"):
        load_report(tmp_path)
