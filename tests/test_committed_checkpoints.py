"""The training checkpoints committed in ``checkpoints/NAME/`` (unfinished zoo runs a later session continues).

Each must resume under its preset with today's code: its tensors pass their SHA-256
check, its configs are the preset's (outside the fields a run may change between
chunks), and one more step runs and is checkpointed with the log kept whole. A
preset changed under a committed run, or a corrupted file, fails here rather than in
the session that meets it an hour into a training chain.
"""

import json
import shutil
from pathlib import Path

import pytest

import icl_interp as ii
from icl_interp.training.presets import _preset_and_seed, get_preset
from icl_interp.training.state import has_checkpoint, read_state

COMMITTED = Path(__file__).resolve().parent.parent / "checkpoints"
RUNS = sorted(p.name for p in COMMITTED.iterdir() if has_checkpoint(p / "checkpoint")) if COMMITTED.is_dir() else []


@pytest.mark.skipif(not RUNS, reason="no training checkpoint is committed in checkpoints/")
@pytest.mark.parametrize("name", RUNS)
def test_a_committed_checkpoint_resumes_under_its_preset(name, tmp_path):
    shutil.copytree(COMMITTED / name, tmp_path / name)
    state = read_state(tmp_path / name / "checkpoint")
    saved_log = json.loads((tmp_path / name / "log.json").read_text())
    assert saved_log == state["log"], "log.json is not the checkpoint's log"
    step = state["step"]
    preset, seed = _preset_and_seed(name)   # a preset's run, or PRESET-seedK: the preset trained with --seed K
    assert 0 < step < get_preset(preset)["train"]["steps"] and state["train_config"]["seed"] == seed

    # one step: checkpoint after every step, stop at the first checkpoint (max_minutes=0); presets set no thread count
    result = ii.train_preset(preset, tmp_path / name, resume=True, max_minutes=0,
                             overrides={"checkpoint_every": 1, "progress": False, "compile": False, **({"seed": seed} if seed else {})})
    assert result["stopped"] and result["step"] == step + 1
    assert result["log"][: len(saved_log)] == saved_log
    resumed = read_state(tmp_path / name / "checkpoint")
    assert resumed["step"] == step + 1
    assert not (tmp_path / name / "model").exists()
