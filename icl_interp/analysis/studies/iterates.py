"""Later layers against algorithm runs: t-step GD and PtO iterates read off the layers, and the distances the claims use.

After layer l the residual stream at the query should hold the prediction of t = l + t0
steps of one algorithm run, where t0 in {0, 1} is the number of steps layer 0 itself takes
(0: it preprocesses, as in PtO; 1: it is a step, as in a GD transformer). The run's step
size is the one whose (L-1+t0)-step prediction is closest to the model's own output (the
last layer holds the last step), one step size for every step, as in GD. The *gap* of a
layer to its iterate is relative to the iterate's spread: at the last layer the model's own
read-out against the algorithm's prediction (:func:`output_gap`); at an earlier later layer,
which has no read-out of its own, a ridge probe's held-out sqrt(1 - R2) (:func:`read_out_gap`).
The distance to an algorithm is the mean gap over the later layers (:func:`gd_distance`) at
the best t0, and for PtO at the best preprocessing candidate.

Why iterates and not risks: two algorithms with similar risk curves (GD, and PtO with a
near-GD candidate) are told apart only by what they predict, and a probe that reads more
than the algorithm's prediction (a PtO layer 0 also holds r . x_q, the first GD step) makes
a layer's risk lower than the algorithm's own. Why a step size matched to the output: the
lowest-risk step size of a preprocessing that diverges on rare prompts (reweight) flips
between grid points with the validation sample, and a step size fitted to each layer's
probe (scale-free) would let a tiny step turn every t-step prediction into a rescaled first
step; the output fixes the scale.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

import probes

from ...baselines.preprocess import as_preprocessing
from ...tools.probing import probe_all_layers
from ._common import per_prompt_list
from .algorithm import PTO_CANDIDATES

__all__ = ["AlgorithmRun", "read_out_gap", "output_gap", "gd_distance", "algorithms", "match_step_size", "layer_iterates",
           "closest", "gap_columns", "LAYER0_STEPS", "STEP_SIZE_RANGE"]

#: the steps layer 0 itself may take: 0 (it preprocesses or does something else) or 1 (it is a step)
LAYER0_STEPS = (0, 1)
#: the step sizes searched when matching an algorithm to the model's output (a log-spaced grid, then golden section)
STEP_SIZE_RANGE = (1e-3, 2.0)
_GRID = 45


class AlgorithmRun:
    """GD from w = 0 on one batch's (preprocessed) context, predicting each prompt's query, vectorised over step sizes.

    ``preprocessing`` None is GD on the raw data; else a preprocessing (name, Preprocessing
    or callable) applied with r from the raw context: ``PreprocessThenOptimize``'s predictions.
    """

    def __init__(self, preprocessing: Any, batch: Any) -> None:
        xs, ys, xq = batch.xs[:, :-1].double(), batch.ys[:, :-1].double(), batch.xs[:, -1:].double()
        if preprocessing is not None and xs.shape[1] > 0:
            pre = as_preprocessing(preprocessing)
            xs, xq = pre(xs, ys, xs), pre(xs, ys, xq)
        n = max(xs.shape[1], 1)
        self.gram, self.c, self.xq = xs.mT @ xs / n, (xs.mT @ ys[..., None])[..., 0] / n, xq[:, 0]

    def predict(self, steps: int, lrs: Sequence[float]) -> Tensor:
        """Query predictions ``[len(lrs), B]`` (float64) after ``steps`` steps with each step size."""
        lr = torch.as_tensor(list(lrs), dtype=torch.float64, device=self.c.device)[:, None, None]
        w = torch.zeros(lr.shape[0], *self.c.shape, dtype=torch.float64, device=self.c.device)
        for _ in range(steps):
            w = w - lr * ((self.gram @ w[..., None])[..., 0] - self.c)
        return (w * self.xq).sum(-1)


def algorithms() -> dict[str, Any]:
    """Every algorithm compared with the layers, name -> preprocessing: ``"gd"`` (None) and ``"pto:<candidate>"``."""
    return {"gd": None, **{f"pto:{getattr(pre, '__name__', pre)}": pre for pre in PTO_CANDIDATES}}


def read_out_gap(r2: Optional[float]) -> float:
    """sqrt(1 - R2) with R2 clamped to [0, 1]: the read-out's RMS error over the target's spread (1 when absent)."""
    if r2 is None or not math.isfinite(r2):
        return 1.0
    return math.sqrt(1.0 - min(max(r2, 0.0), 1.0))


def output_gap(prediction: Tensor, output: Tensor) -> float:
    """min(1, RMS(output - prediction) / std(prediction)): the model's own read-out against an algorithm's prediction."""
    pred, out = prediction.double(), output.double()
    if not bool(torch.isfinite(pred).all()) or not float(pred.var()) > 0:
        return 1.0
    return min(1.0, math.sqrt(float(((out - pred) ** 2).mean()) / float(pred.var())))


def gd_distance(gaps: Sequence[Optional[float]]) -> float:
    """The mean gap of an algorithm's iterates over the later layers (None: not read, counts as 1)."""
    if isinstance(gaps, (str, bytes)) or not isinstance(gaps, Sequence) or not gaps:
        raise ValueError(f"gaps must be a non-empty sequence of gaps in [0, 1] (None: not read), got {gaps!r}")
    return sum(1.0 if g is None else float(g) for g in gaps) / len(gaps)


def match_step_size(run: AlgorithmRun, steps: int, output: Tensor) -> float:
    """The step size whose ``steps``-step predictions are closest (mean squared) to ``output``.

    A log-spaced grid over :data:`STEP_SIZE_RANGE`, then a golden-section search between the
    best point's neighbours; step sizes whose predictions diverge count as infinitely far.
    """
    target = output.double()

    def mse(log_lrs: Sequence[float]) -> list[float]:
        err = ((run.predict(steps, [math.exp(v) for v in log_lrs]) - target) ** 2).mean(-1)
        return torch.nan_to_num(err, nan=math.inf).tolist()

    lo, hi = (math.log(v) for v in STEP_SIZE_RANGE)
    grid = [lo + (hi - lo) * i / (_GRID - 1) for i in range(_GRID)]
    errs = mse(grid)
    i = min(range(_GRID), key=errs.__getitem__)
    a, b, ratio = grid[max(i - 1, 0)], grid[min(i + 1, _GRID - 1)], (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = mse([c, d])
    for _ in range(25):  # golden section on log(lr): one new evaluation per step
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = mse([c])[0]
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = mse([d])[0]
    best = min((errs[i], grid[i]), (fc, c), (fd, d))
    return math.exp(best[1])


def layer_iterates(model: Any, run: Any) -> tuple[dict, Any]:
    """For every algorithm and t0: the matched step size and the gap of each later layer (the probe table too).

    ``run`` is the model's clean run (:func:`~icl_interp.tools.runner.prepare`); the probe table
    holds a ``y_query`` row per layer as well (the P-probing risk).
    """
    n_layers, batch = model.hooked.cfg.n_layers, run.batch
    output = run.preds if run.preds.ndim == 1 else run.preds[:, -1]
    later = list(range(1, n_layers))
    targets, record = [], {}
    for name, pre in algorithms().items():
        algo = AlgorithmRun(pre, batch)
        for t0 in LAYER0_STEPS if later else ():
            lr = match_step_size(algo, n_layers - 1 + t0, output)
            key = f"{name}|t0={t0}"
            last = algo.predict(n_layers - 1 + t0, [lr])[0]
            rec = record[key] = {"family": name, "t0": t0, "step_size": lr, "r2": {}, "gaps": {str(later[-1]): output_gap(last, output)}}
            for layer in later[:-1]:
                if not bool(torch.isfinite(algo.predict(layer + t0, [lr])).all()):
                    rec["r2"][str(layer)], rec["gaps"][str(layer)] = None, 1.0  # diverges on some prompt: nothing to read out
                    continue
                targets.append(probes.Target(f"{key}|{layer}", lambda b, pre=pre, t=layer + t0, lr=lr: AlgorithmRun(pre, b).predict(t, [lr])[0],
                                             per="prompt"))
    table = probe_all_layers(model, run, targets=["y_query"] + targets)
    for target in targets:
        key, layer = target.name.rsplit("|", 1)
        r2 = record[key]["r2"][layer] = table.get(int(layer), "resid_post", target.name).r2
        record[key]["gaps"][layer] = read_out_gap(r2)
    return {"layers": later, "algorithms": record}, table


def closest(iterates: dict, pto: bool) -> tuple[Optional[float], Optional[int], Optional[str]]:
    """(distance, t0, algorithm) of the closest GD (``pto=False``) or PtO run: the mean gap over the later layers."""
    best: tuple[Optional[float], Optional[int], Optional[str]] = (None, None, None)
    for rec in iterates["algorithms"].values():
        if rec["family"].startswith("pto:") != pto:
            continue
        dist = gd_distance([rec["gaps"].get(str(layer)) for layer in iterates["layers"]])
        if best[0] is None or dist < best[0]:
            best = (dist, rec["t0"], rec["family"])
    return best


def gap_columns(run: Any, iterates: dict, table: Any, family: str, t0: int) -> dict[str, list]:
    """Per-prompt numbers of one algorithm run's gaps (the record ``family|t0=t0`` of :func:`layer_iterates`, with its
    clean ``run`` and probe ``table``; ``family`` "gd" or "pto:<candidate>"), for a paired
    bootstrap of its distance over the prompts, the matched step size and the fitted probes held fixed.

    ``sq``, ``p``, ``p2``: each prompt's squared gap of the output to the algorithm's last iterate, the iterate and its
    square (the output gap is ``sqrt(mean(sq) / (mean(p2) - mean(p)^2))``, capped at 1); ``sse:l``, ``sst:l`` for an
    earlier later layer l: its probe's squared errors and deviations on the test prompts, 0 on the training prompts (so
    ``mean(sse) / mean(sst)`` is 1 - R2). A layer whose iterate diverged has none (its gap is 1).
    """
    rec = iterates["algorithms"][f"{family}|t0={t0}"]
    n_layers, batch = len(iterates["layers"]) + 1, run.batch
    output = (run.preds if run.preds.ndim == 1 else run.preds[:, -1]).double()
    last = AlgorithmRun(algorithms()[rec["family"]], batch).predict(n_layers - 1 + rec["t0"], [rec["step_size"]])[0]
    cols = {"sq": per_prompt_list((output - last) ** 2), "p": per_prompt_list(last), "p2": per_prompt_list(last ** 2)}
    for layer in iterates["layers"][:-1]:
        if rec["r2"].get(str(layer)) is None:
            continue
        row = table.get(layer, "resid_post", f"{rec['family']}|t0={rec['t0']}|{layer}")
        for key in ("sse", "sst"):
            full = torch.zeros(batch.batch_size, dtype=torch.float64)
            full[row.test_prompts] = row.per_prompt[key][:, 0].double().cpu()
            cols[f"{key}:{layer}"] = per_prompt_list(full)
    return cols
