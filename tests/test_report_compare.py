"""tests/compare_reports.py: the before/after check of report.json that refactorings rely on."""

import json

from compare_reports import compare, main

BEFORE = {"seconds": 130.7, "gd": {"gd_risk": [0.5, 0.25], "steps": [1, 2]}, "quick": False,
          "claims": [{"claim": "text", "verdict": "mixed", "number": "1.78"}]}


def test_rounding_timing_and_additions_pass():
    after = json.loads(json.dumps(BEFORE))
    after["seconds"] = 99.0                                   # timing is ignored
    after["gd"]["gd_risk"][0] = 0.5 * (1 + 1e-12)             # float rounding
    after["claims"][0]["id"] = "pruning_preserves"            # new facts are listed, not failures
    diff = compare(BEFORE, after)
    assert diff.ok and diff.added == ["/claims[0]/id"] and diff.compared == 8


def test_a_changed_number_a_changed_word_or_a_lost_key_fails(tmp_path):
    after = json.loads(json.dumps(BEFORE))
    after["gd"]["gd_risk"][1] = 0.25 * (1 + 1e-6)
    after["claims"][0]["verdict"] = "reproduced"
    del after["quick"]
    diff = compare(BEFORE, after)
    assert not diff.ok and diff.missing == ["/quick"]
    assert [m.split(":")[0] for m in diff.mismatches] == ["/gd/gd_risk[1]", "/claims[0]/verdict"]
    (tmp_path / "a.json").write_text(json.dumps(BEFORE))
    (tmp_path / "b.json").write_text(json.dumps(after))
    assert main([str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    assert main([str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0


def test_type_changes_count():
    assert not compare({"x": 1}, {"x": True}).ok and not compare({"x": [1, 2]}, {"x": [1]}).ok
    assert compare({"x": float("nan")}, {"x": float("nan")}).ok and not compare({"x": 1.0}, {"x": None}).ok
