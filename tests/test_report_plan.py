"""The report at any size (issue 29): the method chosen by cost, the gradient estimate and its agreement, sections kept
and reused, --exact, progress on and off."""

import gzip
import json
from types import SimpleNamespace

import pytest
import torch

import icl_interp.analysis.report as report
import icl_interp.analysis.studies as st
from icl_interp.analysis.report_plan import (
    AGREEMENT_HEADS,
    BUDGET_S,
    MIN_PROMPTS,
    SectionStore,
    StudyBar,
    choose_plan,
    study_fwd,
    weights_digest,
)
from icl_interp.tools.masking import mask_heads
from icl_interp.tools.runner import model_norm, normalised_error, prepare

FIELD = SimpleNamespace(cfg=SimpleNamespace(n_layers=12, n_heads=8))  # the cost rule reads only the config when timed for it


def test_study_costs_at_field_size_are_the_documented_sums():
    exact, grad = study_fwd(12, 8, "exact"), study_fwd(12, 8, "gradient")
    assert exact["importance"] == 3 * (8 * 13 / 2 + 1) + 4  # three exact sweeps at the restart-at-the-layer bound + Michel's score
    assert grad["importance"] == pytest.approx(3 * (4 + AGREEMENT_HEADS * 13 / 24))
    assert sum(exact.values()) == 179 and sum(grad.values()) == pytest.approx(41)


def test_a_forward_dearer_per_prompt_in_a_large_batch_is_timed_again_and_the_plan_made_from_it(monkeypatch):
    """Planted costs: a forward costs 0.01 s a prompt in a batch of up to 128, 0.02 s beyond. Timed on 128 prompts the
    gradient plan would take 768 prompts and run over the budget at its real cost; timed again there, it takes fewer,
    which fit at the large batches' cost. With linear costs the second timing changes nothing."""
    import icl_interp.analysis.report_plan as rp

    def planted(per_prompt_large):
        calls = []

        def forward_seconds(model, n_prompts, *, probe_prompts=rp.PROBE_PROMPTS, repeats=3, max_s=5.0):
            size = min(probe_prompts, n_prompts)
            calls.append(size)
            return (0.01 if size <= rp.PROBE_PROMPTS else per_prompt_large) * n_prompts

        return calls, forward_seconds

    calls, fake = planted(0.02)
    monkeypatch.setattr(rp, "forward_seconds", fake)
    plan = choose_plan(FIELD, 2000, budget_s=510.0)
    first = rp._decide(FIELD, 2000, 510.0, False, 0.01 * 2000, 0.0)
    assert calls == [rp.PROBE_PROMPTS, first.n_prompts] and first.n_prompts > rp.PROBE_PROMPTS
    assert 0.02 * sum(rp.study_fwd(12, 8, "gradient").values()) * first.n_prompts > 510.0  # the first plan, at its real cost: over
    assert plan.method == "gradient" and plan.n_prompts < first.n_prompts
    assert plan.predicted_s == pytest.approx(0.02 * sum(rp.study_fwd(12, 8, "gradient").values()) * plan.n_prompts) and plan.predicted_s <= 510.0
    calls, fake = planted(0.01)  # linear: the same plan as from the first timing
    monkeypatch.setattr(rp, "forward_seconds", fake)
    assert choose_plan(FIELD, 2000, budget_s=510.0).n_prompts == first.n_prompts and len(calls) == 2


def test_a_model_whose_exact_studies_fit_runs_them_on_every_prompt(tiny_model):
    plan = choose_plan(tiny_model, 2000)  # timed here: a tiny model is far inside the budget
    assert (plan.method, plan.n_prompts, plan.interval_factor) == ("exact", 2000, 1.0) and plan.predicted_s < BUDGET_S
    assert "within the budget" in plan.reason


def test_over_budget_the_importance_is_estimated_on_the_prompts_that_fit():
    # one forward over 256 prompts 3 s: exact 179 x 3 = 537 s > 510 s; the estimate 41 x 3 = 123 s fits on all 256
    plan = choose_plan(FIELD, 256, forward_s=3.0)
    assert (plan.method, plan.n_prompts) == ("gradient", 256) and plan.predicted_s == pytest.approx(123)
    assert "--exact forces" in plan.reason
    # 2,000 asked for: 41 x 0.01 s per prompt, 1243 prompts fit: the grid's 1024
    plan = choose_plan(FIELD, 2000, forward_s=20.0)
    assert (plan.method, plan.n_prompts) == ("gradient", 1024) and plan.forward_s == pytest.approx(10.24)
    assert plan.interval_factor == pytest.approx((2000 / 1024) ** 0.5)
    # what the prompts do not change (the baselines) comes off the budget first: (510 - 400) / 0.41 = 268, the grid's 256
    plan = choose_plan(FIELD, 2000, forward_s=20.0, baselines_s=400.0)
    assert plan.n_prompts == 256 and plan.predicted_s == pytest.approx(400 + 0.41 * 256)
    assert plan.study_seconds(FIELD.cfg)["risk"] == pytest.approx(400 + 2 * 2.56)


def test_exact_keeps_the_sweeps_on_fewer_prompts_and_a_low_budget_says_it_runs_long():
    plan = choose_plan(FIELD, 256, forward_s=3.0, exact=True)  # 179 x 3 / 256 s per prompt: 243 prompts fit, the grid's 192
    assert (plan.method, plan.n_prompts, plan.exact_forced) == ("exact", 192, True) and "--exact" in plan.reason
    plan = choose_plan(FIELD, 256, forward_s=3.0, budget_s=1.0)
    assert (plan.method, plan.n_prompts) == ("gradient", MIN_PROMPTS) and "over the budget" in plan.reason
    with pytest.raises(ValueError, match="budget_s"):
        choose_plan(FIELD, 256, forward_s=1.0, budget_s=-1.0)
    with pytest.raises(TypeError, match="exact"):
        choose_plan(FIELD, 256, forward_s=1.0, exact="yes")


def test_the_gradient_estimate_is_the_first_order_change_and_its_agreement_is_exact_ablation(tiny_model, tiny_task):
    data = prepare(tiny_model, tiny_task.sample(64, 8, seed=5))
    est = st.importance_study(tiny_model, data, ablations=("zero", "mean"), method="gradient", sample_heads=3, sample_seed=1)
    exact = st.importance_study(tiny_model, data, ablations=("zero", "mean"), method="exact")
    assert est["method"] == "gradient" and exact["method"] == "exact"
    norm, eps = model_norm(tiny_model), 1e-3
    clean = normalised_error(data.preds, data.batch, norm, per_prompt=True).double()
    for kind in ("zero", "mean"):
        by = est["by_ablation"][kind]
        # oracle: the per-prompt derivative by a finite difference of the mask (masks interpolate towards the ablation)
        masks = torch.ones(4, 2, 2)
        for i in range(4):
            masks[i, i // 2, i % 2] = 1 - eps
        nudged = normalised_error(mask_heads(tiny_model, data, masks, ablation=kind), data.batch, norm, per_prompt=True).double()
        first_order = clean - (clean - nudged) / eps  # [head, prompt]: the clean error minus the derivative d error / d mask
        got = torch.tensor(by["per_prompt"], dtype=torch.float64)
        assert torch.allclose(got, first_order, atol=2e-3 * float(clean.abs().max()))
        a = by["agreement"]
        assert len(a["heads"]) == 3 and len({tuple(h) for h in a["heads"]}) == 3
        for (layer, head), value in zip(a["heads"], a["exact"]):  # the sampled heads' exact ablation: the exact study's numbers
            assert value == pytest.approx(exact["by_ablation"][kind]["ablation"][layer][head], abs=1e-6)
        assert -1 <= a["spearman"] <= 1
        assert a["max_abs_diff"] == pytest.approx(max(abs(e - x) for e, x in zip(a["estimate"], a["exact"])))
    # Michel's score from the same backward as the exact study's own call
    assert torch.allclose(torch.tensor(est["gradient"]), torch.tensor(exact["gradient"]), atol=1e-6)
    with pytest.raises(ValueError, match="method"):
        st.importance_study(tiny_model, data, method="guess")


def test_weights_digest_follows_the_weights(tiny_task):
    from icl_interp.core.model import ICLTransformer, ModelConfig

    cfg = ModelConfig(d=4, n_layers=1, n_heads=2, d_model=8, max_points=4)
    a, b = ICLTransformer(cfg, tiny_task), ICLTransformer(cfg, tiny_task)
    assert weights_digest(a) == weights_digest(b)
    with torch.no_grad():
        next(b.parameters())[0].view(-1)[0] += 1e-6
    assert weights_digest(a) != weights_digest(b)


def test_a_section_is_reused_only_under_its_key_and_with_its_figures(tmp_path):
    store = SectionStore(tmp_path, {"a": 1})
    calls = []
    assert store.section("s", lambda: calls.append(1) or {"x": (1, 2), "figure": "f.png"}) == {"x": [1, 2], "figure": "f.png"}
    (tmp_path / "f.png").write_bytes(b"png")
    assert SectionStore(tmp_path, {"a": 1}).section("s", lambda: calls.append(2) or {"x": 0}) == {"x": [1, 2], "figure": "f.png"}
    assert SectionStore(tmp_path, {"a": 2}).load("s") is None  # another key: computed again
    (tmp_path / "f.png").unlink()
    assert SectionStore(tmp_path, {"a": 1}).load("s") is None  # its figure gone: computed again
    (tmp_path / ".sections" / "s.json.gz").write_bytes(gzip.compress(b"{not json"))
    assert SectionStore(tmp_path, {"a": 1}).load("s") is None  # a damaged file is never trusted
    assert calls == [1] and SectionStore(tmp_path, {"a": 1}, enabled=False).load("s") is None


def test_study_bar_writes_to_stderr_only_when_enabled(capsys):
    with StudyBar("importance", 3.0, enabled=False):
        pass
    assert capsys.readouterr().err == ""
    with StudyBar("importance", 3.0):
        pass
    err = capsys.readouterr().err
    assert "importance" in err and "left" in err and "took" in err


# -- the report --------------------------------------------------------------------------------------


def _fields(folder):
    doc = json.loads((folder / "report.json").read_text())
    return {k: v for k, v in doc.items() if k not in ("seconds", "reused_sections")}


@pytest.mark.slow
def test_report_reuses_finished_sections_and_recomputes_on_a_change(tiny_model, tmp_path, monkeypatch, capsys):
    out = tmp_path / "rep"
    first = report.write_report(out, model=tiny_model, quick=True)
    assert first["plan"]["method"] == "exact" and first["plan"]["n_prompts"] == 256
    assert first["methods"]["importance"].startswith("exact single-head ablation")
    assert capsys.readouterr().err == ""  # progress off by default in the API
    assert "Methods: the exact studies on 256 prompts" in (out / "report.md").read_text()
    assert first["reused_sections"] == [] and "loaded from an earlier run" not in (out / "report.md").read_text()
    before = _fields(out)
    sections = sorted(p.name for p in (out / ".sections").iterdir())
    assert sections == sorted(f"{s}.json.gz" for s in ("plan", "risk", "importance", "attention", "pruning", "preprocessing", "gd"))

    def never(*a, **k):
        raise AssertionError("a finished section was computed again")

    with monkeypatch.context() as mp:
        for study in ("risk_study", "importance_study", "pruning_study", "preprocessing_study", "gd_study"):
            mp.setattr(st, study, never)
        mp.setattr(report, "_attention", never)
        report.write_report(out, model=tiny_model, quick=True, progress=True)
    assert "importance: reused" in capsys.readouterr().err
    assert _fields(out) == before  # the same report.json (and per-prompt file) from the stored sections
    again = json.loads((out / "report.json").read_text())["reused_sections"]
    assert sorted(again) == ["attention", "gd", "importance", "preprocessing", "pruning", "risk"]
    assert "6 of its studies loaded from an earlier run into this folder" in (out / "report.md").read_text()
    # another prompt seed: everything is computed again (and the sections now hold that run)
    calls = []
    real = st.importance_study
    monkeypatch.setattr(st, "importance_study", lambda *a, **k: calls.append(1) or real(*a, **k))
    report.write_report(out, model=tiny_model, quick=True, prompt_seed=1)
    assert calls == [1]
    # edited code: computed again (a stored section belongs to the code that computed it)
    monkeypatch.setattr(report, "code_digest", lambda: "edited")
    report.write_report(out, model=tiny_model, quick=True, prompt_seed=1)
    assert calls == [1, 1]
    # --no-reuse computes even under the same key
    report.write_report(out, model=tiny_model, quick=True, prompt_seed=1, reuse=False)
    assert calls == [1, 1, 1]


@pytest.mark.slow
def test_a_killed_report_leaves_its_finished_sections_for_the_next_run(tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "rep"

    def killed(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(st, "gd_study", killed)
        with pytest.raises(KeyboardInterrupt):
            report.write_report(out, model=tiny_model, quick=True)
    assert not (out / "report.json").exists()
    done = {p.name.split(".")[0] for p in (out / ".sections").glob("*.json.gz")}
    assert done == {"plan", "risk", "importance", "attention", "pruning", "preprocessing"}
    for name in done:  # each one whole
        assert "result" in json.loads(gzip.decompress((out / ".sections" / f"{name}.json.gz").read_bytes()))
    assert [p.name for p in (out / ".sections").iterdir() if p.name.startswith(".")] == []  # no temp file left

    def never(*a, **k):
        raise AssertionError("a finished section was computed again")

    with monkeypatch.context() as mp:
        mp.setattr(st, "importance_study", never)
        res = report.write_report(out, model=tiny_model, quick=True)
    assert "gd" in res and (out / "report.json").exists()


@pytest.mark.slow
def test_a_low_budget_estimates_importance_and_exact_forces_the_sweeps(tiny_model, tmp_path):
    est = report.write_report(tmp_path / "est", model=tiny_model, quick=True, budget_s=1e-4, reuse=False)
    assert est["plan"]["method"] == "gradient" and est["plan"]["n_prompts"] == MIN_PROMPTS
    assert est["importance"]["n_prompts"] == MIN_PROMPTS and est["methods"]["importance"].startswith("first-order estimate")
    assert all("agreement" in by for by in est["importance"]["by_ablation"].values())
    text = (tmp_path / "est" / "report.md").read_text()
    assert "Spearman" in text and "as wide" in text and {c["id"] for c in est["claims"]} >= {"layer0_all_heads", "pruning_preserves"}
    ex = report.write_report(tmp_path / "ex", model=tiny_model, quick=True, budget_s=1e-4, exact=True, reuse=False)
    assert ex["plan"]["method"] == "exact" and ex["plan"]["exact_forced"] and ex["plan"]["n_prompts"] == MIN_PROMPTS
    assert ex["methods"]["importance"].startswith("exact") and "agreement" not in ex["importance"]["by_ablation"]["zero"]
    with pytest.raises(ValueError, match="budget_s"):
        report.write_report(tmp_path / "bad", model=tiny_model, budget_s=0)


@pytest.mark.slow
def test_report_command_progress_on_and_off(tiny_model, tmp_path, capsys):
    from icl_interp.cli import main
    from icl_interp.core.checkpoint import save_model

    save_model(tiny_model, tmp_path / "m")
    assert main(["report", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "r"), "--quick", "--no-progress"]) == 0
    got = capsys.readouterr()
    assert got.err == "" and "methods (256 prompts per study): risk: exact forward" in got.out
    assert main(["report", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "r"), "--quick", "--no-reuse",
                 "--budget-minutes", "1e-6", "--exact"]) == 0
    got = capsys.readouterr()
    assert "--exact: the exact sweeps on 256 prompts" in got.err and "left" in got.err and "took" in got.err
