"""The mechanism over training: the dynamics study on a tiny run's snapshots, and its summary on planted histories."""

import pytest

import icl_interp as ii
from icl_interp.analysis import claims as cl
from icl_interp.analysis.studies.dynamics import CLAIMS, _summary

pytestmark = pytest.mark.tl3


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    ii.train_preset("tiny", out, overrides={"steps": 40, "keep_log": 3, "progress": False})
    return out


def test_the_study_decides_every_snapshot_like_the_report(tiny_run):
    history = ii.analysis.studies.load_history(tiny_run)
    assert [s for s, _ in history] == [1, 6, 40]
    res = ii.analysis.studies.dynamics_study(history, n_prompts=64, error_prompts=128)
    assert [r["step"] for r in res["rows"]] == [1, 6, 40]
    last = res["rows"][-1]
    again = {c.id: c for c in cl.decide(ii.analysis.studies.single_model_studies(history[-1][1], n_prompts=64))}
    assert {i: v["verdict"] for i, v in last["claims"].items()} == {i: again[i].verdict for i in last["claims"]}
    err = float(ii.evaluate(history[-1][1], history[-1][1].task, n_points=8, n_prompts=128, seed=1).error[-1])
    assert last["error_last"] == pytest.approx(err)
    assert last["over_ridge"] == pytest.approx(err / res["baselines_at_largest_n"]["ridge"])
    assert set(last["panels"]) <= set(CLAIMS)
    fig = ii.analysis.study_plots.plot_dynamics_study(res)
    assert len([ax for ax in fig.axes if ax.get_title()]) == 1 + len(res["panels"])


def test_load_history_checks_its_source(tmp_path, tiny_run):
    with pytest.raises(ValueError, match="snapshots"):
        ii.analysis.studies.load_history(tmp_path)
    with pytest.raises(ValueError, match="history"):
        ii.analysis.studies.dynamics_study([])
    history = ii.analysis.studies.load_history(tiny_run)
    with pytest.raises(ValueError, match="step order"):
        ii.analysis.studies.dynamics_study(list(reversed(history)))
    assert [s for s, _ in ii.analysis.studies.load_history(tiny_run, every=2)] == [1, 40]  # the last one is always kept


def _row(step, over_ridge, reproduced):
    return {"step": step, "over_ridge": over_ridge,
            "claims": {i: {"verdict": "reproduced" if i in reproduced else "not reproduced"} for i in CLAIMS}}


def test_summary_places_each_claim_against_the_plateau_exit():
    rows = [_row(10, 1.2, {"later_single_head"}), _row(100, 1.0, {"later_single_head", "pruning_preserves"}),
            _row(1000, 0.88, {"later_single_head", "pruning_preserves", "layer0_all_heads"}),
            _row(4000, 0.85, {"later_single_head", "layer0_all_heads"})]
    s = _summary(rows)
    assert s["leaves_ridge_plateau_at"] == 1000  # 0.88 * 1.1 < 1: clearly below ridge; 1.0 is not
    assert s["claims"]["later_single_head"] == {"reproduced_from": 10, "relative_to_plateau_exit": "before"}
    assert s["claims"]["layer0_all_heads"] == {"reproduced_from": 1000, "relative_to_plateau_exit": "at or after"}
    assert s["claims"]["pruning_preserves"]["relative_to_plateau_exit"] == "never"  # lost again at the end
    flat = _summary([_row(10, 1.0, {"later_single_head"}), _row(20, 0.95, {"later_single_head"})])
    assert flat["leaves_ridge_plateau_at"] is None
    assert flat["claims"]["later_single_head"]["relative_to_plateau_exit"] == "without leaving the plateau"


def test_a_second_stage_continues_the_first_ones_history(tiny_run, tmp_path):
    """A warm-started stage (init_from the first stage's model) counts its snapshots on from the first stage's last step."""
    task = ii.load_model(tiny_run / "model").task
    model = ii.ICLTransformer(ii.load_model(tiny_run / "model").cfg, task)
    ii.train(model, task, ii.TrainConfig(steps=10, batch_size=16, keep_every=5, init_from=str(tiny_run / "model"),
                                         progress=False, eval_every=100), out_dir=tmp_path)
    history = ii.analysis.studies.load_history(tmp_path)
    assert [s for s, _ in history] == [1, 6, 40, 45, 50]
