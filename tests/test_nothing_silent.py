"""Issue 27, nothing silent: the CLI's one-line errors, wandb that never stalls, no stale self-check or clean run,
NaN tool results that raise, loading errors that name the file and the field, zoo names against folders, flag
combinations that refuse, attached prompts longer than the context."""

import errno
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from _util import build_user_hooked

import icl_interp as ii
from icl_interp import cli
from icl_interp.core.checkpoint import load_model, read_config, save_model
from icl_interp.core.model import ICLTransformer, ModelConfig
from icl_interp.core.tasks import SparseLinearRegression
from icl_interp.tools.runner import prepare, run_from
from icl_interp.training import tracking

pytestmark = pytest.mark.tl3   # every case here also runs under transformer-lens 3.x (about 20 s)


def _run_cli(argv, capsys):
    code = cli.main(argv)
    err = capsys.readouterr().err
    return code, err


def _one_line(err, command):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"icl-interp {command}: error: ") and "Traceback" not in err, err
    return lines[0]


def _tiny(seed=0):
    task = SparseLinearRegression(d=4, s=2)
    return ICLTransformer(ModelConfig(d=4, n_layers=2, n_heads=2, d_model=16, max_points=8, seed=seed), task), task


# -- the CLI's error boundary ----------------------------------------------------------------------


class _WandbCommError(Exception):
    """Stands for wandb.errors.CommError: an exception class defined in a wandb module."""


_WandbCommError.__module__ = "wandb.errors.errors"


@pytest.mark.parametrize("error, code, words", [
    (PermissionError(errno.EACCES, "Permission denied", "/ro/out/model"), 2, ["'/ro/out/model'", "Permission denied", "permissions"]),
    (FileExistsError(errno.EEXIST, "File exists", "/runs/x"), 2, ["'/runs/x'", "File exists", "remove it or choose another path"]),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/nope/a.json"), 2, ["'/nope/a.json'", "check the path"]),
    (OSError(errno.ENOSPC, "No space left on device", "/full/state.json"), 2, ["'/full/state.json'", "free some disk space"]),
    (FloatingPointError("the loss or its gradient became non-finite at step 3"), 2, ["non-finite at step 3", "--lr"]),
    (_WandbCommError("api.wandb.ai unreachable"), 2, ["Weights & Biases", "unreachable", "WANDB_MODE=offline", "wandb sync"]),
    (ImportError("log_to='wandb' needs the wandb package (pip install wandb)"), 2, ["pip install wandb"]),
    (KeyboardInterrupt(), 130, ["interrupted", "--resume"]),
    (AssertionError("an invariant broke"), 1, ["internal error", "AssertionError", "an invariant broke", "--debug", "report it"]),
    (RuntimeError("a torch kernel failed\nwith two lines"), 1, ["internal error", "RuntimeError", "with two lines", "--debug"]),
])
def test_every_error_ends_in_one_line_and_a_status(monkeypatch, capsys, error, code, words):
    def fail(args):
        raise error

    monkeypatch.setattr(cli, "_evaluate", fail)
    got, err = _run_cli(["evaluate", "default"], capsys)
    assert got == code
    line = _one_line(err, "evaluate")
    for word in words:
        assert word in line, (word, line)


def test_debug_prints_the_traceback_and_the_same_line(monkeypatch, capsys):
    def fail(args):
        raise PermissionError(errno.EACCES, "Permission denied", "/ro/x")

    monkeypatch.setattr(cli, "_evaluate", fail)
    for argv in (["--debug", "evaluate", "default"], ["evaluate", "default", "--debug"]):
        got, err = _run_cli(argv, capsys)
        assert got == 2 and "Traceback" in err and "PermissionError" in err
        assert err.strip().splitlines()[-1].startswith("icl-interp evaluate: error: '/ro/x': Permission denied")


def test_debug_in_a_subprocess(tmp_path):
    """The real entry point: without --debug one line, with it the traceback too; status 2 both times."""
    env = {**os.environ, "PYTHONPATH": str(Path(ii.__file__).parents[1])}
    cmd = [sys.executable, "-m", "icl_interp"]
    plain = subprocess.run(cmd + ["evaluate", "no-such-model"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    debug = subprocess.run(cmd + ["--debug", "evaluate", "no-such-model"], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=300)
    assert plain.returncode == 2 and debug.returncode == 2
    assert "Traceback" not in plain.stderr and len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    assert "Traceback (most recent call last)" in debug.stderr and "resolve_model" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()


def test_a_diverging_learning_rate_ends_in_one_line(tmp_path, capsys):
    got, err = _run_cli(["train", "--preset", "tiny", "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1",
                         "--lr", "1e30", "--steps", "5"], capsys)
    assert got == 2
    assert "non-finite" in _one_line(err, "train")


def test_an_output_path_under_a_file_ends_in_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    got, err = _run_cli(["build-construction", "construction-gd", "--out", str(tmp_path / "file" / "model")], capsys)
    assert got == 2
    assert str(tmp_path / "file") in _one_line(err, "build-construction")


def test_evaluate_out_that_cannot_be_a_file_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    """--out's missing folders are created (test_cli_help); a path under a file, or a folder, is refused before loading."""
    monkeypatch.setattr("icl_interp.core.checkpoint.load_model", lambda *a, **k: pytest.fail("loaded before checking --out"))
    (tmp_path / "file").write_text("")
    for out, named in ((tmp_path / "file" / "e.json", tmp_path / "file"), (tmp_path, tmp_path)):
        got, err = _run_cli(["evaluate", "default", "--out", str(out)], capsys)
        assert got == 2 and str(named) in _one_line(err, "evaluate")


@pytest.mark.parametrize("flags", [["--presets", "default"], ["--max-minutes", "5"], ["--zoo-dir", "z"],
                                   ["--presets", "default", "--max-minutes", "5"]])
def test_report_retrain_flags_without_retrain_refuse(flags, capsys, monkeypatch):
    monkeypatch.setattr("icl_interp.analysis.report.write_report", lambda *a, **k: pytest.fail("the report ran"))
    got, err = _run_cli(["report", "--out", "unused", *flags], capsys)
    assert got == 2
    line = _one_line(err, "report")
    assert "--retrain" in line and all(f in line for f in flags if f.startswith("--"))


# -- wandb: offline without credentials, a short timeout with them ---------------------------------


@pytest.fixture
def fake_wandb(monkeypatch, tmp_path):
    """A stand-in wandb module recording how init was called (the real one is never imported here)."""
    calls = []
    errors = types.ModuleType("wandb.errors")

    class Error(Exception):
        pass

    class CommError(Error):
        pass

    errors.Error, errors.CommError = Error, CommError
    mod = types.ModuleType("wandb")
    mod.errors = errors
    mod.Settings = lambda **kw: ("Settings", kw)
    mod.fail_with = None

    class Run:
        def log(self, *a, **k):
            pass

        def finish(self):
            pass

    def init(**kw):
        calls.append(kw)
        if mod.fail_with is not None:
            raise mod.fail_with
        return Run()

    mod.init, mod.calls = init, calls
    monkeypatch.setitem(sys.modules, "wandb", mod)
    monkeypatch.setitem(sys.modules, "wandb.errors", errors)
    for var in ("WANDB_API_KEY", "WANDB_MODE", "NETRC", "WANDB_DIR", "WANDB_INIT_TIMEOUT", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return mod


def test_wandb_without_credentials_logs_offline_and_says_how_to_sync(fake_wandb, tmp_path, capsys):
    tracker = tracking.start("wandb", tmp_path / "run", {"a": 1})
    assert tracker is not None and fake_wandb.calls[0]["mode"] == "offline"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "offline" in err[0] and f"wandb sync {tmp_path / 'run' / 'wandb'}" in err[0]


@pytest.mark.parametrize("how", ["key", "netrc"])
def test_wandb_with_credentials_goes_online_with_a_short_timeout(fake_wandb, tmp_path, monkeypatch, capsys, how):
    if how == "key":
        monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    else:
        netrc = tmp_path / "home" / ".netrc"
        netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
        netrc.chmod(0o600)
    tracking.start("wandb", tmp_path / "run", {})
    kw = fake_wandb.calls[0]
    assert "mode" not in kw and kw["settings"] == ("Settings", {"init_timeout": tracking.INIT_TIMEOUT_S})
    assert tracking.INIT_TIMEOUT_S <= 30 and capsys.readouterr().err == ""


def test_wandb_that_cannot_start_says_how_to_go_offline(fake_wandb, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    fake_wandb.fail_with = fake_wandb.errors.CommError("Run initialization has timed out after 20.0 sec.")
    with pytest.raises(ConnectionError, match=r"timed out after 20.0 sec.*WANDB_MODE=offline.*wandb sync"):
        tracking.start("wandb", tmp_path / "run", {})


def test_wandb_mode_set_by_the_user_is_left_alone(fake_wandb, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    tracking.start("wandb", tmp_path / "run", {})
    assert "mode" not in fake_wandb.calls[0] and capsys.readouterr().err == ""


def test_wandb_missing_is_an_import_error_with_the_pip_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match="pip install wandb"):
        tracking.start("wandb", tmp_path / "run", {})


# -- no stale state, no silent NaN ----------------------------------------------------------------


def _unembed(model):
    """The read-out weight (the core's last parameter on both TransformerLens lines: W_U on 3.x, head.weight on 4.x)."""
    return list(model.hooked.parameters())[-1]


@pytest.mark.parametrize("edit", ["no_grad", "data"])
def test_a_weight_edit_after_the_self_check_is_checked_again(edit):
    model, task = _tiny()
    batch = task.sample(8, 6, seed=1)
    assert torch.isfinite(ii.head_importance(model, batch)).all()   # the self-check ran and was cached
    if edit == "no_grad":
        with torch.no_grad():
            _unembed(model).fill_(float("nan"))
    else:
        _unembed(model).data.fill_(float("nan"))   # bypasses autograd's version counter: the checksum sees it
    with pytest.raises(ValueError, match="NaN or Inf"):
        ii.head_importance(model, batch)


def test_a_clean_run_prepared_before_a_weight_edit_is_refused():
    model, task = _tiny()
    batch = task.sample(8, 6, seed=1)
    run = prepare(model, batch)
    before = ii.head_importance(model, run)
    with torch.no_grad():
        model.read_in.weight.mul_(2.0)
    with pytest.raises(ValueError, match="CleanRun prepared before the model's weights changed"):
        ii.head_importance(model, run)
    fresh = ii.head_importance(model, prepare(model, batch))
    assert torch.allclose(fresh, ii.head_importance(model, batch)) and not torch.allclose(fresh, before)


def test_head_importance_whose_result_is_nan_names_the_head():
    model, task = _tiny()
    batch = task.sample(8, 6, seed=1)
    clean = prepare(model, batch).preds

    def metric(preds, b):   # finite on the clean predictions, NaN on any ablated ones
        err = ((preds - b.ys) ** 2).mean()
        return err if torch.equal(preds, clean) else err * float("nan")

    with pytest.raises(ValueError, match=r"head_importance \(zero-ablating L0H0\): the metric is nan where the model's own output is finite"):
        ii.head_importance(model, batch, metric=metric)


def test_an_intervention_that_gives_nan_names_the_site():
    model, task = _tiny()
    run = prepare(model, task.sample(4, 6, seed=1))
    with pytest.raises(ValueError, match=r"my_tool: the output with interventions at blocks.1.attn.hook_z is NaN or Inf"):
        run_from(model, run.resids[0], 0, run.batch, [("blocks.1.attn.hook_z", lambda z, hook=None: z * float("nan"))], tool="my_tool")


def test_gradient_importance_that_is_nan_names_the_heads(monkeypatch):
    model, task = _tiny()
    batch = task.sample(8, 6, seed=1)
    import icl_interp.tools.importance as imp

    real = torch.autograd.grad
    monkeypatch.setattr(imp.torch.autograd, "grad", lambda *a, **k: tuple(g * float("nan") for g in real(*a, **k)))
    with pytest.raises(ValueError, match=r"method='gradient'\): the gradient score is NaN or Inf at heads L0H0, L0H1"):
        ii.head_importance(model, batch, method="gradient")


# -- loading errors name the file and the field ----------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    model, _ = _tiny()
    return save_model(model, tmp_path / "m")


def _edit_config(folder, fn):
    cfg = folder / "config.json"
    cfg.write_text(json.dumps(fn(json.loads(cfg.read_text()))))


def test_a_config_that_is_a_list_or_binary_names_the_file(saved):
    cfg = saved / "config.json"
    cfg.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"config.json must hold a JSON object, got a JSON list"):
        load_model(saved)
    cfg.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(ValueError, match=r"config.json is not UTF-8 text"):
        load_model(saved)


@pytest.mark.parametrize("field, value, text", [
    ("fingerprint", None, "field 'fingerprint' must be a list of numbers"),
    ("fingerprint", "drop", "has no 'fingerprint' field"),
    ("fingerprint", [], "field 'fingerprint' must be a non-empty list of numbers"),
    ("weights_sha256", "drop", "has no 'weights_sha256' field"),
    ("weights_sha256", None, "field 'weights_sha256' must be the weights' SHA-256"),
    ("model", "drop", "has no 'model' field"),
    ("model", {"d": 4, "heads": 3}, "field 'model': model config has unknown fields ['heads']"),
])
def test_a_missing_or_wrong_field_is_named(saved, field, value, text):
    _edit_config(saved, lambda c: {k: v for k, v in c.items() if k != field} if value == "drop" else {**c, field: value})
    with pytest.raises(ValueError) as info:
        load_model(saved)
    assert text in str(info.value) and str(saved / "config.json") in str(info.value)
    assert "truncated or replaced" not in str(info.value)


def test_a_garbage_config_yaml_names_the_file(tmp_path):
    from icl_interp.core.garg import read_garg_config

    path = tmp_path / "config.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(128, 256)))
    with pytest.raises(ValueError, match=r"config.yaml' is not UTF-8 text"):
        read_garg_config(path)


class _System:
    def __reduce__(self):
        return (os.system, ("echo pickled code ran",))


def test_a_refused_pickle_names_the_blocked_global_and_never_advises_weights_only_false(tmp_path, capfd):
    path = tmp_path / "evil.pt"
    torch.save({"model_state_dict": {}, "extra": _System()}, path)
    with pytest.raises(ValueError) as info:
        ii.import_garg(path, n_dims=5, n_positions=11, n_embd=32, n_layer=3, n_head=2)
    text = str(info.value)
    assert f"the Python object {os.system.__module__}.system" in text and "never unpickled here" in text
    assert "weights_only" not in text and "safe_globals" not in text
    assert "pickled code ran" not in capfd.readouterr().out


def test_a_training_checkpoint_json_names_the_file_and_field(tmp_path):
    from icl_interp.training.state import load_state, save_state

    model, task = _tiny()
    opt = torch.optim.AdamW(model.parameters())
    meta = {"train_config": {}, "model_config": model.cfg.to_dict(), "task": task.to_dict(), "log": []}
    save_state(tmp_path, model, opt, 3, meta)   # one file: the JSON rides in the safetensors header
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    from icl_interp.training.state import _META_KEY, read_state

    path = tmp_path / "state.safetensors"
    state, tensors = read_state(tmp_path), st_load(path.read_bytes())
    path.write_bytes(st_save(tensors, metadata={_META_KEY: json.dumps({k: v for k, v in state.items() if k != "sha256"})}))
    with pytest.raises(ValueError, match=r"state.safetensors: field 'sha256' is missing"):
        load_state(tmp_path, model, opt)
    path.write_bytes(st_save(tensors, metadata={_META_KEY: "[]"}))
    with pytest.raises(ValueError, match=r"state.safetensors has format_version 'list'"):
        load_state(tmp_path, model, opt)


# -- zoo names and folders -------------------------------------------------------------------------


def test_a_zoo_name_that_is_also_a_folder_is_refused_with_both_spellings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model, _ = _tiny(seed=3)
    save_model(model, "default")   # a local folder named like the shipped model
    with pytest.raises(ValueError, match=r"'default' is both a zoo model and a folder here .*zoo:default.*\./default"):
        load_model("default")
    mine = load_model("./default")
    assert mine.cfg.to_dict() == model.cfg.to_dict()
    assert load_model(Path("default")).cfg.to_dict() == model.cfg.to_dict()   # a Path is always a folder
    shipped = load_model("zoo:default")
    assert shipped.cfg.to_dict() == read_config("zoo:default")["model"] != model.cfg.to_dict()
    assert load_model().cfg.to_dict() == shipped.cfg.to_dict()   # the default argument is the zoo's
    got, err = _run_cli(["evaluate", "default"], capsys)
    assert got == 2 and "zoo:default" in _one_line(err, "evaluate")
    got, err = _run_cli(["report", "--model", "default", "--out", "r"], capsys)
    assert got == 2 and "./default" in _one_line(err, "report")
    from icl_interp.core.checkpoint import resolve_model

    assert resolve_model("zoo:default")[1] == "default" and resolve_model("./default") == (Path("./default"), None)


def test_a_report_on_zoo_prefixed_name_keeps_its_label_and_siblings(tmp_path, monkeypatch):
    from icl_interp.analysis.report import _resolve

    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()
    label, _, sib = _resolve("zoo:default")
    assert label == "default" and sib == ii.zoo.siblings("default") and sib.head_counts


def test_siblings_of_a_typo_raises_like_load_model():
    with pytest.raises(ValueError, match=r"'defualt' is not in the zoo; zoo names: \[.*'default'"):
        ii.zoo.siblings("defualt")
    with pytest.raises(ValueError, match="zoo names"):
        load_model("defualt")
    assert ii.zoo.siblings("zoo:default") == ii.zoo.siblings("default")


# -- flag combinations -----------------------------------------------------------------------------


def test_min_points_above_what_the_run_trains_on_is_refused(tmp_path):
    model, task = _tiny()
    with pytest.raises(ValueError, match=r"min_points \(6\) exceeds n_points \(5\)"):
        ii.TrainConfig(n_points=5, min_points=6)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"min_points \(12\) exceeds the longest prompt of the run \(8"):
        ii.train(model, task, ii.TrainConfig(steps=2, batch_size=4, min_points=12, progress=False))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))   # refused before any step


# -- an attached model and its context -------------------------------------------------------------


@pytest.mark.parametrize("encoding, n_ctx, n_points, n_tokens, most", [("concat", 8, 12, 12, 8), ("interleaved", 15, 10, 19, 8)])
def test_an_attached_prompt_longer_than_n_ctx_is_refused_before_transformer_lens(encoding, n_ctx, n_points, n_tokens, most):
    task = SparseLinearRegression(d=4, s=2)
    hooked = build_user_hooked(n_ctx=n_ctx)
    proj = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))

    def encode(batch):
        if encoding == "concat":
            ys = batch.ys.clone()
            ys[:, -1] = 0
            return torch.cat([batch.xs, ys.unsqueeze(-1)], -1) @ proj
        b, n, d = batch.xs.shape
        y_tok = torch.cat([batch.ys.unsqueeze(-1), torch.zeros(b, n, d)], -1)
        x_tok = torch.cat([batch.xs, torch.zeros(b, n, 1)], -1)
        return (torch.stack([x_tok, y_tok], 2).reshape(b, 2 * n, d + 1)[:, :-1]) @ proj

    model = ii.attach(hooked, encode=encode, readout=lambda out: out[:, -1, 0], task=task)
    called = []
    hooked.blocks[0].register_forward_pre_hook(lambda *a: called.append(1))
    with pytest.raises(ValueError, match=rf"prompts of {n_points} points encode to {n_tokens} tokens, more than the model's "
                                         rf"n_ctx \({n_ctx}\): at most {most} points fit"):
        ii.head_importance(model, task.sample(4, n_points, seed=0))
    assert not called
    assert torch.isfinite(ii.head_importance(model, task.sample(4, most, seed=0))).all()
