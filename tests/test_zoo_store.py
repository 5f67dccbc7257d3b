"""The zoo outside the wheel: the manifest, the cache, downloads over a loopback HTTP server, publishing."""

import functools
import http.server
import json
import shutil
import threading

import pytest
import torch

import icl_interp as ii
from icl_interp.core import zoo_store as store

pytest.importorskip("pooch")

MODELS = ("softmax-p8-h1", "softmax-p16-h1")   # two small shipped models make the published zoo of these tests


def test_the_manifest_records_every_file_of_the_checkouts_zoo():
    """index.json's "files" is the zoo as checked out (run `python -m icl_interp.zoo refresh` after shipping a model)."""
    recorded = store.manifest()
    assert sorted(recorded) == ii.zoo_names()
    for name in recorded:
        assert store.file_records(store.HERE / name) == recorded[name], name
    assert set(store.legacy()) == {n for n in recorded if "-v1" in n or "-v2" in n}


@pytest.fixture
def published(tmp_path, monkeypatch):
    """A published zoo of MODELS served on 127.0.0.1, an installation that ships none of them, an empty cache."""
    src = tmp_path / "checkout"
    src.mkdir()
    index = json.loads(store.INDEX.read_text())
    index["files"] = {n: index["files"][n] for n in MODELS}
    for n in MODELS:
        shutil.copytree(store.HERE / n, src / n)
    (src / "index.json").write_text(json.dumps(index))
    pub = tmp_path / "published"
    assert store.publish(pub, zoo=src) == {"models": 2, "files": 6, "bytes": sum(r["size"] for n in MODELS for r in index["files"][n].values())}
    installed = tmp_path / "installed"   # a wheel's zoo folder: the index, no models
    installed.mkdir()
    (installed / "index.json").write_text(json.dumps(index))
    monkeypatch.setattr(store, "INDEX", installed / "index.json")
    monkeypatch.setattr(store, "HERE", installed)
    monkeypatch.setenv(store.ENV_CACHE, str(tmp_path / "cache"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(pub))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(store.ENV_URL, f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield pub
    finally:
        server.shutdown()
        server.server_close()


def test_a_model_not_installed_is_downloaded_checked_and_then_served_from_the_cache(published, monkeypatch):
    got = store.fetch("softmax-p8-h1")
    assert got == store.cache_dir() / "softmax-p8-h1"
    a, b = ii.load_model(got).own_state_dict(), ii.load_model("softmax-p8-h1").own_state_dict()   # the shipped one (checkout)
    assert all(torch.equal(a[k], b[k]) for k in b)
    monkeypatch.setenv(store.ENV_URL, "http://127.0.0.1:9")   # nothing listens there: a cache hit needs no network
    assert store.fetch("softmax-p8-h1") == got and store.local_folder("softmax-p8-h1") == got


def test_a_file_that_does_not_match_its_hash_is_refused_and_not_kept(published):
    weights = published / "softmax-p16-h1" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="model.safetensors does not match the SHA-256"):
        store.fetch("softmax-p16-h1")
    assert store.local_folder("softmax-p16-h1") is None
    assert not (store.cache_dir() / "softmax-p16-h1" / "model.safetensors").exists()


def test_offline_the_error_names_the_setting_and_the_files(published, monkeypatch):
    monkeypatch.setenv(store.ENV_URL, "http://127.0.0.1:9")
    with pytest.raises(store.ZooFetchError, match=r"ICL_INTERP_ZOO_URL.*|could not download") as e:
        store.fetch("softmax-p16-h1")
    assert "config.json, model.safetensors, training_log.json" in str(e.value) and store.ENV_URL in str(e.value)
    monkeypatch.delenv(store.ENV_URL)
    with pytest.raises(store.ZooFetchError, match="no download location is set: set ICL_INTERP_ZOO_URL"):
        store.fetch("softmax-p16-h1")
    with pytest.raises(ValueError, match="not a zoo model"):
        store.fetch("softmax-p99-h1")


def test_publish_refuses_a_used_folder_and_a_checkout_that_differs_from_its_record(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    with pytest.raises(ValueError, match="empty or new folder"):
        store.publish(tmp_path / "used")
    src = tmp_path / "checkout"
    shutil.copytree(store.HERE / MODELS[0], src / MODELS[0])
    index = {"files": {MODELS[0]: store.manifest()[MODELS[0]]}}
    (src / MODELS[0] / "training_log.json").write_text("[]")
    (src / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="differs from index.json's record"):
        store.publish(tmp_path / "out", zoo=src)


def test_load_model_by_name_fetches_a_model_the_installation_lacks(published):
    model = ii.load_model("softmax-p16-h1")   # not in the (simulated) installation: downloaded into the cache
    assert model.cfg.d_model == 16 and (store.cache_dir() / "softmax-p16-h1" / "model.safetensors").is_file()


@pytest.mark.slow
def test_the_wheel_carries_the_code_the_index_and_the_default_model_only(tmp_path):
    """The wheel's size: about 1 MB (the default's weights, 0.8 MB, are most of it); every other zoo file is fetched."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    zoo_files = sorted(n for n in names if n.startswith("icl_interp/zoo/") and not n.endswith(".py"))
    assert zoo_files == ["icl_interp/zoo/default/" + f for f in ("config.json", "dynamics.json", "model.safetensors", "training_log.json")] \
        + ["icl_interp/zoo/index.json"]
    assert wheel.stat().st_size < 2_000_000, wheel.stat().st_size
    assert "icl_interp/core/zoo_store.py" in names and "probes/targets.py" in names
