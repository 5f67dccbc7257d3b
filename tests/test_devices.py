"""Devices: device strings, refusals, CPU runs everywhere; tests marked ``gpu`` need CUDA and are skipped elsewhere."""

import pytest
import torch

import icl_interp as ii
from icl_interp.baselines.estimators import OLS
from icl_interp.core.checkpoint import load_model, save_model
from icl_interp.core.devices import resolve_device
from icl_interp.core.model import ICLTransformer, ModelConfig
from icl_interp.core.tasks import SparseLinearRegression
from icl_interp.training.loop import TrainConfig, train

CUDA = torch.cuda.is_available()
no_cuda = pytest.mark.skipif(CUDA, reason="checks the refusal on a machine without CUDA")


def gpu(test):
    """Marked ``gpu`` (select with ``-m gpu``) and skipped, with the reason, where CUDA is absent."""
    return pytest.mark.gpu(pytest.mark.skipif(not CUDA, reason="needs a CUDA device")(test))


def _tiny(device=None, seed=0):
    task = SparseLinearRegression(d=4, s=1, noise_std=0.1)
    return ICLTransformer(ModelConfig(d=4, n_layers=2, n_heads=2, d_model=16, max_points=8, seed=seed), task, device=device), task


def _cfg(**kw):
    return TrainConfig(**{"steps": 20, "batch_size": 16, "lr": 3e-3, "warmup_steps": 2, "eval_every": 20, "eval_prompts": 32,
                          "progress": False, **kw})


@pytest.mark.tl3
def test_device_strings_round_trip():
    assert resolve_device("cpu") == torch.device("cpu") and str(resolve_device(torch.device("cpu"))) == "cpu"
    cfg = TrainConfig(device=torch.device("cpu"))
    assert cfg.device == "cpu" and TrainConfig(**cfg.to_dict()).device == "cpu"
    assert TrainConfig().device is None  # the model's own device
    for bad in ("gpu", "cuda:x", "tpu", ""):
        with pytest.raises(ValueError, match="device"):
            TrainConfig(device=bad)
    with pytest.raises(ValueError, match="xla"):
        resolve_device("xla")  # a torch device type this package does not run on
    with pytest.raises(TypeError, match="device"):
        resolve_device(0)


@no_cuda
@pytest.mark.tl3
def test_auto_is_the_cpu_here():
    assert resolve_device("auto") == torch.device("cpu")
    model, task = _tiny(device="auto")
    assert all(p.device.type == "cpu" for p in model.parameters())
    train(model, task, _cfg(steps=2, device="auto"))


@no_cuda
@pytest.mark.tl3
def test_cuda_and_mps_are_refused_where_absent(tmp_path):
    model, task = _tiny()
    save_model(model, tmp_path / "m")
    for dev in ("cuda", "cuda:1") + (() if torch.backends.mps.is_available() else ("mps",)):
        with pytest.raises(ValueError, match="not available"):
            resolve_device(dev)
        with pytest.raises(ValueError, match="not available"):
            _tiny(device=dev)
        with pytest.raises(ValueError, match="not available"):
            load_model(tmp_path / "m", device=dev)
        with pytest.raises(ValueError, match="not available"):
            train(model, task, _cfg(steps=1, device=dev))
        with pytest.raises(ValueError, match="not available"):
            ii.evaluate(OLS(), task, n_points=8, n_prompts=10, device=dev)


def test_explicit_cpu_everywhere_gives_the_default_numbers(tmp_path):
    model, task = _tiny(device="cpu")
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m", device="cpu")
    batch = task.sample(8, 8, seed=1)
    with torch.no_grad():
        assert torch.equal(loaded(batch), load_model(tmp_path / "m")(batch))
    a = ii.evaluate(OLS(), task, n_points=8, n_prompts=50, seed=2, device="cpu")
    b = ii.evaluate(OLS(), task, n_points=8, n_prompts=50, seed=2)
    assert torch.equal(a.error, b.error)
    assert torch.equal(ii.evaluate(loaded, task, n_points=8, n_prompts=50, device="cpu").error,
                       ii.evaluate(loaded, task, n_points=8, n_prompts=50).error)
    one, _ = _tiny()
    two, _ = _tiny()
    log_default = train(one, task, _cfg())["log"]
    log_cpu = train(two, task, _cfg(device="cpu"))["log"]
    assert [e["loss"] for e in log_default] == [e["loss"] for e in log_cpu]


def test_cli_device_flags(tmp_path, capsys):
    from icl_interp.cli import main

    assert main(["train", "--preset", "tiny", "--out", str(tmp_path / "run"), "--steps", "4", "--threads", "1", "--no-progress",
                 "--device", "cpu"]) == 0
    assert main(["evaluate", str(tmp_path / "run" / "model"), "--n-prompts", "20", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run" / "model"), "--device", "gpu"]) == 2
    assert "device" in capsys.readouterr().err


# -- on a CUDA machine -------------------------------------------------------------------


@gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_training_on_cuda_matches_the_cpu(dtype, tmp_path):
    """The same run on CUDA and on the CPU: the same losses to float tolerance (bfloat16: to its precision)."""
    logs, models = {}, {}
    for dev in ("cpu", "cuda"):
        models[dev], task = _tiny()
        logs[dev] = train(models[dev], task, _cfg(device=dev, dtype=dtype), out_dir=tmp_path / dev)["log"]
    assert next(models["cuda"].parameters()).is_cuda and all(p.dtype == torch.float32 for p in models["cuda"].parameters())
    tol = 1e-3 if dtype == "float32" else 5e-2
    for a, b in zip(logs["cpu"], logs["cuda"]):
        assert b["loss"] == pytest.approx(a["loss"], rel=tol)
    reloaded = load_model(tmp_path / "cuda" / "model")  # on the CPU, reproducing the fingerprint taken on CUDA
    assert reloaded.saved_config["training"]["dtype"] == dtype


@gpu
def test_bfloat16_training_on_cuda_learns_and_keeps_float32_parameters():
    model, task = _tiny(device="cuda")
    log = train(model, task, _cfg(steps=150, dtype="bfloat16", eval_every=150))["log"]
    assert log[-1]["loss"] < 0.7 * log[0]["loss"]
    assert all(p.dtype == torch.float32 and p.is_cuda for p in model.parameters())


@gpu
def test_compiled_training_on_cuda_gives_the_eager_losses():
    logs = []
    for compile_ in (False, True):
        model, task = _tiny(device="cuda")
        logs.append([e["loss"] for e in train(model, task, _cfg(compile=compile_))["log"]])
    assert logs[1] == pytest.approx(logs[0], rel=1e-4)


@gpu
def test_models_and_baselines_evaluate_on_cuda_as_on_the_cpu(tmp_path):
    model, task = _tiny()
    save_model(model, tmp_path / "m")
    on_gpu = load_model(tmp_path / "m", device="cuda")
    assert next(on_gpu.parameters()).is_cuda
    with pytest.raises(ValueError, match="on device"):
        on_gpu(task.sample(4, 8, seed=0))  # a CPU batch is refused, the model is not moved
    a = ii.evaluate(on_gpu, task, n_points=8, n_prompts=200, seed=3, device="cuda")
    b = ii.evaluate(model, task, n_points=8, n_prompts=200, seed=3)
    assert torch.allclose(a.error, b.error, rtol=1e-4)
    with pytest.raises(ValueError, match="model is on"):
        ii.evaluate(model, task, n_points=8, n_prompts=10, device="cuda")
    for est in (OLS(), ii.baselines.Lasso(0.1), ii.baselines.Ridge(0.5)):
        a = ii.evaluate(est, task, n_points=8, n_prompts=200, seed=3, device="cuda")
        b = ii.evaluate(est, task, n_points=8, n_prompts=200, seed=3)
        assert torch.allclose(a.error, b.error, rtol=1e-4, atol=1e-6), est


@gpu
@pytest.mark.slow
def test_the_quick_report_on_cuda_gives_the_cpu_verdicts(tmp_path):
    cpu = ii.write_report(tmp_path / "cpu", quick=True, reuse=False)
    got = ii.write_report(tmp_path / "gpu", quick=True, reuse=False, device="cuda")
    assert [(c["id"], c["verdict"]) for c in got["claims"]] == [(c["id"], c["verdict"]) for c in cpu["claims"]]


def test_report_and_recipe_take_a_device_and_refuse_an_absent_one(tmp_path, tiny_model):
    from icl_interp.analysis.recipes import run_recipe
    from icl_interp.cli import main

    for argv in (["report", "--out", str(tmp_path / "r"), "--quick", "--device", "gpu"],
                 ["recipe", "multihead", "--out", str(tmp_path / "m"), "--device", "tpu"]):
        assert main(argv) == 2  # a clear one-line error, before any work
    assert not (tmp_path / "r").exists() and not (tmp_path / "m").exists()
    if not CUDA:
        with pytest.raises(ValueError, match="CUDA is not available"):
            ii.write_report(tmp_path / "r", model=tiny_model, quick=True, device="cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            run_recipe("multihead", tmp_path / "m", quick=True, device="cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        ii.write_report(tmp_path / "r", model=tiny_model, quick=True, device="meta")
