"""Training sweeps, presets x training seeds, through submitit: a SLURM job array on a cluster, local processes elsewhere.

One folder per run, ``OUT/NAME`` with NAME = :func:`seed_name` (``default``, ``default-seed1``, ...), holding
what ``icl-interp train`` writes there (checkpoint/, log.json, model/). A sweep is resumable: run the same
command again and finished runs are skipped, stopped ones go on from their checkpoint. On SLURM a job that
reaches its time limit or is preempted requeues itself (:meth:`SweepRun.checkpoint`) and resumes from the
training checkpoint it wrote last. submitit keeps its own files (pickled jobs, logs) in ``OUT/_submitit``;
on a cluster ``OUT`` must be on a file system the nodes share.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..core.atomic import writable_folder
from ..core.checks import check_choice, check_float, check_int

__all__ = ["SweepRun", "seed_name", "sweep", "sweep_status", "EXECUTORS"]

#: "auto": SLURM when ``srun`` is on the PATH, else local processes; "local": local processes; "slurm": SLURM;
#: "debug": in this process, one run after another (submitit's debug executor)
EXECUTORS = ("auto", "local", "slurm", "debug")


def seed_name(preset: str, seed: int) -> str:
    """The name of preset ``preset`` trained with training seed ``seed``: the preset's own name for seed 0, else
    ``PRESET-seedK``: the run's folder in a sweep and its name in the zoo (``index.json``'s ``"seeds"``)."""
    return preset if check_int("seed", seed, min_value=0) == 0 else f"{preset}-seed{seed}"


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: train ``preset`` with training seed ``seed`` into ``out`` (resuming what is there).

    A plain picklable object: submitit ships it to the job, which calls it.
    """

    preset: str
    seed: int
    out: str
    threads: Optional[int] = 1
    device: str = "auto"
    max_minutes: Optional[float] = None

    def finished(self) -> bool:
        return (Path(self.out) / "model" / "config.json").is_file()

    def __call__(self) -> dict:
        from .presets import train_preset

        if self.finished():
            return {**asdict(self), "status": "finished before"}
        overrides = {"seed": self.seed, "progress": False, "device": self.device}
        if self.threads is not None:
            overrides["threads"] = self.threads
        res = train_preset(self.preset, self.out, resume=True, max_minutes=self.max_minutes, overrides=overrides)
        last = res["log"][-1] if res["log"] else {}
        return {**asdict(self), "status": "stopped" if res["stopped"] else "finished", "step": res.get("step", last.get("step")),
                "eval_error_last": last.get("eval_error_last")}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit calls this when the job times out or is preempted: requeue the same run (it resumes)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def _last_error(log: Path) -> str:
    """The exception line a failed job's stderr log ends with (``Type: message``)."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"the job failed and left no log at {log}"
    return lines[-1] if lines else f"the job failed with an empty log {log}"


def _runs(presets: Sequence[str], seeds: Sequence[int], out: Path, **kw: Any) -> list[SweepRun]:
    from .presets import PRESETS

    if isinstance(presets, str) or not isinstance(presets, Sequence) or not presets:
        raise TypeError(f"presets must be a non-empty list of preset names, got {presets!r}")
    if isinstance(seeds, (str, int)) or not isinstance(seeds, Sequence) or not seeds:
        raise TypeError(f"seeds must be a non-empty list of ints, got {seeds!r}")
    names = [check_choice("presets[i]", p, sorted(PRESETS)) for p in presets]
    ks = [check_int("seeds[i]", s, min_value=0) for s in seeds]
    for what, xs in (("presets", names), ("seeds", ks)):
        if len(set(xs)) != len(xs):
            raise ValueError(f"{what} must not repeat, got {list(xs)}")
    return [SweepRun(p, s, str(out / seed_name(p, s)), **kw) for p in names for s in ks]


def sweep_status(presets: Sequence[str], seeds: Sequence[int], out: Union[str, Path]) -> list[dict]:
    """Each run's state in ``out``: "finished", "stopped" (a checkpoint to resume) or "not started"."""
    rows = []
    for run in _runs(presets, seeds, Path(out)):
        started = (Path(run.out) / "checkpoint").is_dir()
        state = "finished" if run.finished() else ("stopped" if started else "not started")
        rows.append({"preset": run.preset, "seed": run.seed, "out": run.out, "state": state})
    return rows


def sweep(
    presets: Sequence[str],
    seeds: Sequence[int],
    out: Union[str, Path],
    *,
    executor: str = "auto",
    parallel: Optional[int] = None,
    threads: Optional[int] = None,
    device: str = "auto",
    timeout_min: float = 24 * 60,
    max_minutes: Optional[float] = None,
    slurm: Optional[dict] = None,
    wait: bool = True,
) -> list[dict]:
    """Train every preset in ``presets`` with every training seed in ``seeds``, one folder each under ``out``.

    ``executor``: one of :data:`EXECUTORS`. ``parallel``: how many runs at once (local: default 1, since runs share
    the machine's cores; SLURM: the job array's parallelism, default all). ``threads``: torch threads per run (default:
    locally the machine's cores divided by ``parallel``; on SLURM torch's default, the job's CPUs). ``timeout_min``: each job's time limit
    (a SLURM job past it requeues itself and resumes). ``max_minutes``: each job stops at its first checkpoint after
    that much training (the next sweep goes on). ``slurm``: further submitit parameters, e.g. ``{"slurm_partition":
    "gpu", "gpus_per_node": 1}``. Returns one row per run (its state, and with ``wait`` the job's result).
    """
    executor = check_choice("executor", executor, EXECUTORS)
    timeout_min = check_float("timeout_min", timeout_min, min_value=1.0)
    if parallel is not None:
        parallel = check_int("parallel", parallel, min_value=1)
    if threads is not None:
        threads = check_int("threads", threads, min_value=1)
    if max_minutes is not None:
        max_minutes = check_float("max_minutes", max_minutes, min_value=0.0)
    if slurm is not None and not isinstance(slurm, dict):
        raise TypeError(f"slurm must be a dict of submitit parameters, got {type(slurm).__name__}")
    try:
        import submitit
    except ImportError:
        raise ImportError("sweep needs submitit: pip install 'icl-interp[cluster]' (or pip install submitit)") from None
    from ..core.devices import check_device

    check_device("device", device)
    out = writable_folder(out, "out")  # the atomic writes' own check, before any job
    runs = _runs(presets, seeds, out, threads=threads, device=device, max_minutes=max_minutes)
    todo = [r for r in runs if not r.finished()]
    rows = {r.out: {"preset": r.preset, "seed": r.seed, "out": r.out, "state": "finished before"} for r in runs}
    if not todo:
        return list(rows.values())
    ex = submitit.AutoExecutor(folder=out / "_submitit", cluster=None if executor == "auto" else executor)
    params: dict[str, Any] = {"timeout_min": int(math.ceil(timeout_min)), "name": "icl-interp-sweep"}
    on_slurm = ex.cluster == "slurm"
    if threads is None and not on_slurm:  # local runs share the machine's cores
        threads = max(1, (os.cpu_count() or 1) // (parallel or 1))
        todo = [replace(r, threads=threads) for r in todo]
    if on_slurm and parallel is not None:
        params["slurm_array_parallelism"] = parallel
    try:
        ex.update_parameters(**params, **(slurm or {}))
    except ValueError as e:
        raise ValueError(f"slurm: submitit refused a parameter ({e})") from None
    waves = [todo] if on_slurm else [todo[i:i + (parallel or 1)] for i in range(0, len(todo), parallel or 1)]
    for wave in waves:  # local: a few processes at a time, since they share the cores; SLURM: one job array
        with ex.batch():
            jobs = [ex.submit(run) for run in wave]
        for run, job in zip(wave, jobs):
            rows[run.out].update({"state": "submitted", "job_id": job.job_id})
        if on_slurm and not wait:  # local jobs are always waited for: the next wave starts when they end
            continue
        for run, job in zip(wave, jobs):
            try:
                rows[run.out].update(job.result())
            except Exception:  # submitit's FailedJobError: the job's own error is the last line of its log
                rows[run.out].update({"state": "failed", "error": _last_error(Path(job.paths.stderr)), "log": str(job.paths.stderr)})
    for row in rows.values():
        if "status" in row:
            row["state"] = row.pop("status")
    return list(rows.values())
