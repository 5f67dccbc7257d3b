"""Importing Garg et al. checkpoints: the Hugging Face model itself is the oracle.

A randomly initialised custom-size model of their architecture (a local replica of
``TransformerModel`` in dtsip/in-context-learning: read-in, ``GPT2Model`` on
``inputs_embeds``, read-out, predictions at the x tokens) is saved the way their
``train.py`` saves it, imported, and compared on the same prompts.
"""

import copy
import json
from dataclasses import replace

import pytest
import torch
from torch import nn

import icl_interp as ii
from icl_interp.cli import main

pytestmark = pytest.mark.tl3

SIZE = dict(n_dims=5, n_positions=11, n_embd=32, n_layer=3, n_head=2)
CONFIG_YAML = """\
model:
  family: gpt2
  n_dims: {n_dims}
  n_embd: {n_embd}
  n_head: {n_head}
  n_layer: {n_layer}
  n_positions: {n_positions}
out_dir: ../models/linear_regression/0
test_run: false
training:
  batch_size: 64
  curriculum:
    dims: {{end: 5, inc: 1, interval: 2000, start: 5}}
    points: {{end: 11, inc: 2, interval: 2000, start: 11}}
  data: gaussian
  task: {task}
  task_kwargs: {task_kwargs}
  train_steps: 5001
"""


class GargStyle(nn.Module):
    """Their TransformerModel's forward, written here: the oracle."""

    def __init__(self, n_dims, n_positions, n_embd, n_layer, n_head):
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        config = GPT2Config(n_positions=2 * n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False)
        self._read_in = nn.Linear(n_dims, n_embd)
        self._backbone = GPT2Model(config)
        self._read_out = nn.Linear(n_embd, 1)

    def forward(self, xs, ys):
        b, n, d = xs.shape
        y_wide = torch.cat([ys[..., None], torch.zeros(b, n, d - 1)], dim=-1)
        tokens = torch.stack([xs, y_wide], dim=2).reshape(b, 2 * n, d)
        hidden = self._backbone(inputs_embeds=self._read_in(tokens)).last_hidden_state
        return self._read_out(hidden)[:, ::2, 0]


def _garg_model(seed=0, **size):
    """Random weights of order one everywhere (GPT-2's 0.02 init would make the comparison weak)."""
    torch.manual_seed(seed)
    model = GargStyle(**{**SIZE, **size}).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "wte" in name:
                continue
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif p.ndim == 1:
                p.copy_(0.3 * torch.randn_like(p))
            elif name == "_read_out.weight":  # predictions of order one: float32 rounding stays far below 1e-5
                p.copy_(torch.randn_like(p) / p.shape[1] ** 0.5)
            else:
                p.copy_(torch.randn_like(p) / min(p.shape) ** 0.5)
    return model


def _write_run(folder, model, *, task="linear_regression", task_kwargs="{}", steps=(100, 200), size=None):
    """A run folder as their train.py leaves it: config.yaml, state.pt, model_{i}.pt."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(CONFIG_YAML.format(**(size or SIZE), task=task, task_kwargs=task_kwargs))
    trained = copy.deepcopy(model)  # one Adam step on a copy: the optimizer state holds tensors and plain values
    opt = torch.optim.Adam(trained.parameters(), lr=1e-4)
    trained(*_prompts(2)).sum().backward()
    opt.step()
    torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": opt.state_dict(), "train_step": 4321},
               folder / "state.pt")
    for i in steps:
        torch.save(model.state_dict(), folder / f"model_{i}.pt")
    return folder


def _prompts(batch=64, n=SIZE["n_positions"], seed=1):
    data = ii.LinearRegression(d=SIZE["n_dims"]).sample(batch, n, seed=seed)
    return data.xs, data.ys


@pytest.fixture(scope="module")
def garg():
    return _garg_model()


@pytest.fixture(scope="module")
def run(garg, tmp_path_factory):
    return _write_run(tmp_path_factory.mktemp("garg") / "run", garg)


@torch.no_grad()
def _assert_same(ours, theirs, n=SIZE["n_positions"]):
    xs, ys = _prompts(n=n)
    want = theirs(xs, ys)
    got = ours(xs, ys)
    assert got.shape == want.shape == (64, n)
    assert want.std() > 0.3  # order-one outputs: the tolerance below means something
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("layout", ["state", "kept", "state_file", "kept_file_with_kwargs"])
def test_import_matches_the_hugging_face_model(garg, run, layout, tmp_path):
    if layout == "state":
        model = ii.import_garg(run)
    elif layout == "kept":
        model = ii.import_garg(run, step=200)
    elif layout == "state_file":  # config.yaml beside the file gives the values
        model = ii.import_garg(run / "state.pt")
    else:  # a lone plain state dict: the values come from the caller
        lone = tmp_path / "model_200.pt"
        lone.write_bytes((run / "model_200.pt").read_bytes())
        model = ii.import_garg(lone, **SIZE)
    cfg = model.cfg
    assert (cfg.d, cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.max_points) == (5, 3, 2, 32, 11)
    assert (cfg.encoding, cfg.act_fn, cfg.normalization) == ("interleaved", "gelu_new", "LN")
    _assert_same(model, garg)
    _assert_same(model, garg, n=4)  # shorter prompts too


def test_provenance_and_task(run):
    model = ii.import_garg(run)
    src = model.imported_from
    assert src["repository"] == "dtsip/in-context-learning" and src["train_step"] == 4321
    assert src["garg_model"] == SIZE and src["file"].endswith("state.pt") and len(src["file_sha256"]) == 64
    assert isinstance(model.task, ii.LinearRegression) and model.task.d == 5 and model.task.noise_std == 0
    assert ii.import_garg(run, step="latest").imported_from["train_step"] == 200
    assert ii.import_garg(run, step=100).imported_from["train_step"] == 100


def test_sparse_task_and_scale_carry_over(garg, tmp_path):
    folder = _write_run(tmp_path / "sparse", garg, task="sparse_linear_regression", task_kwargs="{sparsity: 2, scale: 0.5}")
    task = ii.import_garg(folder).task
    assert isinstance(task, ii.SparseLinearRegression) and (task.s, task.w_std) == (2, 0.5)
    other = _write_run(tmp_path / "tree", garg, task="decision_tree", task_kwargs="{depth: 4}")
    assert ii.import_garg(other).task is None  # no task of ours has that distribution
    assert ii.import_garg(other, task=ii.LinearRegression(d=5)).task.d == 5


def test_hooks_see_the_imported_model(garg, run):
    model = ii.import_garg(run)
    xs, ys = _prompts(8)
    preds, cache = model.run_with_cache(xs, ys)
    assert cache["blocks.2.attn.hook_z"].shape == (8, 21, 2, 16)
    zeroed = model.run_with_hooks(xs, ys, fwd_hooks=[("blocks.2.attn.hook_z", lambda z, hook: z * 0)])
    assert (zeroed - preds).abs().max() > 1e-3


def test_the_comparison_detects_a_wrong_activation(garg, run):
    """With plain gelu instead of gelu_new the outputs differ by far more than the 1e-5 tolerance."""
    model = ii.import_garg(run)
    wrong = ii.ICLTransformer(replace(model.cfg, act_fn="gelu", task=None))
    wrong.load_own_state_dict(model.own_state_dict())
    xs, ys = _prompts()
    with torch.no_grad():
        assert (wrong(xs, ys) - garg(xs, ys)).abs().max() > 1e-4


def test_old_transformers_mask_buffers_are_accepted(garg, tmp_path):
    """transformers < 4.2x saved each layer's causal mask (attn.bias) and masked_bias in the state dict."""
    state = dict(garg.state_dict())
    n = 2 * SIZE["n_positions"]
    for layer in range(SIZE["n_layer"]):
        state[f"_backbone.h.{layer}.attn.bias"] = torch.ones(n, n, dtype=torch.uint8).tril().view(1, 1, n, n)
        state[f"_backbone.h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, tmp_path / "old.pt")
    _assert_same(ii.import_garg(tmp_path / "old.pt", **SIZE), garg)
    state["_backbone.h.1.attn.bias"] = torch.ones(1, 1, n, n, dtype=torch.uint8)
    torch.save(state, tmp_path / "bidirectional.pt")
    with pytest.raises(ValueError, match="not a causal mask"):
        ii.import_garg(tmp_path / "bidirectional.pt", **SIZE)


def test_save_load_round_trip(garg, run, tmp_path):
    model = ii.import_garg(run)
    ii.save_model(model, tmp_path / "ours", imported_from=model.imported_from)
    back = ii.load_model(tmp_path / "ours")
    _assert_same(back, garg)
    assert back.saved_config["imported_from"]["train_step"] == 4321
    assert isinstance(back.task, ii.LinearRegression)


def test_cli(garg, run, tmp_path, capsys):
    assert main(["import-garg", str(run), "--out", str(tmp_path / "a")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_layer"] == 3 and printed["train_step"] == 4321
    _assert_same(ii.load_model(tmp_path / "a"), garg)
    assert main(["import-garg", str(run), "--step", "latest", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "config.json").read_text())["imported_from"]["train_step"] == 200
    lone = tmp_path / "lone.pt"
    lone.write_bytes((run / "model_100.pt").read_bytes())
    args = ["--n-dims", "5", "--n-positions", "11", "--n-embd", "32", "--n-layer", "3", "--n-head", "2"]
    assert main(["import-garg", str(lone), "--out", str(tmp_path / "c"), *args]) == 0
    _assert_same(ii.load_model(tmp_path / "c"), garg)
    capsys.readouterr()
    assert main(["import-garg", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["import-garg", str(run), "--step", "7", "--out", str(tmp_path / "d")]) == 2
    assert "no model_7.pt" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


# -- errors at the boundary ----------------------------------------------------------


def _save(tmp_path, obj, name="w.pt"):
    torch.save(obj, tmp_path / name)
    return tmp_path / name


def test_bad_paths_and_steps(run, tmp_path):
    with pytest.raises(TypeError, match="path must be a str or Path, got int"):
        ii.import_garg(3)
    with pytest.raises(ValueError, match="does not exist"):
        ii.import_garg(tmp_path / "missing")
    with pytest.raises(ValueError, match="has no config.yaml"):
        ii.import_garg(tmp_path)
    with pytest.raises(ValueError, match=r"no model_7.pt; its kept models are steps \[100, 200\]"):
        ii.import_garg(run, step=7)
    with pytest.raises(TypeError, match="step must be None, an int or 'latest', got str 'last'"):
        ii.import_garg(run, step="last")
    with pytest.raises(ValueError, match="step applies to a run folder"):
        ii.import_garg(run / "state.pt", step=100)
    with pytest.raises(TypeError, match="task must be a Task"):
        ii.import_garg(run, task="linear_regression")
    folder = tmp_path / "kept_only"
    folder.mkdir()
    (folder / "config.yaml").write_text((run / "config.yaml").read_text())
    (folder / "model_5.pt").write_bytes((run / "model_100.pt").read_bytes())
    with pytest.raises(ValueError, match=r"has no state.pt; its kept models are steps \[5\]"):
        ii.import_garg(folder)
    assert ii.import_garg(folder, step="latest").imported_from["train_step"] == 5


def test_bad_config_values(garg, run, tmp_path):
    lone = _save(tmp_path, garg.state_dict())
    with pytest.raises(ValueError, match=r"n_head is needed: pass n_head=\.\.\."):
        ii.import_garg(lone, **{**SIZE, "n_head": None})
    with pytest.raises(TypeError, match="n_dims must be an int, got str '5'"):
        ii.import_garg(lone, **{**SIZE, "n_dims": "5"})
    with pytest.raises(ValueError, match="n_embd .32. must be divisible by n_head .3."):
        ii.import_garg(lone, **{**SIZE, "n_head": 3})
    with pytest.raises(ValueError, match="n_layer=4 disagrees with n_layer: 3"):
        ii.import_garg(run, n_layer=4)
    assert ii.import_garg(run, n_layer=3).cfg.n_layers == 3  # agreeing values are fine
    with pytest.raises(ValueError, match=r"_backbone.h.2.attn.c_attn.weight.*\(check n_layer\)"):
        ii.import_garg(lone, **{**SIZE, "n_layer": 2})
    with pytest.raises(ValueError, match=r"lacks \['_backbone.h.3.ln_1.weight'"):
        ii.import_garg(lone, **{**SIZE, "n_layer": 4})
    with pytest.raises(ValueError, match=r"'_read_in.weight' .* shape \(32, 5\), the config values imply \(32, 6\)"):
        ii.import_garg(lone, **{**SIZE, "n_dims": 6})
    with pytest.raises(ValueError, match=r"'_backbone.wpe.weight' .* shape \(22, 32\), the config values imply \(20, 32\)"):
        ii.import_garg(lone, **{**SIZE, "n_positions": 10})


def test_bad_config_files(run, tmp_path):
    def folder_with(text):
        folder = tmp_path / f"f{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "config.yaml").write_text(text)
        (folder / "state.pt").write_bytes((run / "state.pt").read_bytes())
        return folder

    yaml_text = (run / "config.yaml").read_text()
    with pytest.raises(ValueError, match="model.family .* must be 'gpt2' .*, got 'lstm'"):
        ii.import_garg(folder_with(yaml_text.replace("family: gpt2", "family: lstm")))
    with pytest.raises(ValueError, match="must be a mapping with a 'model' mapping"):
        ii.import_garg(folder_with("- just\n- a list\n"))
    with pytest.raises(ValueError, match="is not valid YAML"):
        ii.import_garg(folder_with("model: [unclosed\n"))
    with pytest.raises(ValueError, match="n_head is needed"):
        ii.import_garg(folder_with(yaml_text.replace("  n_head: 2\n", "")))
    # a YAML tag that would build a Python object is refused by the safe loader
    with pytest.raises(ValueError, match="is not valid YAML"):
        ii.import_garg(folder_with(yaml_text + "x: !!python/object/apply:os.system ['true']\n"))


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_bad_weight_files(garg, run, tmp_path, capsys):
    state = garg.state_dict()
    with pytest.raises(ValueError, match=r"the Python object print\b.*never unpickled here") as refused:
        ii.import_garg(_save(tmp_path, {"model_state_dict": state, "extra": _Evil()}, "evil.pt"), **SIZE)
    assert "weights_only" not in str(refused.value) and "safe_globals" not in str(refused.value)  # torch's advice, not ours
    assert "unpickled!" not in capsys.readouterr().out
    raw = (run / "state.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        ii.import_garg(tmp_path / "truncated.pt", **SIZE)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a torch checkpoint"):
        ii.import_garg(tmp_path / "junk.pt", **SIZE)
    with pytest.raises(ValueError, match="must hold a state dict .* got list"):
        ii.import_garg(_save(tmp_path, [1, 2], "list.pt"), **SIZE)
    nan = {**state, "_read_out.bias": torch.tensor([float("nan")])}
    with pytest.raises(ValueError, match="'_read_out.bias' .* must be finite floating point"):
        ii.import_garg(_save(tmp_path, nan, "nan.pt"), **SIZE)
    missing = {k: v for k, v in state.items() if not k.startswith("_read_out")}
    with pytest.raises(ValueError, match=r"lacks \['_read_out.weight'"):
        ii.import_garg(_save(tmp_path, missing, "missing.pt"), **SIZE)
    renamed = {k.replace("_backbone.", "transformer."): v for k, v in state.items()}
    with pytest.raises(ValueError, match="expected a Garg et al. TransformerModel"):
        ii.import_garg(_save(tmp_path, renamed, "renamed.pt"), **SIZE)


def test_float64_weights_are_read_as_float32(garg, tmp_path):
    state = {k: v.double() for k, v in garg.state_dict().items()}
    model = ii.import_garg(_save(tmp_path, state, "f64.pt"), **SIZE)
    assert model.read_in.weight.dtype == torch.float32
    _assert_same(model, garg)
