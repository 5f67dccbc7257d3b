"""A training process killed with SIGKILL and resumed ends with bitwise the same weights as an unbroken run."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from icl_interp.training.state import read_state

pytestmark = pytest.mark.slow

CMD = [sys.executable, "-m", "icl_interp.cli", "train", "--preset", "tiny", "--steps", "300", "--threads", "1", "--no-progress"]


def _run(out, *extra):
    subprocess.run(CMD + ["--out", str(out), *extra], check=True, capture_output=True, timeout=300)


def _step(out):
    try:
        return read_state(out / "checkpoint")["step"]
    except (OSError, ValueError):
        return 0


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    _run(tmp_path / "straight")

    out = tmp_path / "killed"
    proc = subprocess.Popen(CMD + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _step(out) < 40 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _step(out)
    assert 0 < killed_at < 300 and not (out / "model").exists(), "the run was not killed mid-way"

    _run(out, "--resume")
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(out / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the CLI refuses to silently restart over a checkpoint
    res = subprocess.run(CMD + ["--out", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "--resume" in res.stderr and "Traceback" not in res.stderr
