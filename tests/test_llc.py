"""The local learning coefficient: known truth on least squares (k / 2, lower under planted degeneracy), the
diagnostics, seeding, the exact training loss and the curriculum stage of a snapshot."""

import builtins
import json
import sys
from pathlib import Path

import pytest
import torch

import icl_interp as ii
from icl_interp.tools import learning_coefficient as L
from icl_interp.training.step import LossModule

pytestmark = pytest.mark.tl3

# SGLD settings for least squares (Hessian 2 I, n beta = 492): localization small against n beta * 2, so the
# tempered posterior is the plain one and the LLC is k / 2; lr 1e-4 keeps the discretisation bias at a few percent
LS = {"lr": 1e-4, "localization": 1.0}


def _least_squares(k, *, n=4096, seed=0, features=None, weights=lambda m: m["w"], start=None, noise=0.1):
    """A least-squares model at its minimum: ``m`` (a ParameterDict), the per-example loss, n."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features or k, generator=g)
    y = x @ torch.randn(features or k, generator=g) + noise * torch.randn(n, generator=g)
    w = torch.linalg.lstsq(x, y.unsqueeze(-1)).solution.squeeze(-1)
    m = torch.nn.ParameterDict(start(w) if start else {"w": torch.nn.Parameter(w)})
    return m, (lambda m, i: (x[i] @ weights(m) - y[i]) ** 2), n


@pytest.fixture(scope="module")
def devinterp():
    return pytest.importorskip("devinterp", reason="the LLC needs the optional extra: pip install 'icl-interp[devinterp]'")


def _within(res, truth, rel=0.12):
    """An estimate agrees with the truth within three standard errors over chains plus ``rel`` (SGLD's bias)."""
    return abs(res.llc - truth) <= 3 * res.se + rel * truth


def test_least_squares_gives_half_the_parameter_count(devinterp):
    ks = [2, 4, 8, 16]
    res = [L.llc_of_loss(*_least_squares(k), **LS) for k in ks]
    for k, r in zip(ks, res):
        assert _within(r, k / 2), (k, r.llc, r.se)
        assert r.converged and r.near_minimum
    # the slope of the LLC over k, weighted by the chains' spread: theory's 1/2
    w = [1 / r.se**2 for r in res]
    slope = sum(wi * k * r.llc for wi, k, r in zip(w, ks, res)) / sum(wi * k * k for wi, k in zip(w, ks))
    assert slope == pytest.approx(0.5, abs=0.06)


def test_planted_degeneracy_lowers_the_llc(devinterp):
    """2k parameters either way: 2k independent weights (LLC k) against w = a + b on k features (LLC k / 2)."""
    k = 6
    full = L.llc_of_loss(*_least_squares(2 * k), **LS)
    twin = L.llc_of_loss(*_least_squares(k, weights=lambda m: m["a"] + m["b"],
                                         start=lambda w: {"a": torch.nn.Parameter(w / 2), "b": torch.nn.Parameter(w / 2)}),
                         **LS)
    assert sum(p.numel() for p in _least_squares(k, start=lambda w: {"a": torch.nn.Parameter(w / 2),
                                                                   "b": torch.nn.Parameter(w / 2)})[0].parameters()) == 2 * k
    assert _within(full, k) and _within(twin, k / 2), (full.llc, full.se, twin.llc, twin.se)
    assert twin.llc + 3 * twin.se < full.llc - 3 * full.se


def test_divergence_names_the_step_size_and_a_point_off_the_minimum_is_flagged(devinterp):
    m, loss, n = _least_squares(4)
    with pytest.raises(ValueError, match=r"lr=0\.1\b.*smaller lr"):
        L.llc_of_loss(m, loss, n, lr=0.1, localization=1.0, num_chains=1, num_draws=100)
    off, loss, n = _least_squares(4, start=lambda w: {"w": torch.nn.Parameter(w + 0.3)})
    away = L.llc_of_loss(off, loss, n, **LS, num_chains=2)
    assert away.llc < 0 and not away.near_minimum and any("not near a minimum" in s for s in away.notes)
    assert len(away.trace) == 2 and len(away.trace[0]) == 200
    assert away.per_chain == pytest.approx([sum(t) / len(t) for t in away.trace], rel=1e-5)


def test_a_trace_still_rising_is_flagged_not_converged(devinterp):
    # far too small a step: 200 steps of lr 1e-7 stay in the diffusive start (the loss relaxes over ~10,000 steps), the
    # loss still climbing linearly towards k / 2 = 32 (noise-free data and 64 weights: a trace smooth enough to see it)
    slow = L.llc_of_loss(*_least_squares(64, noise=0.0), lr=1e-7, localization=1.0, num_chains=2)
    assert not slow.converged and any("still rises" in s for s in slow.notes)
    assert 0 < slow.llc < 2
    assert L.llc_of_loss(*_least_squares(64, noise=0.0), **LS, num_chains=2).converged


def test_the_loss_is_the_training_loss_and_the_model_is_untouched(devinterp, tiny_model, tiny_task):
    batch = tiny_task.sample(32, 8, seed=5)
    per_prompt = L._prompt_loss(batch, tiny_task.norm)(L._Net(tiny_model), torch.arange(32)).detach()
    fused = LossModule(tiny_model, tiny_task.norm)(batch.xs, batch.ys, False, 0, 2).detach()
    assert float(per_prompt.mean()) == pytest.approx(float(fused), rel=1e-5)
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    kw = {"n_prompts": 128, "num_chains": 2, "num_draws": 10, "num_burnin_steps": 2, "batch_size": 16}
    a, b = L.llc(tiny_model, **kw), L.llc(tiny_model, **kw)
    assert a.per_chain == b.per_chain and a.trace == b.trace  # seeded
    assert L.llc(tiny_model, **kw, seed=1).per_chain != a.per_chain
    assert all(torch.equal(p, before[n]) for n, p in tiny_model.named_parameters())
    assert a.prompts == {"active_dims": 4, "n_points": 8, "n_prompts": 128}
    assert a.settings["n_beta"] == pytest.approx(128 / torch.log(torch.tensor(128.0)).item())
    assert a.stage is None and a.step is None


def test_flush_denormal_is_on_during_the_run_and_restored(devinterp):
    m, loss, n = _least_squares(2, n=64)
    seen = []

    def spy(m_, i):
        seen.append(float(torch.tensor([1e-39]) * torch.tensor([1.0])))
        return loss(m_, i)

    torch.set_flush_denormal(False)
    L.llc_of_loss(m, spy, n, **LS, num_chains=1, num_draws=3, num_burnin_steps=0, batch_size=16)
    assert seen and all(v == 0.0 for v in seen)
    assert float(torch.tensor([1e-39]) * torch.tensor([1.0])) != 0.0


def test_an_attached_model_samples_its_core(devinterp, user_model, tiny_task):
    kw = {"n_prompts": 64, "num_chains": 1, "num_draws": 4, "num_burnin_steps": 0, "batch_size": 16}  # one pass
    with pytest.raises(ValueError, match="n_points must be given"):
        L.llc(user_model, **kw)
    res = L.llc(user_model, n_points=6, **kw)
    batch = tiny_task.sample(64, 6, seed=0)
    assert res.init_loss == pytest.approx(float(ii.tools.runner.normalised_error(user_model(batch), batch, tiny_task.norm).detach()), rel=1e-5)
    assert len(res.trace[0]) == 4


def test_a_curriculum_snapshot_is_measured_on_its_stage_too(devinterp):
    snap = ii.load_model(ii.snapshots("default")[9][1])  # step 151: trained on 3 of the 8 dims
    logged = snap.saved_config["training"]["log"][-1]
    where = L.training_stage(snap)
    assert where["step"] == 151 and where["active_dims"] == logged["active_dims"] == 3
    assert (where["full_dims"], where["full_points"]) == (8, 16)
    res = L.llc(snap, n_prompts=64, num_chains=1, num_draws=4, num_burnin_steps=0, batch_size=16)
    assert res.step == 151 and res.prompts["active_dims"] == 8
    assert res.stage is not None and res.stage.prompts == {"active_dims": 3, "n_points": 16, "n_prompts": 64}
    assert res.stage.init_loss < res.init_loss  # it was trained on those prompts
    assert L.llc(snap, n_prompts=64, num_chains=1, num_draws=4, num_burnin_steps=0, batch_size=16, stage=False).stage is None
    final = ii.load_model("default")
    assert L.training_stage(final) is None
    assert "stage" in res.to_dict() and "trace" not in res.to_dict() and "trace" in res.to_dict(traces=True)


def test_bad_input_is_named(devinterp, tiny_model, tiny_task):
    with pytest.raises(ValueError, match="lr"):
        L.llc(tiny_model, lr=0)
    with pytest.raises(ValueError, match="batch_size"):
        L.llc(tiny_model, n_prompts=16, batch_size=64)
    with pytest.raises(ValueError, match="not both"):
        L.llc(tiny_model, prompts=tiny_task.sample(8, 8, seed=0), n_points=8)
    with pytest.raises(TypeError, match="ICLTransformer"):
        L.llc(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="module"):
        L.llc_of_loss(lambda: 0, lambda m, i: i, 8)
    m, loss, n = _least_squares(2, n=64)
    with pytest.raises(ValueError, match="one loss per example"):
        L.llc_of_loss(m, lambda m_, i: loss(m_, i).sum(), n, num_chains=1, num_draws=2, batch_size=16)


def test_without_devinterp_the_error_names_the_install(monkeypatch):
    real = builtins.__import__

    def no_devinterp(name, *args, **kwargs):
        if name.startswith("devinterp"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    for mod in [m for m in sys.modules if m.startswith("devinterp")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", no_devinterp)
    with pytest.raises(ImportError, match=r"pip install 'icl-interp\[devinterp\]'"):
        L.llc(None)


def _llc_rows(values, se=1.0):
    return [{"step": 2**i, "llc": v, "se": se, "converged": True, "near_minimum": v >= 0, "stage": None}
            for i, v in enumerate(values)]


def test_stage_boundaries_are_the_significant_turning_points():
    from icl_interp.analysis.studies import llc_stages

    # negative (not near a minimum), a rise to a peak at step 16, a flat top, a fall to a trough at 128, a late rise
    rows = _llc_rows([-9, -2, 5, 20, 30, 29.5, 20, 12, 10, 15])
    claims = [{"step": r["step"], "panels": {"later_gd_steps": r["step"] / 1000}, "over_ridge": 1.0} for r in rows]
    got = llc_stages(rows, claims)
    assert [(b["step"], b["kind"]) for b in got["boundaries"]] == [(16, "peak"), (256, "trough")]
    assert got["boundaries"][0]["llc"] == 30 and got["boundaries"][0]["se"] == 1.0
    assert got["boundaries"][0]["claims"] == {"later_gd_steps": 0.016} and got["boundaries"][1]["over_ridge"] == 1.0
    assert got["near_minimum_from"] == 4
    # within the noise nothing turns: the same curve with standard errors as large as its wiggles
    assert llc_stages(_llc_rows([1, 3, 2, 4, 3], se=2.0))["boundaries"] == []


def test_the_llc_panel_and_report_lines_read_the_stored_values():
    from icl_interp.analysis.studies import llc_stages
    from icl_interp.analysis.studies.dynamics import llc_lines

    rows = _llc_rows([-3, 4, 9, 6, 7])
    rows[0]["stage"] = {"llc": 2.0, "se": 0.5, "active_dims": 3, "n_points": 16, "converged": True, "near_minimum": True}
    llc = {"settings": dict(L.DEFAULTS, n_beta=492.4), "rows": rows}
    llc["stages"] = llc_stages(rows)
    dyn = json.loads((Path(ii.__file__).parent / "zoo" / "default" / "dynamics.json").read_text())
    fig = ii.analysis.study_plots.plot_dynamics_study({**dyn, "llc": llc})
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 2 + len(dyn["panels"]) and any("local learning coefficient" in t for t in titles)
    text = "\n".join(llc_lines(llc))
    assert "| 1 | -3.0 +- 1.0 | 2.0 +- 0.5 (3 dims) |" in text and "| 4 | peak | 9.0 +- 1.0 |" in text
    assert "localization 1000" in text


def test_llc_history_keeps_each_snapshot_and_a_rerun_goes_on_from_there(devinterp, tmp_path, monkeypatch):
    from icl_interp.analysis.studies import llc_history, load_history

    history = load_history("default")[-2:]
    kw = {"n_prompts": 64, "num_chains": 2, "num_draws": 3, "num_burnin_steps": 0, "batch_size": 16}
    cache = tmp_path / "partial.json"
    first = llc_history(history[:1], cache=cache, **kw)
    assert json.loads(cache.read_text())["rows"] == first["rows"]
    calls = []
    real = L.llc
    monkeypatch.setattr(L, "llc", lambda *a, **k: calls.append(1) or real(*a, **k))
    both = llc_history(history, cache=cache, **kw)
    assert len(calls) == 1 and both["rows"][0] == first["rows"][0]  # the first from the cache, only the second sampled
    assert [r["step"] for r in both["rows"]] == [s for s, _ in history] and both["settings"]["num_draws"] == 3
    llc_history(history[:1], cache=cache, **{**kw, "seed": 1})  # other settings: sampled anew
    assert len(calls) == 2


def test_the_default_ships_its_llc_curve_and_the_report_reads_it():
    from icl_interp.analysis.report_markdown import _dynamics_lines
    from icl_interp.analysis.studies import llc_stages

    dyn = json.loads((Path(ii.__file__).parent / "zoo" / "default" / "dynamics.json").read_text())
    llc = dyn["llc"]
    assert [r["step"] for r in llc["rows"]] == [r["step"] for r in dyn["rows"]]
    assert llc["settings"] == {**{k: v for k, v in L.DEFAULTS.items() if k != "n_prompts"}, "n_beta": pytest.approx(4096 / 8.317766)}
    assert json.loads(json.dumps(llc_stages(llc["rows"], dyn["rows"]))) == llc["stages"]   # the stored stages are the rows'
    for r in llc["rows"]:
        assert r["llc"] == pytest.approx(sum(r["per_chain"]) / 4) and r["near_minimum"] == (r["llc"] >= 0)
        assert (r["stage"] is not None) == (r["step"] < 1500)   # dims 3 -> 8 by step 1,500 (one more every 300)
    text = "\n".join(_dynamics_lines({**dyn, "source": "stored"}))
    assert "### The local learning coefficient over training" in text
    assert all(f"| {b['step']} | {b['kind']} |" in text for b in llc["stages"]["boundaries"])
