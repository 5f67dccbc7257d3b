import json

import pytest
import torch

from icl_interp.core.model import ICLTransformer, ModelConfig
from icl_interp.core.tasks import SparseLinearRegression
from icl_interp.training.loop import TrainConfig, lr_at, train
from icl_interp.training.state import has_checkpoint, read_state


def _tiny(seed=0):
    task = SparseLinearRegression(d=4, s=1, noise_std=0.1)
    model = ICLTransformer(ModelConfig(d=4, n_layers=2, n_heads=2, d_model=16, max_points=8, seed=seed), task)
    return model, task


def test_loss_falls_in_a_short_run():
    model, task = _tiny()
    cfg = TrainConfig(steps=150, batch_size=32, lr=3e-3, warmup_steps=10, eval_every=150, eval_prompts=128, progress=False)
    before = ((model(task.sample(256, 8, seed=99)) - task.sample(256, 8, seed=99).ys) ** 2).mean().item()
    log = train(model, task, cfg)["log"]
    batch = task.sample(256, 8, seed=99)
    after = ((model(batch) - batch.ys) ** 2).mean().item()
    assert after < 0.7 * before
    assert log[-1]["step"] == 150 and "eval_error_last" in log[-1]


def test_interrupted_run_resumes_to_bitwise_same_weights(tmp_path):
    common = dict(steps=30, batch_size=16, lr=3e-3, warmup_steps=4, checkpoint_every=10, eval_every=20, eval_prompts=32,
                  progress=False,
                  curriculum={"dims_start": 2, "dims_end": 4, "dims_every": 10, "points_start": 4, "points_end": 8, "points_every": 10})
    straight, task = _tiny()
    train(straight, task, TrainConfig(**common), out_dir=tmp_path / "a")

    broken, _ = _tiny()
    calls = {"n": 0}

    def die_on_step_25(module, inputs, output):
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt

    handle = broken.read_in.register_forward_hook(die_on_step_25)
    with pytest.raises(KeyboardInterrupt):
        train(broken, task, TrainConfig(**common), out_dir=tmp_path / "b")
    handle.remove()
    assert read_state(tmp_path / "b" / "checkpoint")["step"] == 20

    resumed, _ = _tiny(seed=7)  # another init: everything must come from the checkpoint
    train(resumed, task, TrainConfig(**common), out_dir=tmp_path / "b", resume=True)
    for (k, a), (_, b) in zip(straight.own_state_dict().items(), resumed.own_state_dict().items()):
        assert torch.equal(a, b), k
    log_a = json.loads((tmp_path / "a" / "log.json").read_text())
    log_b = json.loads((tmp_path / "b" / "log.json").read_text())
    assert [e["loss"] for e in log_a] == [e["loss"] for e in log_b]
    assert log_a[-1]["n_points"] == 8 and log_a[-1]["active_dims"] == 4


def test_lr_schedule():
    cfg = TrainConfig(steps=1000, lr=1e-3, warmup_steps=100, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(99, cfg) == pytest.approx(1e-3)
    assert lr_at(999, cfg) == pytest.approx(1e-4, rel=1e-3)
    assert lr_at(550, cfg) == pytest.approx(0.55e-3, rel=1e-2)


def test_train_validates():
    model, task = _tiny()
    with pytest.raises(ValueError, match="n_points"):
        train(model, task, TrainConfig(steps=2, n_points=9, progress=False))
    with pytest.raises(ValueError, match="d"):
        train(model, SparseLinearRegression(d=5, s=1), TrainConfig(steps=2, progress=False))
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match="resume"):
        train(model, task, TrainConfig(steps=2, progress=False), resume=True)


def test_chunked_training_stops_at_a_checkpoint_and_resumes_bitwise(tmp_path):
    """max_minutes=0 stops at the first checkpoint; chunk after chunk gives the straight run's weights."""
    common = dict(steps=30, batch_size=16, lr=3e-3, warmup_steps=4, checkpoint_every=10, eval_every=20, eval_prompts=32,
                  progress=False)
    straight, task = _tiny()
    train(straight, task, TrainConfig(**common), out_dir=tmp_path / "a")
    chunks = []
    for i in range(5):
        model, _ = _tiny(seed=i)
        result = train(model, task, TrainConfig(**common), out_dir=tmp_path / "b", resume=i > 0, max_minutes=0)
        chunks.append(result["step"] if result["stopped"] else "done")
        if not result["stopped"]:
            break
        assert not (tmp_path / "b" / "model").exists()
    assert chunks == [10, 20, "done"]
    for (k, a), (_, b) in zip(straight.own_state_dict().items(), model.own_state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="max_minutes"):
        train(model, task, TrainConfig(**common), max_minutes=1)
    with pytest.raises(ValueError, match="max_minutes"):
        train(model, task, TrainConfig(**common), out_dir=tmp_path / "c", max_minutes=-1)


def test_cli_trains_in_chunks(tmp_path, capsys):
    from icl_interp.cli import main

    args = ["train", "--preset", "tiny", "--out", str(tmp_path), "--no-progress", "--threads", "1", "--max-minutes", "0"]
    assert main(args) == 0
    assert "stopped after 0 min at step 20 of 60" in capsys.readouterr().out
    assert main(args + ["--resume"]) == 0 and main(args + ["--resume"]) == 0
    assert main(args + ["--resume"]) == 0
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_preset_model_is_the_shipped_models_architecture_and_task_freshly_initialised():
    from icl_interp.core.checkpoint import load_model, zoo_names
    from icl_interp.training.presets import preset_model

    if "default" not in zoo_names():
        pytest.skip("default is not in the zoo")
    fresh, shipped = preset_model("default"), load_model("default")
    assert fresh.cfg.to_dict() == shipped.cfg.to_dict() and fresh.task.to_dict() == shipped.task.to_dict()
    again = preset_model("default").own_state_dict()   # seeded: the same initial weights every time
    assert all(torch.equal(v, again[k]) for k, v in fresh.own_state_dict().items())
    trained = shipped.own_state_dict()
    assert not all(torch.equal(v, trained[k]) for k, v in again.items())   # initialised, not the trained weights
    with pytest.raises(ValueError, match="preset"):
        preset_model("not-a-preset")


def test_a_training_seed_changes_the_initial_weights_and_the_data_order_and_is_recorded(tmp_path):
    from icl_interp.training.presets import preset_model, train_preset

    base, seeded = preset_model("tiny"), preset_model("tiny", seed=1)
    assert seeded.cfg.seed == 1 and base.cfg.seed == 0
    assert not all(torch.equal(a, b) for a, b in zip(base.parameters(), seeded.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(base.parameters(), preset_model("tiny", seed=0).parameters()))
    with pytest.raises(ValueError, match="seed"):
        preset_model("tiny", seed=-1)
    res = train_preset("tiny", tmp_path / "s1", overrides={"seed": 1, "steps": 3, "progress": False})
    assert res["log"]
    cfg = json.loads((tmp_path / "s1" / "model" / "config.json").read_text())
    assert cfg["model"]["seed"] == 1 and cfg["training"]["train_config"]["seed"] == 1


def test_retrain_zoo_trains_presets_into_a_zoo_that_use_zoo_serves(tmp_path):
    from icl_interp.core.checkpoint import load_model, use_zoo, zoo_names
    from icl_interp.training.presets import retrain_zoo

    shipped = zoo_names()
    first = retrain_zoo(tmp_path, ["tiny"], max_minutes=0)  # stops at the first checkpoint
    assert first["left"] == ["tiny"] and not (tmp_path / "zoo" / "tiny").exists()
    assert read_state(tmp_path / "runs" / "tiny" / "checkpoint")["step"] == 20
    second = retrain_zoo(tmp_path, ["tiny"])  # resumes to the end
    assert second["done"] == ["tiny"] and second["left"] == []
    assert (tmp_path / "zoo" / "tiny" / "training_log.json").is_file()
    with use_zoo(second["zoo"]):
        assert zoo_names() == ["tiny"]
        model = load_model("tiny")
    assert model.cfg.d == 4 and zoo_names() == shipped  # the package's zoo again outside the block
    assert retrain_zoo(tmp_path, ["tiny"])["done"] == ["tiny"]  # kept, not retrained
    with pytest.raises(ValueError, match="names"):
        retrain_zoo(tmp_path, ["not-a-preset"])
    with pytest.raises(ValueError, match="folder"):
        with use_zoo(tmp_path / "missing"):
            pass


def test_report_retrain_flag_trains_in_chunks(tmp_path, capsys):
    from icl_interp.cli import main

    args = ["report", "--out", str(tmp_path / "rep"), "--retrain", "--zoo-dir", str(tmp_path / "z"),
            "--presets", "tiny", "--max-minutes", "0"]
    assert main(args) == 0
    assert "still to train: ['tiny']" in capsys.readouterr().out
    assert has_checkpoint(tmp_path / "z" / "runs" / "tiny" / "checkpoint")
    assert not (tmp_path / "rep" / "report.md").exists()


def test_wsd_schedule_holds_then_decays():
    cfg = TrainConfig(steps=1000, lr=1e-3, warmup_steps=100, schedule="wsd", decay_frac=0.2, min_lr_ratio=0.0)
    assert lr_at(50, cfg) == pytest.approx(1e-3 * 51 / 100)
    assert lr_at(100, cfg) == lr_at(799, cfg) == 1e-3
    assert lr_at(900, cfg) == pytest.approx(0.5e-3)
    assert lr_at(999, cfg) == pytest.approx(1e-3 / 200)


def test_snapshots_are_kept_loadable_and_listed(tmp_path):
    from icl_interp.core.checkpoint import load_model
    from icl_interp.training.loop import snapshot_steps, snapshots

    assert snapshot_steps(TrainConfig(steps=100, keep_every=40)) == [40, 80]
    assert snapshot_steps(TrainConfig(steps=1000, keep_log=4)) == [1, 10, 100, 1000]
    model, task = _tiny()
    cfg = TrainConfig(steps=12, batch_size=8, lr=3e-3, warmup_steps=2, keep_every=5, keep_log=3, eval_every=100,
                      checkpoint_every=6, progress=False)
    train(model, task, cfg, out_dir=tmp_path)
    found = snapshots(tmp_path)
    assert [s for s, _ in found] == [1, 3, 5, 10, 12]
    last = load_model(found[-1][1])
    batch = task.sample(4, 8, seed=1)
    with torch.no_grad():
        assert torch.equal(last(batch), model(batch))  # the last snapshot is the final model
        assert not torch.equal(load_model(found[0][1])(batch), model(batch))
    with pytest.raises(ValueError, match="out_dir"):
        train(_tiny()[0], task, cfg)


def test_init_from_starts_from_a_saved_model(tmp_path):
    from icl_interp.core.checkpoint import save_model

    donor, task = _tiny(seed=3)
    save_model(donor, tmp_path / "donor")
    model, _ = _tiny(seed=0)
    train(model, task, TrainConfig(steps=1, batch_size=4, lr=1e-12, warmup_steps=0, init_from=str(tmp_path / "donor"),
                                   grad_clip=None, progress=False, eval_every=100))
    for (k, a), (_, b) in zip(donor.own_state_dict().items(), model.own_state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), k
    other = ICLTransformer(ModelConfig(d=4, n_layers=1, n_heads=2, d_model=16, max_points=8), task)
    with pytest.raises(ValueError, match="init_from"):
        train(other, task, TrainConfig(steps=1, init_from=str(tmp_path / "donor"), progress=False))


# -- the step: the model's own function, precision, compile, failures ---------------------


def _loss_and_grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.tl3
@pytest.mark.parametrize("max_points", [8, 40])  # 40: contexts past the CPU's batched-product attention (fused kernel)
@pytest.mark.parametrize("encoding", ["interleaved", "concatenated"])
def test_the_training_loss_is_the_models_own(encoding, max_points):
    """The step's loss and gradients (fused, last block only where the loss reads) equal the hooked model's."""
    from icl_interp.core import fast_paths as _fast
    from icl_interp.training.step import LossModule, read_positions

    task = SparseLinearRegression(d=4, s=1, noise_std=0.1)
    model = ICLTransformer(ModelConfig(d=4, n_layers=3, n_heads=2, d_model=16, max_points=max_points, encoding=encoding), task)
    module = LossModule(model, task.norm)
    model.train()
    try:
        for n in (max_points, 5, 1):
            batch = task.sample(16, n, seed=n)
            preds = model(batch.xs, batch.ys)
            target = batch.ys if preds.ndim == 2 else batch.ys[:, -1]
            want_loss, want = _loss_and_grads(model, ((preds - target) ** 2).mean() / task.norm)
            for fused in (True, False) if _fast.usable(model.hooked) else (False,):  # fused: the native 4.x bridge
                got_loss, got = _loss_and_grads(model, module(batch.xs, batch.ys, fused, *read_positions(model, n)))
                assert torch.allclose(got_loss, want_loss, rtol=1e-5), (n, fused)
                assert set(got) == set(want), (n, fused)
                for k in want:
                    assert torch.allclose(got[k], want[k], atol=1e-6, rtol=1e-4), (n, fused, k)
    finally:
        model.eval()


def test_a_hook_on_the_core_sends_the_step_through_the_hooked_forward():
    model, task = _tiny()
    seen = []
    with model.hooked.hooks(fwd_hooks=[("blocks.1.attn.hook_z", lambda z, hook: seen.append(torch.is_grad_enabled()))]):
        train(model, task, TrainConfig(steps=3, batch_size=8, warmup_steps=1, eval_every=100, progress=False))
    assert seen.count(True) == 3  # every training step (and the final evaluation, without gradients)


def test_a_non_finite_loss_stops_the_run_at_its_step():
    model, task = _tiny()
    calls = {"n": 0}

    def poison_step_3(module, inputs, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] == 3 else output

    model.read_in.register_forward_hook(poison_step_3)
    with pytest.raises(FloatingPointError, match="step 2"):
        train(model, task, TrainConfig(steps=5, batch_size=8, warmup_steps=1, eval_every=100, progress=False))


def test_bfloat16_training_on_the_cpu_learns_keeps_float32_and_is_recorded(tmp_path):
    from icl_interp.core.checkpoint import load_model

    logs = {}
    for dtype in ("float32", "bfloat16"):
        model, task = _tiny()
        cfg = TrainConfig(steps=100, batch_size=32, lr=3e-3, warmup_steps=10, eval_every=50, eval_prompts=128, progress=False,
                          dtype=dtype, checkpoint_every=100)
        logs[dtype] = train(model, task, cfg, out_dir=tmp_path / dtype)["log"]
    for a, b in zip(logs["float32"], logs["bfloat16"]):  # the float32 run's path, to bfloat16's precision
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-2) and b["loss"] != a["loss"]
    assert logs["bfloat16"][-1]["eval_error_mean"] == pytest.approx(logs["float32"][-1]["eval_error_mean"], rel=2e-2)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    tmp_path = tmp_path / "bfloat16"
    assert load_model(tmp_path / "model").saved_config["training"]["dtype"] == "bfloat16"
    assert read_state(tmp_path / "checkpoint")["train_config"]["dtype"] == "bfloat16"
    with pytest.raises(ValueError, match="dtype"):
        TrainConfig(dtype="float16")


@pytest.mark.slow
def test_compiled_training_gives_the_eager_losses():
    """torch.compile of the loss: the same losses as eager (a compile from cold takes minutes on this CPU)."""
    logs = []
    for compile_ in (False, True):
        model, task = _tiny()
        cfg = TrainConfig(steps=8, batch_size=16, lr=3e-3, warmup_steps=2, eval_every=100, progress=False, compile=compile_)
        logs.append([e["loss"] for e in train(model, task, cfg)["log"]])
    assert logs[1] == pytest.approx(logs[0], rel=1e-5)


def test_a_checkpoint_from_before_the_device_fields_resumes(tmp_path):
    """Checkpoints written before device / dtype / compile / log_to existed resume (as float32 runs)."""
    from _disk import write_legacy_checkpoint

    common = dict(steps=20, batch_size=8, lr=3e-3, warmup_steps=2, checkpoint_every=10, eval_every=100, progress=False)
    straight, task = _tiny()
    train(straight, task, TrainConfig(**common))
    model, _ = _tiny()
    train(model, task, TrainConfig(**common), out_dir=tmp_path, max_minutes=0)

    def drop_new_fields(state):
        for key in ("device", "dtype", "compile", "log_to"):
            del state["train_config"][key]

    write_legacy_checkpoint(tmp_path / "checkpoint", drop_new_fields)  # and in format 1 (state.json beside the tensors)
    train(model, task, TrainConfig(**common), out_dir=tmp_path, resume=True)
    for (k, a), (_, b) in zip(straight.own_state_dict().items(), model.own_state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="dtype"):
        train(model, task, TrainConfig(**common, dtype="bfloat16"), out_dir=tmp_path, resume=True)


def test_cli_keeps_snapshots(tmp_path):
    from icl_interp.cli import main
    from icl_interp.training.loop import snapshots

    args = ["train", "--preset", "tiny", "--out", str(tmp_path), "--no-progress", "--threads", "1", "--steps", "20",
            "--keep-every", "10", "--keep-log", "3"]
    assert main(args) == 0
    assert [s for s, _ in snapshots(tmp_path)] == [1, 4, 10, 20]


# -- optional wandb logging ------------------------------------------------------------------


def test_wandb_logging_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_files"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb_files").mkdir()
    model, task = _tiny()
    cfg = TrainConfig(steps=60, batch_size=8, warmup_steps=2, eval_every=50, eval_prompts=16, progress=False, log_to="wandb")
    log = train(model, task, cfg, out_dir=tmp_path / "run")["log"]
    run_id = (tmp_path / "run" / "wandb_run_id").read_text()
    records = list((tmp_path / "wandb_files" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(records) == 1
    data = records[0].read_bytes()  # protobuf records: each logged key and its JSON value appear verbatim
    for entry in (log[0], log[-1]):
        for key in ("loss", "lr", "active_dims", "n_points", "eval_error_last"):
            if key in entry:
                assert key.encode() in data and json.dumps(entry[key]).encode() in data, key


def test_without_log_to_wandb_is_never_imported(tmp_path):
    import subprocess
    import sys

    code = ("import sys, icl_interp as ii; t = ii.SparseLinearRegression(d=4, s=1); "
            "m = ii.ICLTransformer(ii.ModelConfig(d=4, n_layers=1, n_heads=1, d_model=8, max_points=4), t); "
            f"ii.train(m, t, ii.TrainConfig(steps=2, batch_size=4, progress=False), out_dir={str(tmp_path)!r}); "
            "print('wandb' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr[-2000:]


def test_log_to_is_checked():
    with pytest.raises(ValueError, match="log_to"):
        TrainConfig(log_to="tensorboard")


def test_a_run_extends_its_schedule_only_where_the_past_lrs_stay(tmp_path):
    """Resuming with more steps (a later decay) is allowed while every step done had the same lr; the result is
    bitwise the run the new config gives from scratch."""
    common = dict(batch_size=8, lr=3e-3, warmup_steps=2, schedule="wsd", decay_frac=0.25, checkpoint_every=10,
                  eval_every=100, progress=False)
    first, task = _tiny()
    train(first, task, TrainConfig(steps=20, **common), out_dir=tmp_path / "run", max_minutes=0)  # stops at step 10
    extended, _ = _tiny()
    train(extended, task, TrainConfig(steps=40, **common), out_dir=tmp_path / "run", resume=True)  # decay now from 30
    straight, _ = _tiny()
    train(straight, task, TrainConfig(steps=40, **common))
    for (k, a), (_, b) in zip(straight.own_state_dict().items(), extended.own_state_dict().items()):
        assert torch.equal(a, b), k
    other, _ = _tiny()
    train(other, task, TrainConfig(steps=20, **common), out_dir=tmp_path / "b", max_minutes=0)
    with pytest.raises(ValueError, match="another schedule"):  # step 5 had lr 3e-3; a cosine would have given less
        train(_tiny()[0], task, TrainConfig(steps=20, **{**common, "schedule": "cosine"}), out_dir=tmp_path / "b", resume=True)


def test_retrain_zoo_trains_a_seed_name_with_its_seed_and_knows_every_shipped_name(tmp_path):
    from icl_interp.core.checkpoint import read_config, use_zoo
    from icl_interp.core.constructions import CONSTRUCTIONS
    from icl_interp.core.zoo_store import manifest
    from icl_interp.training.presets import _preset_and_seed, retrain_zoo

    got = retrain_zoo(tmp_path, ["tiny-seed3"], threads=1)
    assert got["done"] == ["tiny-seed3"]
    with use_zoo(got["zoo"]):
        cfg = read_config("tiny-seed3")
    assert cfg["model"]["seed"] == 3 and cfg["training"]["train_config"]["seed"] == 3
    assert all(_preset_and_seed(n) is not None for n in manifest() if n not in CONSTRUCTIONS)
    with pytest.raises(ValueError, match="names\\[i\\]"):
        retrain_zoo(tmp_path, ["tiny-seedx"])
