"""The second seed's other settings: the prior probe on planted predictors, the settings study, the zoo's settings role."""

import pytest
import torch

import icl_interp as ii
from icl_interp.analysis.studies import fit_inverse_d, prior_study, settings_study
from icl_interp.core.checkpoint import zoo_names
from icl_interp.core.tasks import task_from_dict
from icl_interp.training.presets import get_preset

pytestmark = pytest.mark.tl3

THETA0 = [1.0, -1.0, 1.0, -1.0]
STRONG = ii.LinearRegression(d=4, noise_std=0.1, w_mean=THETA0, w_std=0.2)


def _knows_theta0(xs, ys):
    """Predicts theta_0 . x_q, ignoring the context: a predictor that has learned the prior and nothing else."""
    return xs[:, -1] @ torch.tensor(THETA0)


def _zero(xs, ys):
    return torch.zeros(len(xs))


def test_prior_study_reads_theta0_off_planted_predictors():
    res = prior_study({"knows": _knows_theta0, "zero": _zero}, STRONG, n_prompts=4000)
    rows = res["rows"]
    assert res["D"] == [1, 2, 3, 4] and res["theta_0"] == THETA0
    assert max(rows["knows"]["theta0_distance"]) < 1e-6 and rows["zero"]["theta0_distance"] == [1.0] * 4
    assert rows["knows"]["theta0_distance"] == pytest.approx(rows["theta_0 . x_q"]["theta0_distance"], abs=1e-6)
    # errors: theta_0 . x_q leaves w - theta_0 and the noise: (d sigma^2 + tau^2) / d = 0.0425; 0 leaves all of y: 1.0425
    assert rows["knows"]["error"][0] == pytest.approx(0.0425, rel=0.1) and rows["zero"]["error"][0] == pytest.approx(1.0425, rel=0.1)
    # the Bayes posterior mean knows theta_0 (mean function theta_0, error below theta_0 alone); a ridge towards 0 does not:
    # from one example in d = 4 dimensions its mean function is about theta_0 / d, at distance 1 - 1/d = 0.75
    bayes, ridge = rows["Bayes (knows theta_0)"], rows["no-prior ridge"]
    assert max(bayes["theta0_distance"]) < 0.05 and all(b < k for b, k in zip(bayes["error"], rows["knows"]["error"]))
    assert 0.68 < ridge["theta0_distance"][0] < 0.82 and ridge["theta0_distance"][3] < ridge["theta0_distance"][0]
    assert ridge["error"][0] > 5 * bayes["error"][0]
    draws = res["theta0_distance_draws"]                            # paired bootstrap draws at D = 1 (issue 26)
    assert len(draws["no-prior ridge"]) == ii.analysis.claims.N_BOOT and max(draws["knows"]) < 1e-5 and set(draws["zero"]) == {1.0}
    low, high = ii.analysis.claims._core.percentiles(draws["no-prior ridge"])
    assert low < ridge["theta0_distance"][0] < high < low + 0.1


def test_prior_study_rejects_a_task_without_a_prior_and_bad_arguments():
    with pytest.raises(ValueError, match="task must be a Task with a prior mean"):
        prior_study({"zero": _zero}, ii.LinearRegression(d=4))
    with pytest.raises(ValueError, match="models must be a non-empty dict"):
        prior_study({}, STRONG)
    with pytest.raises(ValueError, match="ds\\[i\\] must be >= 1"):
        prior_study({"zero": _zero}, STRONG, ds=[0])


def _softmax(task, h, seed=0):
    cfg = ii.ModelConfig(d=4, n_layers=1, n_heads=h, d_model=16, attn_only=True, normalization=None, positional="none",
                         encoding="concatenated", max_points=10, seed=seed)
    return ii.ICLTransformer(cfg, task)


def test_settings_study_runs_multihead_study_per_setting_and_the_prior_probe_where_there_is_a_prior(tmp_path):
    noisy = ii.LinearRegression(d=4, noise_std=1.0)
    settings = {"noisy": {"n1": _softmax(noisy, 1), "n4": _softmax(noisy, 4)},
                "prior-strong": {"s1": _softmax(STRONG, 1), "s4": _softmax(STRONG, 4)}}
    res = settings_study(settings, d_min=2, quick=True, out=tmp_path)
    assert list(res["settings"]) == ["noisy", "prior-strong"] and (tmp_path / res["figure"]).is_file()
    again = ii.analysis.studies.multihead_study(settings["noisy"], noisy, d_min=2, quick=True)
    got = res["settings"]["noisy"]
    assert got.keys() == again.keys() and "prior" not in got                      # the same study, per setting
    for name in ("n1", "n4"):
        assert got["models"][name]["excess_risk"] == pytest.approx(again["models"][name]["excess_risk"], rel=1e-9)
    (cmp,) = res["settings"]["prior-strong"]["comparisons"]
    prior = res["settings"]["prior-strong"]["prior"]
    assert cmp["prior"]["distance_multi"] == prior["rows"]["s4"]["theta0_distance"][0]
    assert cmp["prior"]["error_single"] == prior["rows"]["s1"]["error"][0] and cmp["prior"]["D"] == 1
    assert [c.id for c in ii.analysis.claims.seed2_settings(res)] == ["seed2_noisy", "seed2_prior_strong"]


def test_settings_study_needs_one_task_per_setting():
    with pytest.raises(ValueError, match="share one task"):
        settings_study({"mixed": {"a": _softmax(STRONG, 1), "b": _softmax(ii.LinearRegression(d=4), 4)}})
    with pytest.raises(ValueError, match="settings must be a non-empty dict"):
        settings_study({})
    with pytest.raises(ValueError, match="settings\\['noisy'\\] must be a non-empty dict"):
        settings_study({"noisy": []})


@pytest.mark.skipif("softmax-prior-weak-p16-h4" not in zoo_names(), reason="the settings' models are not in the zoo yet")
def test_the_zoo_declares_every_setting_with_all_its_models():
    got = dict(ii.zoo.siblings("default").second_seed_settings)
    assert list(got) == ["noisy", "correlated", "local", "prior-strong", "prior-weak"]
    for setting, names in got.items():
        assert len(names) == (2 if setting.startswith("prior") else 4)
        for name in names:
            assert name.startswith(f"softmax-{setting}-p") and task_from_dict(get_preset(name)["task"]).to_dict() == ii.load_model(name).task.to_dict()


def test_a_setting_with_a_missing_model_is_left_out(tmp_path):
    for name in ("default", "softmax-noisy-p16-h1"):
        if name not in zoo_names():
            pytest.skip(f"{name} is not in the zoo")
        ii.save_model(ii.load_model(name), tmp_path / name)
    with ii.core.checkpoint.use_zoo(tmp_path):
        assert ii.zoo.siblings("default").second_seed_settings == ()


def test_each_prompts_share_of_c_averages_to_the_fitted_c():
    """multihead_study's per-prompt c (issue 26): c is linear in the losses, so the prompts' shares average to the fit's c."""
    from icl_interp.analysis.studies.second_seed import c_weights

    ds, losses = [8, 10, 12, 16], [0.5, 0.42, 0.37, 0.3]
    c, _ = fit_inverse_d(ds, losses)
    assert float(c_weights(ds) @ torch.tensor(losses, dtype=torch.float64)) == pytest.approx(c, rel=1e-9)
    assert float(c_weights(ds) @ torch.tensor([l + 0.1 for l in losses], dtype=torch.float64)) == pytest.approx(c, rel=1e-9)  # a floor moves e only
