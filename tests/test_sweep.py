"""icl-interp sweep: presets x training seeds through submitit's local executor, one folder per run, resumable."""

import json

import pytest
import torch

pytest.importorskip("submitit")

from icl_interp.core.checkpoint import load_model  # noqa: E402
from icl_interp.training.presets import train_preset  # noqa: E402
from icl_interp.training.sweep import SweepRun, seed_name, sweep, sweep_status  # noqa: E402


def _same_weights(a, b) -> bool:
    sa, sb = a.own_state_dict(), b.own_state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_a_local_sweep_trains_each_seed_as_train_does_and_resumes_stopped_runs(tmp_path):
    # the oracle: each run as `icl-interp train --preset tiny --seed K` would train it, in this process
    direct = {}
    for seed in (0, 1):
        train_preset("tiny", tmp_path / "direct" / str(seed), overrides={"seed": seed, "threads": 1, "progress": False})
        direct[seed] = load_model(tmp_path / "direct" / str(seed) / "model")
    out = tmp_path / "sweep"
    # every job stops at its first checkpoint (step 20 of 60): the sweep reports them stopped, with their folders
    rows = sweep(["tiny"], [0, 1], out, executor="local", parallel=2, max_minutes=0, threads=1)   # one thread, as the oracle
    assert [(r["seed"], r["state"], r["step"]) for r in rows] == [(0, "stopped", 20), (1, "stopped", 20)]
    assert [r["state"] for r in sweep_status(["tiny"], [0, 1, 2], out)] == ["stopped", "stopped", "not started"]
    rows = sweep(["tiny"], [0, 1], out, executor="local", threads=1)   # the same command again goes on to the end
    assert [r["state"] for r in rows] == ["finished", "finished"]
    for seed in (0, 1):
        got = load_model(out / seed_name("tiny", seed) / "model")
        assert _same_weights(got, direct[seed])   # bitwise: chunks and processes change nothing
    assert not _same_weights(direct[0], direct[1])
    assert [r["state"] for r in sweep(["tiny"], [0, 1], out, executor="local")] == ["finished before"] * 2


def test_a_failed_job_is_reported_with_its_error_and_log(tmp_path):
    out = tmp_path / "sweep"
    (out / "tiny-seed3" / "checkpoint").mkdir(parents=True)
    (out / "tiny-seed3" / "checkpoint" / "state.json").write_text("not json")   # a broken checkpoint to resume
    (row,) = sweep(["tiny"], [3], out, executor="local")
    assert row["state"] == "failed" and "ValueError" in row["error"] and row["log"].endswith(".err")


def test_checkpoint_requeues_the_same_run():
    run = SweepRun("tiny", 2, "/tmp/nowhere")
    again = run.checkpoint()
    assert again.function == run and again.args == () and json.dumps(seed_name("tiny", 2)) == '"tiny-seed2"'


@pytest.mark.parametrize("kwargs, error, match", [
    ({"presets": "tiny"}, TypeError, "presets must be a non-empty list"),
    ({"presets": ["tinny"]}, ValueError, "presets\\[i\\]"),
    ({"seeds": [0, 0]}, ValueError, "seeds must not repeat"),
    ({"seeds": [-1]}, ValueError, "seeds\\[i\\] must be >= 0"),
    ({"seeds": 3}, TypeError, "seeds must be a non-empty list"),
    ({"executor": "pbs"}, ValueError, "executor"),
    ({"parallel": 0}, ValueError, "parallel must be >= 1"),
    ({"device": "tpu"}, ValueError, "device"),
])
def test_bad_arguments_are_refused_before_any_job(tmp_path, kwargs, error, match):
    args = {"presets": ["tiny"], "seeds": [0], "out": tmp_path / "s", **kwargs}
    with pytest.raises(error, match=match):
        sweep(args.pop("presets"), args.pop("seeds"), args.pop("out"), **{"executor": "local", **args})
    assert not (tmp_path / "s" / "_submitit").exists()


def test_an_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        sweep(["tiny"], [0], tmp_path / "f", executor="local")


def test_the_cli_sweep_shows_each_runs_state(tmp_path, capsys):
    from icl_interp.cli import main

    assert main(["sweep", "--presets", "tiny", "--seeds", "0", "4", "--out", str(tmp_path), "--status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "not started" in lines[0] and lines[1].rstrip().endswith(str(tmp_path / "tiny-seed4"))
    assert main(["sweep", "--presets", "nope", "--out", str(tmp_path)]) == 2
    assert "presets[i]" in capsys.readouterr().err
