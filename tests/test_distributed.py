"""Data-parallel training under torchrun (2 CPU processes, gloo) against the single-process run on the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from icl_interp.training.distributed import Dist, context
from icl_interp.training.presets import train_preset
from icl_interp.training.state import read_state

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "icl_interp", "train"]
ARGS = ["--preset", "tiny", "--steps", "30", "--warmup-steps", "5", "--threads", "1", "--no-progress"]  # the preset's warmup, as _single


def _torchrun(out: Path, *extra: str, device: str = "cpu") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [*TORCHRUN, *ARGS, "--device", device, "--out", str(out), *extra]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _single(out: Path, device: str = "cpu") -> dict:
    torch.set_num_threads(1)
    return train_preset("tiny", out, overrides={"steps": 30, "threads": 1, "device": device, "progress": False})


def _assert_same_weights(dist_dir: Path, single_dir: Path) -> None:
    """Every weight within 1e-5 relative (as one vector and per tensor), and the same function.

    The attention key biases are left out of the weight comparison: their gradient is
    zero in exact arithmetic (softmax ignores a shift shared by all keys), so AdamW turns
    rounding noise into steps of size lr, different for any other order of summation
    (two threads, two processes). They do not change the function, which the
    prediction check covers.
    """
    a, b = load_file(dist_dir / "model.safetensors"), load_file(single_dir / "model.safetensors")
    assert set(a) == set(b)
    keys = sorted(k for k in a if not k.endswith("attn.b_K"))
    flat_a, flat_b = torch.cat([a[k].flatten() for k in keys]), torch.cat([b[k].flatten() for k in keys])
    assert float((flat_a - flat_b).norm() / flat_b.norm()) < 1e-5
    for k in keys:
        assert float((a[k] - b[k]).norm()) <= 1e-5 * float(b[k].norm()) + 1e-7, k
    from icl_interp.core.checkpoint import load_model

    batch = load_model(single_dir).task.sample(64, 8, seed=5)
    with torch.no_grad():
        assert torch.allclose(load_model(dist_dir)(batch), load_model(single_dir)(batch), rtol=1e-5, atol=1e-6)


def test_torchrun_two_processes_end_with_the_single_process_weights(tmp_path):
    done = _torchrun(tmp_path / "ddp")
    assert done.stdout.count('"out"') == 1  # only rank 0 reports
    single = _single(tmp_path / "single")
    _assert_same_weights(tmp_path / "ddp" / "model", tmp_path / "single" / "model")
    log = json.loads((tmp_path / "ddp" / "log.json").read_text())
    assert [e["step"] for e in log] == [e["step"] for e in single["log"]]
    for got, want in zip(log, single["log"]):  # the logged loss is the global batch's
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
    assert "eval_error_last" in log[-1]


@pytest.mark.slow
def test_torchrun_run_stopped_and_resumed_ends_equal(tmp_path):
    out = tmp_path / "ddp"
    first = _torchrun(out, "--max-minutes", "0")
    assert "stopped after 0 min at step 20 of 30" in first.stdout
    assert read_state(out / "checkpoint")["step"] == 20 and not (out / "model").exists()
    _torchrun(out, "--resume")
    _single(tmp_path / "single")
    _assert_same_weights(out / "model", tmp_path / "single" / "model")


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_torchrun_on_two_gpus_ends_with_the_single_gpu_weights(tmp_path):
    """NCCL, each rank on cuda:LOCAL_RANK, against one process on one GPU."""
    _torchrun(tmp_path / "ddp", device="cuda")
    _single(tmp_path / "single", device="cuda")
    _assert_same_weights(tmp_path / "ddp" / "model", tmp_path / "single" / "model")


@pytest.mark.tl3
def test_each_rank_takes_its_slice_of_the_global_batch(tiny_task):
    batch = tiny_task.sample(8, 4, seed=0)
    assert Dist().shard(batch) is batch
    halves = [Dist(rank=r, world_size=2).shard(batch) for r in (0, 1)]
    assert torch.equal(torch.cat([h.xs for h in halves]), batch.xs) and halves[1].batch_size == 4


@pytest.mark.tl3
def test_a_global_batch_that_does_not_split_evenly_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="batch_size"):
        context("cpu", 32)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert context("cpu", 32) == (Dist(), None)
