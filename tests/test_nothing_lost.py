"""Nothing lost: every artifact on disk is replaced as one unit, and every check that can come before the work does.

A failure is injected at the k-th disk write of each write path, for every k (``_disk.DiskFaults``: a file
write that stores half its data then fails as a full disk does, a failing fsync, replace, rename or link);
after each one the previous artifact still loads. A training run with a checkpoint every step is killed
with SIGKILL at random moments and ends bitwise equal to an unbroken run.
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _disk import DiskFaults, InjectedFault, write_legacy_checkpoint
from safetensors.torch import load_file

from icl_interp.core.atomic import atomic_write_bytes
from icl_interp.core.checkpoint import load_model, save_model
from icl_interp.training.loop import TrainConfig, train
from icl_interp.training.presets import get_preset, preset_model
from icl_interp.training.state import has_checkpoint, read_state

pytestmark = pytest.mark.tl3


def _weights_equal(a, b):
    sa, sb = a.own_state_dict(), b.own_state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _no_forward(model):
    """A hook that fails the test if the model runs a forward (a training step)."""
    def hook(*_):
        raise AssertionError("a training step ran before the check that should have refused the run")
    return model.read_in.register_forward_hook(hook)


# -- save_model --------------------------------------------------------------------------------------------------------

def test_save_model_over_a_model_fails_at_every_write_and_the_old_model_still_loads(tmp_path):
    old_model, new_model = preset_model("tiny", seed=0), preset_model("tiny", seed=1)
    template = tmp_path / "template" / "m"
    save_model(old_model, template, note="old")
    (template / "dynamics.json").write_text('{"kept": true}')  # a zoo model's other files are carried over
    (template / "snapshots" / "step_0000001").mkdir(parents=True)
    (template / "snapshots" / "step_0000001" / "x.txt").write_text("snapshot")

    def fresh(k):
        folder = tmp_path / f"k{k}"
        shutil.copytree(template.parent, folder)
        return folder / "m"

    path = fresh(0)
    with pytest.MonkeyPatch.context() as mp:
        dry = DiskFaults(mp)
        save_model(new_model, path, note="new")
    n = len(dry.ops)
    commit = dry.index("rename", ".m.new-", default=n)  # the rename that switches the new folder in

    for k in range(1, n + 1):
        path = fresh(k)
        with pytest.MonkeyPatch.context() as mp:
            faults = DiskFaults(mp, fail_at=k)
            try:
                save_model(new_model, path, note="new")
                raised = False
            except InjectedFault:
                raised = True
        assert faults.fired is not None
        loaded = load_model(path)
        expect_old = raised and k <= commit
        assert loaded.saved_config["note"] == ("old" if expect_old else "new"), (k, faults.fired)
        assert _weights_equal(loaded, old_model if expect_old else new_model), (k, faults.fired)
        assert json.loads((path / "dynamics.json").read_text()) == {"kept": True}
        assert (path / "snapshots" / "step_0000001" / "x.txt").read_text() == "snapshot"
        assert not [p.name for p in path.parent.iterdir() if ".new-" in p.name], k  # no half-written folder left
    assert n >= 8 and commit < n  # a write, an fsync per file, the folders synced, two renames, the parent synced


def test_a_model_set_aside_by_an_interrupted_save_is_moved_back_by_the_loader(tmp_path):
    model = preset_model("tiny")
    save_model(model, tmp_path / "m")
    os.rename(tmp_path / "m", tmp_path / ".m.old")  # killed between the two renames of a save over it
    with pytest.warns(UserWarning, match="nothing is lost"):
        loaded = load_model(tmp_path / "m")
    assert _weights_equal(loaded, model) and (tmp_path / "m" / "config.json").is_file()
    assert not (tmp_path / ".m.old").exists()
    save_model(preset_model("tiny", seed=3), tmp_path / "m")  # and saving over it works again
    assert _weights_equal(load_model(tmp_path / "m"), preset_model("tiny", seed=3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_extra_that_is_not_json_is_refused_before_anything_is_written(tmp_path):
    model = preset_model("tiny")
    save_model(model, tmp_path / "m", note="old")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    with pytest.raises(TypeError, match=r"extra\['training'\]\['when'\]"):
        save_model(preset_model("tiny", seed=1), tmp_path / "m", training={"when": object()})
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    with pytest.raises(ValueError, match="format"):
        save_model(model, tmp_path / "m", format="mine")
    with pytest.raises(ValueError, match="is a file"):
        (tmp_path / "f").write_text("x")
        save_model(model, tmp_path / "f")


# -- training checkpoints ----------------------------------------------------------------------------------------------

def _tiny_cfg(**kw):
    spec = get_preset("tiny")["train"]
    return TrainConfig(**{**spec, "steps": 4, "checkpoint_every": 2, "eval_prompts": 16, "progress": False, **kw})


def test_a_checkpoint_fails_at_every_write_and_the_run_still_resumes_bitwise(tmp_path):
    straight = preset_model("tiny")
    with pytest.MonkeyPatch.context() as mp:
        dry = DiskFaults(mp)
        want = train(straight, straight.task, _tiny_cfg(), out_dir=tmp_path / "straight")
    assert len(dry.ops) >= 20  # two checkpoints (state, log.json), the final model

    for k in range(1, len(dry.ops) + 1):
        out = tmp_path / f"k{k}"
        model = preset_model("tiny")
        with pytest.MonkeyPatch.context() as mp:
            faults = DiskFaults(mp, fail_at=k)
            with pytest.raises(InjectedFault):
                train(model, model.task, _tiny_cfg(), out_dir=out)
        assert faults.fired is not None
        resumed = preset_model("tiny")
        got = train(resumed, resumed.task, _tiny_cfg(), out_dir=out, resume=True)
        assert _weights_equal(resumed, straight), (k, faults.fired)
        assert [e["loss"] for e in got["log"]] == [e["loss"] for e in want["log"]], k
        assert _weights_equal(load_model(out / "model"), straight), k


def test_the_checkpoint_is_one_file_with_its_json_in_the_header(tmp_path):
    model = preset_model("tiny")
    train(model, model.task, _tiny_cfg(), out_dir=tmp_path, max_minutes=0)
    ckpt = tmp_path / "checkpoint"
    assert sorted(p.name for p in ckpt.iterdir()) == ["state.safetensors"]
    from safetensors import safe_open

    with safe_open(ckpt / "state.safetensors", framework="pt") as f:
        doc = json.loads(f.metadata()["icl_interp.train_state"])
    assert doc["step"] == 2 and doc["format_version"] == 2 and doc == read_state(ckpt)
    data = (ckpt / "state.safetensors").read_bytes()
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF  # one bit of a tensor: the SHA-256 of the data section catches it
    (ckpt / "state.safetensors").write_bytes(bytes(flipped))
    fresh = preset_model("tiny", seed=5)
    with pytest.raises(ValueError, match="SHA-256"):
        train(fresh, fresh.task, _tiny_cfg(), out_dir=tmp_path, resume=True)
    assert _weights_equal(fresh, preset_model("tiny", seed=5))  # refused before a weight was touched


def test_a_run_begun_in_the_two_file_form_resumes_bitwise_and_the_one_file_form_wins(tmp_path):
    straight = preset_model("tiny")
    train(straight, straight.task, _tiny_cfg(steps=6), out_dir=tmp_path / "straight")

    out = tmp_path / "run"
    model = preset_model("tiny")
    train(model, model.task, _tiny_cfg(steps=6), out_dir=out, max_minutes=0)  # stops at step 2
    write_legacy_checkpoint(out / "checkpoint")  # as a run in progress under the old code left it
    stale = (out / "checkpoint" / "state.json").read_text()
    assert read_state(out / "checkpoint")["format_version"] == 1
    model = preset_model("tiny", seed=9)
    train(model, model.task, _tiny_cfg(steps=6), out_dir=out, resume=True, max_minutes=0)  # step 4, one-file form
    assert not (out / "checkpoint" / "state.json").exists()  # the stale JSON is removed

    (out / "checkpoint" / "state.json").write_text(stale)  # a folder holding both forms (killed before the removal)
    assert has_checkpoint(out / "checkpoint") and read_state(out / "checkpoint")["step"] == 4
    model = preset_model("tiny", seed=9)
    train(model, model.task, _tiny_cfg(steps=6), out_dir=out, resume=True)
    assert _weights_equal(model, straight)


@pytest.mark.slow
def test_a_run_killed_with_sigkill_at_random_moments_ends_bitwise_equal(tmp_path):
    """A checkpoint every step (most of a step's time is its checkpoint write), SIGKILL at random moments, resume after each."""
    import icl_interp

    overrides = {"steps": 60, "checkpoint_every": 1, "threads": 1, "progress": False, "eval_prompts": 16}
    child = ("import sys, json; from icl_interp.training.presets import train_preset; "
             "train_preset('tiny', sys.argv[1], resume=sys.argv[2] == '1', overrides=json.loads(sys.argv[3]))")
    root = str(Path(icl_interp.__file__).resolve().parent.parent)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}

    def start(resume):
        return subprocess.Popen([sys.executable, "-c", child, str(out), "1" if resume else "0", json.dumps(overrides)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    def step():
        return read_state(out / "checkpoint")["step"] if has_checkpoint(out / "checkpoint") else 0

    out, rng, kills = tmp_path / "killed", random.Random(27), []
    for attempt in range(3):
        last = step()
        proc = start(resume=attempt > 0)
        deadline = time.time() + 180
        while proc.poll() is None and time.time() < deadline and step() <= last:  # training again (past the import)
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.15))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(step())  # the checkpoint a kill leaves is whole: read_state would refuse a torn one
        assert kills[-1] > last and not (out / "model").exists()
    assert len(kills) == 3 and kills[-1] < overrides["steps"], kills
    res = subprocess.run([sys.executable, "-c", child, str(out), "1", json.dumps(overrides)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert res.returncode == 0, res.stderr

    from icl_interp.training.presets import train_preset

    train_preset("tiny", tmp_path / "straight", overrides=overrides)  # unbroken, in this process (one thread too)
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(out / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[e["loss"] for e in read_state(f / "checkpoint")["log"]] for f in (out, tmp_path / "straight")]
    assert losses[0] == losses[1]


# -- checks before the work --------------------------------------------------------------------------------------------

def test_a_refused_resume_leaves_the_callers_model_untouched(tmp_path):
    model = preset_model("tiny")
    train(model, model.task, _tiny_cfg(), out_dir=tmp_path, max_minutes=0)
    from icl_interp.core.tasks import task_from_dict

    other_task = task_from_dict({**get_preset("tiny")["task"], "noise_std": 0.5})
    mine = preset_model("tiny", seed=4)
    task_before = dict(mine.cfg.task)
    handle = _no_forward(mine)
    with pytest.raises(ValueError, match="cannot resume: (model_config|task)"):
        train(mine, other_task, _tiny_cfg(), out_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="cannot resume: train_config"):
        train(mine, mine.task, _tiny_cfg(batch_size=8), out_dir=tmp_path, resume=True)
    handle.remove()
    assert _weights_equal(mine, preset_model("tiny", seed=4)) and mine.cfg.task == task_before


def test_an_out_dir_that_is_a_file_or_unwritable_fails_before_any_step(tmp_path, monkeypatch):
    model = preset_model("tiny")
    handle = _no_forward(model)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ValueError, match="out_dir .* is a file"):
        train(model, model.task, _tiny_cfg(), out_dir=tmp_path / "file")
    with pytest.raises(ValueError, match="out_dir .* cannot be created"):
        train(model, model.task, _tiny_cfg(), out_dir=tmp_path / "file" / "run")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint").write_text("a file where the checkpoint folder goes")
    with pytest.raises(ValueError, match="checkpoint"):
        train(model, model.task, _tiny_cfg(), out_dir=tmp_path / "run")

    readonly = tmp_path / "readonly"
    readonly.mkdir()
    if os.geteuid() != 0:
        readonly.chmod(0o555)
    else:  # root writes through permission bits: make the folder refuse new files as a read-only disk would
        import tempfile

        real = tempfile.mkstemp

        def refuse(*args, dir=None, **kwargs):
            if dir is not None and str(dir).startswith(str(readonly)):
                raise PermissionError(13, "Permission denied", str(dir))
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    try:
        with pytest.raises(ValueError, match="out_dir .* is not writable"):
            train(model, model.task, _tiny_cfg(), out_dir=readonly)
    finally:
        readonly.chmod(0o755)
    handle.remove()
    assert _weights_equal(model, preset_model("tiny"))


def test_an_extra_that_is_not_json_fails_before_any_step(tmp_path):
    with pytest.raises(TypeError, match=r"extra\['run'\]"):
        TrainConfig(extra={"run": {1, 2}})
    cfg = _tiny_cfg()
    cfg.extra["run"] = object()  # changed after the config was checked
    model = preset_model("tiny")
    handle = _no_forward(model)
    with pytest.raises(TypeError, match=r"cfg.extra\['run'\]"):
        train(model, model.task, cfg, out_dir=tmp_path)
    handle.remove()
    assert not has_checkpoint(tmp_path / "checkpoint")


def test_evaluate_out_creates_its_folder_and_refuses_a_bad_one_before_the_evaluation(tmp_path, monkeypatch, capsys):
    import icl_interp.tools.evaluation as evaluation
    from icl_interp.cli import main

    save_model(preset_model("tiny"), tmp_path / "m")
    target = tmp_path / "new" / "deeper" / "eval.json"
    assert main(["evaluate", str(tmp_path / "m"), "--n-prompts", "16", "--out", str(target)]) == 0
    assert json.loads(target.read_text())["n_context"][-1] == 7  # 8 points: up to 7 in context

    def never(*a, **k):
        raise AssertionError("the evaluation ran before --out was checked")

    monkeypatch.setattr(evaluation, "evaluate", never)
    (tmp_path / "file").write_text("x")
    for bad, why in ((tmp_path / "new", "is a folder"), (tmp_path / "file" / "eval.json", "is a file, not a folder"),
                     (tmp_path / "file" / "sub" / "eval.json", "cannot be created")):
        assert main(["evaluate", str(tmp_path / "m"), "--n-prompts", "16", "--out", str(bad)]) == 2
        assert why in capsys.readouterr().err


# -- the report --------------------------------------------------------------------------------------------------------

def test_the_report_fails_at_every_write_and_the_previous_report_stays_whole(tmp_path, monkeypatch):
    import copy

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import icl_interp.analysis.report as report
    from icl_interp.analysis.study_plots import save_figure

    model = preset_model("tiny")
    template = tmp_path / "template"
    old = report.write_report(template, model=model, quick=True)  # the real report, once
    old_json, old_md = (template / "report.json").read_text(), (template / "report.md").read_text()
    computed = {k: v for k, v in old.items() if k not in ("claims", "seconds")}

    def collect(name, net, sib, quick, out, seeds, **_):  # the same analyses' results, without minutes of computing; one figure
        fig = plt.figure()
        fig.gca().plot([0, 1], [1, 0])
        save_figure(fig, out, "attention.png")
        return {**copy.deepcopy(computed), "rerun": True}

    monkeypatch.setattr(report, "_collect", collect)
    shutil.copytree(template, tmp_path / "dry")  # as every run below: the template's plan (report_plan) is found again
    with pytest.MonkeyPatch.context() as mp:
        dry = DiskFaults(mp)
        report.write_report(tmp_path / "dry", model=model, quick=True)
    n = len(dry.ops)
    r_json, r_md = dry.index("replace", "report.json", default=n), dry.index("replace", "report.md", default=n)

    def timeless(text):
        return re.sub(r"Ran in [0-9.]+ s", "Ran in - s", text)

    def fields(doc):
        return {k: v for k, v in doc.items() if k != "seconds"}

    new_json, new_md = json.loads((tmp_path / "dry" / "report.json").read_text()), (tmp_path / "dry" / "report.md").read_text()
    for k in range(1, n + 1):
        out = tmp_path / f"k{k}"
        shutil.copytree(template, out)
        with pytest.MonkeyPatch.context() as mp:
            faults = DiskFaults(mp, fail_at=k)
            with pytest.raises(InjectedFault):
                report.write_report(out, model=model, quick=True)
        got_json = (out / "report.json").read_text()
        got_md = (out / "report.md").read_text()
        if k <= r_json:  # the old report, whole
            assert got_json == old_json, (k, faults.fired)
        else:  # failed after report.json was switched in: the new one, whole
            assert fields(json.loads(got_json)) == fields(new_json), (k, faults.fired)
        if k <= r_md:
            assert got_md == old_md, (k, faults.fired)
        else:
            assert timeless(got_md) == timeless(new_md), (k, faults.fired)
        # no temp file left (.sections: the finished studies a rerun reuses, report_plan.SectionStore)
        assert [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".sections"] == [], k
        assert [p.name for p in (out / ".sections").glob(".*")] == [], k
    assert n >= 12 and r_json < r_md < n  # the figure, then report.json, report.md: a write, a replace, two fsyncs each


def test_a_report_into_a_file_fails_before_the_analyses(tmp_path, monkeypatch):
    import icl_interp.analysis.report as report

    def never(*a, **k):
        raise AssertionError("the analyses ran before out was checked")

    monkeypatch.setattr(report, "_collect", never)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="out .* is a file"):
        report.write_report(tmp_path / "file", model=preset_model("tiny"), quick=True)


def test_atomic_write_bytes_syncs_the_file_then_the_folder(tmp_path, monkeypatch):
    faults = DiskFaults(monkeypatch)
    atomic_write_bytes(tmp_path / "a.bin", b"123")
    assert [op.split()[0] for op in faults.ops] == ["open", "fsync", "replace", "fsync"]
    assert (tmp_path / "a.bin").read_bytes() == b"123"


def test_atomic_writes_get_the_permissions_of_an_ordinary_file(tmp_path):
    """mkstemp's temporary files are 0600; a model or report written atomically must be readable as open() would leave it."""
    import os

    from icl_interp.core.atomic import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        (tmp_path / "b.json").write_bytes(b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == (tmp_path / "b.json").stat().st_mode & 0o777 == 0o644
