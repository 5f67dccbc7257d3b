"""The tools, the studies, the report and the recipes with the model on another device, checked on the CPU.

No GPU has been lent to this project, so ``tests/_remote.py`` emulates one: the model's tensors are marked as on
``cuda:0`` and every torch op follows CUDA's placement rules (mixing a remote tensor with a CPU one raises). A tool
that works here puts every tensor where CUDA needs it; its numbers must equal the CPU run's (the data never move).
The ``gpu``-marked tests in test_devices.py run the same on a real GPU where one is lent.
"""

import copy

import pytest
import torch
from _remote import REMOTE, DeviceMismatch, RemoteDevice, is_remote, mark_module
from compare_reports import compare

import icl_interp as ii
from icl_interp.analysis.recipes import RECIPES


def _close(a, b):
    """Nested dicts / lists of numbers equal to float rounding (the report comparer's walk)."""
    diff = compare(a, b, rel=1e-4)
    assert diff.ok and not diff.added, (diff.mismatches[:5], diff.missing[:5], diff.added[:5])


@pytest.fixture
def remote(tiny_model):
    """The tiny model "on cuda:0" (a deep copy, marked), with the emulation active."""
    model = mark_module(copy.deepcopy(tiny_model))
    with RemoteDevice():
        yield model


# -- the emulation itself: it must catch what CUDA would refuse ---------------------------------------------------

def test_the_emulation_refuses_what_cuda_refuses_and_allows_what_it_allows():
    lin = mark_module(torch.nn.Linear(3, 2))
    with RemoteDevice():
        x = torch.randn(4, 3)
        with pytest.raises(DeviceMismatch):
            lin(x)  # CPU input, remote weights
        assert next(lin.parameters()).device == REMOTE
        y = lin(x.to(REMOTE))
        assert is_remote(y) and not is_remote(x) and y.device == REMOTE
        assert not is_remote(y.cpu()) and is_remote(y)  # .cpu() is a copy; y stays where it is
        assert is_remote(y[torch.tensor([0, 2])])  # a CPU index into a remote tensor is fine on CUDA
        with pytest.raises(DeviceMismatch):
            x[torch.tensor([0, 1]).to(REMOTE)]  # a remote index into a CPU tensor is not
        with pytest.raises(DeviceMismatch):
            y + torch.ones(2)
        assert is_remote(y + torch.tensor(1.0))  # a CPU 0-dim tensor is a scalar: allowed
        with pytest.raises(DeviceMismatch):
            torch.ones(2) * y.sum()  # a remote 0-dim tensor with a CPU tensor is not
        with pytest.raises(TypeError, match="numpy"):
            y.numpy()
        assert is_remote(torch.zeros(3, device=y.device)) and is_remote(torch.zeros_like(y))
        lin.cpu()
        assert not is_remote(lin.weight) and lin(x).shape == (4, 2)


# -- the tools: the same numbers as on the CPU ---------------------------------------------------------------------

def test_tools_run_beside_a_remote_model_with_the_cpu_numbers(tiny_model, tiny_batch, remote):
    batch = tiny_batch.to(REMOTE)
    with pytest.raises(ValueError, match="move it with"):
        ii.prepare(remote, tiny_batch)  # a CPU batch is refused, never silently moved
    run, cpu_run = ii.prepare(remote, batch), ii.prepare(tiny_model, tiny_batch)
    assert is_remote(run.preds) and torch.equal(run.preds.cpu(), cpu_run.preds)
    for kind in ("zero", "mean", "resample"):
        got = ii.head_importance(remote, run, ablation=kind, reference=batch if kind != "zero" else None)
        want = ii.head_importance(tiny_model, cpu_run, ablation=kind, reference=tiny_batch if kind != "zero" else None)
        assert not is_remote(got) and torch.allclose(got, want, atol=1e-6), kind
    grad = ii.head_importance(remote, run, method="gradient")
    assert not is_remote(grad) and torch.allclose(grad, ii.head_importance(tiny_model, cpu_run, method="gradient"), atol=1e-6)
    mask = ii.prune_heads(grad, keep=1)
    assert torch.allclose(ii.mask_heads(remote, run, mask).cpu(), ii.mask_heads(tiny_model, cpu_run, mask), atol=1e-6)
    with ii.masked(remote, mask):
        assert torch.allclose(remote(batch).cpu(), ii.mask_heads(tiny_model, tiny_batch, mask), atol=1e-6)
    corrupted = ii.corrupt_batch(batch, "new_w", remote.task, seed=1)
    assert is_remote(corrupted.ys)
    for method in ("exact", "attribution"):
        got = ii.patch_activations(remote, run, corrupted, "head", method=method, per_position=False)
        want = ii.patch_activations(tiny_model, cpu_run, corrupted.to("cpu"), "head", method=method, per_position=False)
        assert torch.allclose(got.scores.cpu(), want.scores, atol=1e-5), method
    got, want = ii.probe_all_layers(remote, run, ["y_query", "w"], control=True), ii.probe_all_layers(tiny_model, cpu_run, ["y_query", "w"], control=True)
    assert [r.r2 for r in got.rows] == pytest.approx([r.r2 for r in want.rows], abs=1e-6)
    assert [r.control_r2 for r in got.rows] == pytest.approx([r.control_r2 for r in want.rows], abs=1e-6)
    prof = ii.attention_profile(remote, run)
    assert torch.allclose(prof.x, ii.attention_profile(tiny_model, cpu_run).x, atol=1e-6)
    _close(ii.gd_alignment(remote, run, steps=(1, 2)).to_dict(), ii.gd_alignment(tiny_model, cpu_run, steps=(1, 2)).to_dict())
    res = ii.evaluate(remote, remote.task, n_points=8, n_prompts=64, seed=2)
    assert torch.allclose(res.error, ii.evaluate(tiny_model, tiny_model.task, n_points=8, n_prompts=64, seed=2).error, atol=1e-6)


def test_a_model_in_memory_is_never_moved(remote, tmp_path):
    with pytest.raises(ValueError, match="the model is on cuda:0"):
        ii.write_report(tmp_path / "r", model=remote, quick=True, device="cpu")
    assert not (tmp_path / "r").exists()


def test_the_quick_report_on_a_remote_model_gives_the_cpu_report(tmp_path):
    from icl_interp.training.presets import preset_model

    cpu = preset_model("tiny")
    want = ii.write_report(tmp_path / "cpu", model=cpu, quick=True, reuse=False)
    model = mark_module(copy.deepcopy(cpu))
    with RemoteDevice():
        got = ii.write_report(tmp_path / "remote", model=model, quick=True, reuse=False)
    assert [c["id"] for c in got["claims"]] == [c["id"] for c in want["claims"]]
    for a, b in zip(got["claims"], want["claims"]):
        assert a["verdict"] == b["verdict"], a["id"]
        assert a["value"] == pytest.approx(b["value"], rel=1e-4, abs=1e-6), a["id"]


@pytest.fixture
def zoo_on_remote(monkeypatch):
    """``device="cuda"`` resolves to the emulated device: load_model moves each model there (Module.to, marked)."""
    import icl_interp.analysis.recipes as recipes
    import icl_interp.analysis.report as report
    import icl_interp.core.checkpoint as checkpoint

    real = checkpoint.resolve_device

    def resolve(device="auto", name="device"):
        return REMOTE if str(device).startswith("cuda") else real(device, name)

    for module in (checkpoint, report, recipes):
        monkeypatch.setattr(module, "resolve_device", resolve)
    with RemoteDevice():
        yield


@pytest.mark.slow
def test_the_quick_zoo_report_with_every_sibling_runs_on_the_remote_device(tmp_path, zoo_on_remote):
    """zoo:default with its head counts, single head, noise sweep, twins, training seeds and the second seed's models."""
    got = ii.write_report(tmp_path / "remote", quick=True, reuse=False, device="cuda")
    assert got["plan"]["method"] == "exact" and len(got["claims"]) > 20
    assert ii.load_model("zoo:default", device="cuda").cfg.n_heads == 4 and is_remote(next(ii.load_model("zoo:default", device="cuda").parameters()))


@pytest.mark.slow
@pytest.mark.parametrize("name", [r for r in RECIPES if r != "dynamics"])  # dynamics: 2 min here; its LLC is below
def test_recipes_run_on_the_remote_device(tmp_path, zoo_on_remote, name):
    from icl_interp.analysis.recipes import run_recipe

    got = run_recipe(name, tmp_path, quick=True, device="cuda")
    assert (tmp_path / f"{name}.json").is_file() and got


def test_the_llc_of_a_remote_model_is_the_cpu_llc(tiny_model, remote):
    pytest.importorskip("devinterp")
    settings = dict(n_prompts=64, num_chains=1, num_draws=6, num_burnin_steps=0, batch_size=16, seed=3)
    got = ii.llc(remote, **settings)
    want = ii.llc(tiny_model, **settings)  # unmarked: the CPU run
    assert got.llc == pytest.approx(want.llc, rel=1e-4, abs=1e-6)
