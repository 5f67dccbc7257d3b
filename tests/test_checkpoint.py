import json

import pytest
import torch

from icl_interp.core.checkpoint import load_model, save_model, zoo_names

pytestmark = pytest.mark.tl3


def test_save_load_round_trip_exact(tiny_model, tiny_batch, tmp_path):
    save_model(tiny_model, tmp_path / "m", note="hello")
    loaded = load_model(tmp_path / "m")
    assert torch.equal(loaded(tiny_batch), tiny_model(tiny_batch))
    assert loaded.cfg == tiny_model.cfg
    assert loaded.task == tiny_model.task
    assert loaded.saved_config["note"] == "hello"
    assert not any(p.suffix == ".tmp" for p in (tmp_path / "m").iterdir())


def test_truncated_weights_refused(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "m")
    w = tmp_path / "m" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(ValueError, match="SHA-256"):
        load_model(tmp_path / "m")


def _edit_config(folder, fn):
    cfg = json.loads((folder / "config.json").read_text())
    fn(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_unknown_format_version_refused(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "m")
    _edit_config(tmp_path / "m", lambda c: c.update(format_version=99))
    with pytest.raises(ValueError, match="format_version"):
        load_model(tmp_path / "m")


def test_config_that_does_not_fit_weights_refused(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "m")
    _edit_config(tmp_path / "m", lambda c: c["model"].update(d_model=32, d_head=16, d_mlp=128))
    with pytest.raises(ValueError, match="shape"):
        load_model(tmp_path / "m")


def test_changed_behaviour_refused_by_fingerprint(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "m")
    _edit_config(tmp_path / "m", lambda c: c.update(fingerprint=[0.0] * len(c["fingerprint"])))
    with pytest.raises(ValueError, match="fingerprint"):
        load_model(tmp_path / "m")


def test_truncated_config_refused(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "m")
    c = tmp_path / "m" / "config.json"
    c.write_text(c.read_text()[:40])
    with pytest.raises(ValueError, match="truncated"):
        load_model(tmp_path / "m")


def test_unknown_name_lists_zoo():
    with pytest.raises(ValueError, match="zoo names"):
        load_model("no-such-model")
    with pytest.raises(TypeError, match="path_or_name"):
        load_model(3)


@pytest.mark.skipif("default" not in zoo_names(), reason="the default model is not shipped yet")
def test_default_model_loads_under_this_transformer_lens():
    """The shipped model was saved under one TransformerLens line; it loads (fingerprint checked) under this one."""
    model = load_model("default")
    assert model.task is not None
    batch = model.task.sample(8, model.cfg.max_points, seed=0)
    assert torch.isfinite(model(batch)).all()
