"""How ``icl-interp report`` fits a model of any size in its time: the method chosen by cost, progress, finished sections kept.

- :func:`choose_plan`: the cost rule. Each study's cost is predicted in *forward-equivalents*
  (one plain forward of the model over the study's prompts; :func:`study_fwd`, measured at field
  size, benchmarks/README.md section 9) and turned into seconds by one forward timed on this
  machine now; the risk curves' tuned baselines, which no prompt count changes, come off the budget first
  (:func:`baseline_seconds`). If the exact studies on the requested prompts fit :data:`BUDGET_S`, they run as
  always (every shipped model: far inside). Otherwise head importance is *estimated* to first order
  (the per-prompt gradient of the error with respect to each head's mask under each ablation kind,
  one forward and one backward: attribution patching of the ablation), its agreement with exact
  ablation measured on :data:`AGREEMENT_HEADS` sampled heads, on as many prompts as fit. ``exact``
  (``--exact``) keeps the exact sweeps and fits the budget with fewer prompts instead (wider
  intervals, by about ``sqrt(requested / used)``).
- :class:`StudyBar`: a progress bar per study on stderr, its length the study's predicted seconds,
  so its "remaining" is the estimated time left.
- :class:`SectionStore`: each finished study written at once to ``OUT/.sections/NAME.json.gz``
  (atomically), keyed by the model's weights, the prompt seeds, ``quick``, the plan and the code (:func:`code_digest`);
  a rerun with the same key loads it instead of computing it, any change recomputes. The siblings are keyed by name
  only: after retraining one, rerun with ``reuse=False`` (``--no-reuse``).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import math
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..core.atomic import atomic_write_bytes
from ..core.checks import check_float, check_int
from ..core.protocol import sample_for

__all__ = ["BUDGET_S", "baseline_seconds", "code_digest", "AGREEMENT_HEADS", "ReportPlan", "choose_plan", "forward_seconds", "study_fwd",
           "weights_digest", "SectionStore", "StudyBar"]

#: wall seconds the model's own studies (with the risk curves' tuned baselines) may take: the issue's goal is the whole
#: report in 10 minutes on 2 cores, and the last 1.5 are left to the figures, the claims' bootstraps and the markdown
#: (and a zoo model's siblings, which are small)
BUDGET_S = 510.0
#: forward-equivalents of each study besides head importance, at the study's prompt count, measured on the
#: Garg-standard model at one thread on 96 prompts (benchmarks/README.md, section 9: attention 3.7 with its
#: 96-panel figure, pruning 2.2, preprocessing 2.5, GD 2.6), rounded up, so the prediction errs long
ATTENTION_FWD, PRUNING_FWD, PREPROCESSING_FWD, GD_FWD, RISK_FWD = 4.0, 3.0, 3.0, 3.0, 2.0
#: the risk curves' baselines (tuned ridge, Lasso, GD and PtO on held-out prompts) do not depend on the model: seconds
#: per held-out prompt x point x dimension (measured: 88 s for 1,000 x 41 x 20 at one thread beside other jobs)
BASELINE_S = 1.1e-4
#: one forward and one backward (about two forwards) per ablation kind: the gradient estimate of every head at once
GRADIENT_FWD = 4.0
#: heads whose exact ablation is measured beside the gradient estimate (per kind), for the agreement the report states
AGREEMENT_HEADS = 8
#: the fewest prompts a plan gives a study (below it the intervals say little); a plan that needs fewer runs long, and says so
MIN_PROMPTS = 64
#: the prompt counts a plan picks from (a rerun's plan is stored, so a few percent of timing noise cannot change it)
PROMPT_GRID = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2000)
METHODS = ("exact", "gradient")
#: the prompts a forward is first timed on (the plan's own prompt count is timed again where it is larger)
PROBE_PROMPTS = 128
ABLATION_KINDS = 3  # zero, mean, resample: the report's head studies run all three


def exact_importance_fwd(n_layers: int, n_heads: int) -> float:
    """One exact single-head ablation sweep: the restart-at-the-layer bound ``H (L + 1) / 2 + 1`` (ours measures below it)."""
    return n_heads * (n_layers + 1) / 2 + 1


def baseline_seconds(model: Any, quick: bool) -> float:
    """Predicted seconds of the risk curves' tuned baselines (:func:`icl_interp.analysis.studies.baseline_suite`'s held-out prompts)."""
    return BASELINE_S * (200 if quick else 1000) * int(model.cfg.max_points) * int(model.task.d)


def study_fwd(n_layers: int, n_heads: int, method: str) -> dict[str, float]:
    """Predicted forward-equivalents per study (the clean run's forward counted once, as ``prepare``)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "exact":
        importance = ABLATION_KINDS * exact_importance_fwd(n_layers, n_heads) + GRADIENT_FWD
    else:  # the sampled heads' exact ablations cost on average (L + 1) / 2L of a forward each
        importance = ABLATION_KINDS * (GRADIENT_FWD + AGREEMENT_HEADS * (n_layers + 1) / (2 * n_layers))
    return {"prepare": 1.0, "risk": RISK_FWD, "importance": importance, "attention": ATTENTION_FWD, "pruning": PRUNING_FWD,
            "preprocessing": PREPROCESSING_FWD, "gd": GD_FWD}


@dataclass
class ReportPlan:
    """What the report runs: the head-importance ``method`` on ``n_prompts`` prompts per study, and why."""

    method: str
    n_prompts: int
    requested_prompts: int
    forward_s: float  # one forward over n_prompts prompts, measured now
    predicted_s: float  # the model's studies and the baselines, by the cost rule
    budget_s: float
    exact_forced: bool
    reason: str
    baselines_s: float = 0.0  # the predicted part of the risk curves' baselines (not the model's: no prompts to cut)

    def study_seconds(self, cfg: Any) -> dict[str, float]:
        """Predicted seconds of each study under this plan (the progress bars' lengths)."""
        got = {k: v * self.forward_s for k, v in study_fwd(int(cfg.n_layers), int(cfg.n_heads), self.method).items()}
        got["risk"] += self.baselines_s
        return got

    @property
    def interval_factor(self) -> float:
        """How much wider the intervals get than on the requested prompts (about ``sqrt(requested / used)``)."""
        return math.sqrt(self.requested_prompts / self.n_prompts)

    def to_dict(self) -> dict:
        return {**asdict(self), "interval_factor": self.interval_factor}


def forward_seconds(model: Any, n_prompts: int, *, probe_prompts: int = PROBE_PROMPTS, repeats: int = 3, max_s: float = 5.0) -> float:
    """Seconds of one no-grad forward of ``model`` over ``n_prompts`` prompts: the best of up to ``repeats`` timed forwards
    over ``probe_prompts`` of its task's prompts (fewer once they have taken ``max_s``), scaled linearly (a forward's cost
    is linear in the batch; on small models the fixed per-call cost makes this err long)."""
    import torch

    batch = sample_for(model, min(probe_prompts, n_prompts), seed=0)
    best, spent = math.inf, 0.0
    with torch.no_grad():
        model(batch[:2])  # first-call costs (allocations, lazy imports) out of the timing
        for _ in range(repeats):
            t0 = time.perf_counter()
            float(model(batch).sum())  # read back: on a GPU the time includes the work, not only its launch
            took = time.perf_counter() - t0
            best, spent = min(best, took), spent + took
            if spent >= max_s:
                break
    return best * n_prompts / batch.batch_size


def choose_plan(model: Any, n_prompts: int, *, budget_s: float = BUDGET_S, exact: bool = False,
                forward_s: Optional[float] = None, baselines_s: float = 0.0) -> ReportPlan:
    """The report's plan for ``model`` asked for ``n_prompts`` prompts per study (the module docstring's rule).

    ``forward_s``: seconds of one forward over ``n_prompts`` prompts (default: timed now, :func:`forward_seconds`, and
    timed again at the chosen prompt count when that is larger than the timed batch: a large model's forward costs more
    per prompt in a large batch, measured 1.36x at 768 prompts against 128 on 2 cores, so the plan is made again from
    the larger batch's cost where it is higher). ``baselines_s``: the predicted seconds of what the prompt count does
    not change (:func:`baseline_seconds`), taken from the budget first.
    """
    n_prompts = check_int("n_prompts", n_prompts, min_value=1)
    budget_s = check_float("budget_s", budget_s, min_value=0.0)
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be a bool, got {type(exact).__name__}")
    timed = forward_s is None
    if timed:
        forward_s = forward_seconds(model, n_prompts)
    forward_s = check_float("forward_s", forward_s, min_value=0.0)
    baselines_s = check_float("baselines_s", baselines_s, min_value=0.0)
    chosen = _decide(model, n_prompts, budget_s, exact, forward_s, baselines_s)
    if timed and chosen.n_prompts > PROBE_PROMPTS:
        at_chosen = forward_seconds(model, chosen.n_prompts, probe_prompts=chosen.n_prompts, repeats=1) * n_prompts / chosen.n_prompts
        if at_chosen > forward_s:  # dearer per prompt in the batch the studies will run: plan again from that cost
            chosen = _decide(model, n_prompts, budget_s, exact, at_chosen, baselines_s)
    return chosen


def _decide(model: Any, n_prompts: int, budget_s: float, exact: bool, forward_s: float, baselines_s: float) -> ReportPlan:
    """:func:`choose_plan`'s rule for a given forward's cost (``forward_s`` seconds over ``n_prompts`` prompts)."""
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    per_prompt = {m: forward_s / n_prompts * sum(study_fwd(n_layers, n_heads, m).values()) for m in METHODS}

    def plan(method: str, n: int, reason: str) -> ReportPlan:
        fwd = forward_s * n / n_prompts
        return ReportPlan(method, n, n_prompts, fwd, baselines_s + per_prompt[method] * n, budget_s, exact, reason, baselines_s)

    def cost(method: str, n: int) -> float:
        return baselines_s + per_prompt[method] * n

    if cost("exact", n_prompts) <= budget_s:
        return plan("exact", n_prompts, f"the exact studies on {n_prompts} prompts are predicted to take "
                    f"{cost('exact', n_prompts):.0f} s, within the budget of {budget_s:.3g} s")
    method = "exact" if exact else "gradient"
    candidates = {n for n in PROMPT_GRID if n < n_prompts} | ({n_prompts} if method != "exact" else set())
    fits = [n for n in candidates if cost(method, n) <= budget_s]
    n = max(fits) if fits else min(MIN_PROMPTS, n_prompts)
    over = "" if fits else f"; even {n} prompts are predicted to take {cost(method, n):.0f} s, over the budget"
    exact_s = cost("exact", n_prompts)
    if exact:
        why = (f"--exact: the exact sweeps on {n_prompts} prompts would take about {exact_s:.0f} s (budget {budget_s:.3g} s), "
               f"so they run on {n} prompts{over}")
    else:
        why = (f"the exact studies on {n_prompts} prompts would take about {exact_s:.0f} s (budget {budget_s:.3g} s): head "
               f"importance is estimated by gradients (checked against exact ablation on {AGREEMENT_HEADS} sampled heads per "
               f"ablation kind) on {n} prompts{over}; --exact forces the exact sweeps")
    return plan(method, n, why)


# -- sections kept on disk --------------------------------------------------------------------------


def weights_digest(model: Any) -> str:
    """sha256 of the model's parameters (names, shapes and bytes) and its config and task: the identity a stored section
    is keyed by (stable across processes, unlike :func:`icl_interp.tools.runner.weights_version`'s storage pointers)."""
    import torch

    h = hashlib.sha256()
    for name, p in model.named_parameters():
        t = p.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    cfg = getattr(model, "cfg", None)
    task = getattr(model, "task", None)
    h.update(json.dumps({"cfg": cfg.to_dict() if cfg is not None else None,
                         "task": task.to_dict() if task is not None else None}, sort_keys=True, default=str).encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 of the source of ``icl_interp`` and of the ``probes`` catalogue: a stored section is reused only by the
    code that computed it (an edit to a study must not find its old numbers)."""
    import probes

    h = hashlib.sha256()
    for package in (Path(__file__).resolve().parents[1], Path(probes.__file__).parent):
        for path in sorted(package.rglob("*.py")):
            h.update(f"{path.relative_to(package.parent)}\n".encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _figures(obj: Any) -> list[str]:
    """Every ``"figure"`` file name in a study's result (nested ones too)."""
    if isinstance(obj, dict):
        own = [obj["figure"]] if isinstance(obj.get("figure"), str) else []
        return own + [f for k, v in obj.items() if k != "figure" for f in _figures(v)]
    if isinstance(obj, list):
        return [f for v in obj for f in _figures(v)]
    return []


class SectionStore:
    """Finished studies of one report under ``out/.sections`` (one gzipped JSON file each, written atomically).

    A section is reused when its stored key equals ``key`` (a dict: what the result depends on) and the figures it
    names are in ``out``; anything else (no file, another key, an unreadable file) computes it again.
    """

    FOLDER = ".sections"

    def __init__(self, out: Path, key: dict, *, enabled: bool = True):
        self.out = Path(out)
        self.folder = self.out / self.FOLDER
        self.key = json.loads(json.dumps(key, sort_keys=True, default=str))
        self.enabled = enabled
        self.reused: list[str] = []
        self.computed: list[str] = []

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.json.gz"

    def load(self, name: str, key: Optional[dict] = None) -> Optional[Any]:
        """The stored result of section ``name`` under ``key`` (default: the store's), or None."""
        path = self._path(name)
        if not self.enabled or not path.is_file():
            return None
        try:
            stored = json.loads(gzip.decompress(path.read_bytes()))
        except (OSError, ValueError, EOFError):  # a damaged file is computed again, never trusted
            return None
        if not isinstance(stored, dict) or stored.get("key") != (self.key if key is None else key):
            return None
        result = stored.get("result")
        if any(not (self.out / f).is_file() for f in _figures(result)):
            return None
        return result

    def save(self, name: str, result: Any, key: Optional[dict] = None) -> None:
        """Write section ``name`` now (as one unit: a kill leaves the previous file or this one)."""
        if not self.enabled:
            return
        data = json.dumps({"key": self.key if key is None else key, "result": result}, default=_jsonable).encode()
        atomic_write_bytes(self._path(name), gzip.compress(data, mtime=0))

    def section(self, name: str, compute: Callable[[], Any], *, seconds: Optional[float] = None, progress: bool = False) -> Any:
        """Section ``name``: loaded if stored under this key, else computed (with a progress bar) and stored at once.

        A computed result is returned as stored (through JSON), so a report from stored sections and one computed in a
        single run are built from the same values."""
        found = self.load(name)
        if found is not None:
            self.reused.append(name)
            if progress:
                print(f"{name}: reused from {self._path(name)}", file=sys.stderr)
            return found
        with StudyBar(name, seconds, enabled=progress):
            result = compute()
        self.computed.append(name)
        result = json.loads(json.dumps(result, default=_jsonable))
        self.save(name, result)
        return result


def _jsonable(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"a report section holds a {type(obj).__name__}, which JSON cannot store")


# -- progress ------------------------------------------------------------------------------------


class StudyBar:
    """A tqdm bar on stderr for one study: its length the predicted seconds, advanced by the clock, so the estimated
    time left is the prediction minus the time spent (held at the last second until the study ends). Without a
    prediction, a counter of the seconds spent. ``enabled=False``: nothing is shown."""

    def __init__(self, name: str, seconds: Optional[float], *, enabled: bool = True):
        self.name, self.enabled = name, enabled
        self.total = None if seconds is None else max(1, math.ceil(seconds))
        self._stop = threading.Event()

    def __enter__(self) -> "StudyBar":
        if not self.enabled:
            return self
        from tqdm.auto import tqdm

        fmt = "{desc}: {percentage:3.0f}%|{bar}| {elapsed} spent, about {remaining} left{postfix}" if self.total else "{desc}: {elapsed} spent{postfix}"
        self.bar = tqdm(total=self.total, desc=self.name, unit="s", file=sys.stderr, bar_format=fmt, leave=True, dynamic_ncols=True)
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            spent = int(time.perf_counter() - self._t0)
            target = spent if self.total is None else min(spent, self.total - 1)
            if target > self.bar.n:
                self.bar.update(target - self.bar.n)

    def __exit__(self, *exc: Any) -> None:
        if not self.enabled:
            return
        self._stop.set()
        self._thread.join()
        if exc[0] is None and self.total is not None:
            self.bar.update(self.total - self.bar.n)
        self.bar.set_postfix_str(f"took {time.perf_counter() - self._t0:.0f} s", refresh=False)
        self.bar.close()
