"""Does a layer compute gradient descent? Probed predictions against t-step GD (von Oswald et al. 2023).

For every layer, a ridge probe reads the query's y off the layer's residual
stream (fitted on training prompts, see :mod:`icl_interp.tools.probing`). Its
predictions on the held-out prompts are compared with ``t`` steps of GD from 0
on the raw context (variant ``"gd"``) and on the preprocessed context (``"pto"``):

- the prediction MSE between the layer and each GD variant, for every ``t``; the
  best ``t`` per layer is the one with the lowest MSE on the test prompts;
- von Oswald et al.'s *model-cos*: the cosine between the sensitivities
  ``d yhat / d x_query`` of the probed prediction and of the GD predictor, per
  test prompt, averaged. The probe's is taken by autograd through the model's
  encoding; it is NaN where ``x_query`` does not reach the residual stream
  differentiably (an attached model fed integer tokens).

GD's step size for each ``t`` is grid-searched on the training prompts, by default
for the task (``lr_fit="task"``: lowest error on the true y, as the tuned baselines);
``lr_fit="layer"`` picks, per layer, the step whose predictions best match the layer's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

import probes

from ..baselines.estimators import GD, GD_LRS, PreprocessThenOptimize
from ..baselines.preprocess import PreprocessFn, Preprocessing, as_preprocessing
from ..baselines.tuning import prefix_predictions
from ..core.checks import check_choice, check_float, check_int
from ..core.protocol import ToolModel, as_model
from ..core.tasks import ICLBatch
from .probing import EMBED, SITES, _capture, _fit_score, _new_probe, _plan, _split, _values, capture_with_grad
from .runner import CleanRun, prepare, residual_input

__all__ = ["GDAlignment", "GDLayerRow", "gd_alignment"]


@dataclass
class GDLayerRow:
    """One layer against every GD variant: per-``t`` lists (aligned with ``GDAlignment.steps``) and the best ``t``."""

    layer: int
    site: str
    probe_mse: float  # the probed prediction's error on the true y (P-probing risk)
    mse: dict[str, list[float]]  # prediction MSE between the layer and each variant's t-step GD
    model_cos: dict[str, list[float]]
    lr: dict[str, list[float]]
    best_t: dict[str, int]
    best_mse: dict[str, float]
    best_cos: dict[str, float]


@dataclass
class GDAlignment:
    """Per-layer comparison with GD; ``task_mse[v][i]``: variant ``v``'s own test error at ``steps[i]``."""

    rows: list[GDLayerRow]
    steps: list[int]
    variants: dict[str, str]
    task_mse: dict[str, list[float]]
    task_lr: dict[str, list[float]]
    lr_fit: str
    positions: str
    n_train: int
    n_test: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        names = list(self.variants)
        head = f"{'layer':>6} {'probe_mse':>10}" + "".join(f" {v + ' t*':>8} {v + ' mse':>10} {v + ' cos':>8}" for v in names)
        lines = [head]
        for r in self.rows:
            cells = "".join(f" {r.best_t[v]:>8} {r.best_mse[v]:>10.4g} {r.best_cos[v]:>8.3f}" for v in names)
            lines.append(f"{r.layer:>6} {r.probe_mse:>10.4g}" + cells)
        return "\n".join(lines)


def _estimator(steps: int, lr: float, pre: Optional[PreprocessFn]) -> Any:
    return GD(steps, lr) if pre is None else PreprocessThenOptimize(pre, steps, lr)


def _gd_predictions(data: ICLBatch, steps: int, lr: float, pre: Optional[PreprocessFn], examples: Optional[Tensor]) -> Tensor:
    """``[B, P]`` GD predictions: of the query (``examples is None``) or of each example from the ones before it."""
    if examples is None:
        return probes.gd_prediction(steps, lr, pre)(data)[:, None]
    return prefix_predictions(_estimator(steps, lr, pre), data)[:, examples]


def _cosine(a: Tensor, b: Tensor) -> float:
    """Mean over prompts of cos(a_i, b_i); prompts where either vector is 0 or NaN are skipped."""
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    ok = (na > 0) & (nb > 0) & torch.isfinite(na) & torch.isfinite(nb)
    if not bool(ok.any()):
        return math.nan
    return float(((a * b).sum(-1)[ok] / (na[ok] * nb[ok])).mean())


def _query_grad(data: ICLBatch, fn: Any) -> Tensor:
    """``d fn(batch) / d x_query`` per prompt ``[B, d]`` (NaN where x_query does not reach the output)."""
    xs = data.xs.detach().clone().requires_grad_(True)
    batch = ICLBatch(xs, data.ys, data.w)
    with torch.enable_grad():
        out = fn(batch)
        grad = torch.autograd.grad(out.sum(), xs, allow_unused=True)[0] if out.requires_grad else None
    if grad is None:
        return torch.full((data.batch_size, data.d), math.nan, dtype=torch.float64)
    return grad[:, -1].double()


def _probe_grads(model: Any, data: ICLBatch, layer_sites: list, fitted: dict) -> dict:
    """Sensitivity of every layer's probed query prediction to x_query, from one forward with grad."""
    xs = data.xs.detach().clone().requires_grad_(True)
    batch = ICLBatch(xs, data.ys, data.w)
    out = {}
    with torch.enable_grad():
        resid0 = residual_input(model, batch)
        tokens = _plan(model.layout(data.n_points, resid0.shape[1]), "query", data.n_points).tokens
        acts = capture_with_grad(model, resid0, layer_sites, tokens)
        for key in layer_sites:
            pred = fitted[key].predict(acts[key][:, 0])
            grad = None
            if pred.requires_grad:
                grad = torch.autograd.grad(pred.sum(), xs, retain_graph=True, allow_unused=True)[0]
            out[key] = (
                torch.full((data.batch_size, data.d), math.nan, dtype=torch.float64) if grad is None else grad[:, -1].double()
            )
    return out


def _check_steps(steps: Any) -> list[int]:
    if isinstance(steps, int) and not isinstance(steps, bool):
        steps = [steps]
    if not isinstance(steps, Sequence) or not steps:
        raise ValueError(f"steps must be a non-empty list of positive ints, got {steps!r}")
    return [check_int("steps", t, min_value=1) for t in steps]


def _check_lrs(lrs: Any) -> list[float]:
    if lrs is None:
        return list(GD_LRS)
    if not isinstance(lrs, Sequence) or isinstance(lrs, str) or not lrs:
        raise ValueError(f"lrs must be None or a non-empty list of positive step sizes, got {lrs!r}")
    return [check_float("lrs", lr, min_value=0.0, strict_min=True) for lr in lrs]


def gd_alignment(
    model: ToolModel,
    data: Union[ICLBatch, CleanRun],
    steps: Sequence[int] = (1, 2, 3, 4),
    lrs: Optional[Sequence[float]] = None,
    preprocessing: Union[None, str, Preprocessing, PreprocessFn] = "reweight",
    positions: str = "query",
    *,
    site: str = "resid_post",
    lr_fit: str = "task",
    probe: Any = "ridge",
    test_fraction: float = 0.25,
    seed: int = 0,
) -> GDAlignment:
    """Compare every layer's probed prediction of y with t-step GD on raw and preprocessed data.

    ``lrs`` is the step-size grid (default ``baselines.GD_LRS``); ``preprocessing=None``
    drops the ``"pto"`` variant. ``positions="query"`` compares query predictions;
    ``"all"`` (ICLTransformer) compares the prediction at every x token with GD on the
    examples before it (model-cos stays at the query). Rows include the input (layer -1).
    """
    model = as_model(model)
    steps = _check_steps(steps)
    lrs = _check_lrs(lrs)
    variants: dict[str, Optional[PreprocessFn]] = {"gd": None}
    if preprocessing is not None:
        variants["pto"] = as_preprocessing(preprocessing)
    check_choice("positions", positions, ("query", "all"))
    site = check_choice("site", site, SITES)
    lr_fit = check_choice("lr_fit", lr_fit, ("task", "layer"))
    _new_probe(probe)
    test_fraction = check_float("test_fraction", test_fraction, min_value=0.0, max_value=1.0, strict_min=True)
    run = prepare(model, data)
    data = run.batch
    train, test = _split(data.batch_size, test_fraction, check_int("seed", seed, min_value=0))

    layer_sites = [(EMBED, "embed")] + [(layer, site) for layer in range(model.hooked.cfg.n_layers)]
    with torch.no_grad():
        plan = _plan(run.layout(), positions, data.n_points)
        acts = _capture(run, layer_sites, plan.tokens)
        y = _values(probes.get("y_query" if positions == "query" else "y"), data, plan)[..., 0].double()  # [B, P]
        examples = None if positions == "query" else plan.examples
        # gd[v]: [T, A, B, P] predictions of every (steps, lr)
        gd = {
            v: torch.stack([torch.stack([_gd_predictions(data, t, lr, pre, examples) for lr in lrs]) for t in steps]).double()
            for v, pre in variants.items()
        }

    def err(pred: Tensor, ref: Tensor, idx: Tensor) -> Tensor:
        """MSE over the prompts ``idx`` (and positions), for a stack ``[..., B, P]``; non-finite -> inf."""
        e = ((pred[..., idx, :] - ref[idx]) ** 2).mean((-1, -2))
        return torch.nan_to_num(e, nan=math.inf, posinf=math.inf)

    task_choice = {v: err(g, y, train).argmin(-1) for v, g in gd.items()}  # [T] lr index per t
    fitted, probe_pred, probe_mse = {}, {}, {}
    for key in layer_sites:
        fitted[key] = _fit_score(probe, acts[key], y[..., None], train, test)[0]
        b, p, f = acts[key].shape
        probe_pred[key] = fitted[key].predict(acts[key].reshape(-1, f)).reshape(b, p).double()
        probe_mse[key] = float(err(probe_pred[key], y, test))

    test_data = data[test]
    probe_grads = _probe_grads(model, test_data, layer_sites, fitted)
    gd_grads: dict = {}

    def gd_grad(v: str, ti: int, ai: int) -> Tensor:
        if (v, ti, ai) not in gd_grads:
            gd_grads[(v, ti, ai)] = _query_grad(test_data, probes.gd_prediction(steps[ti], lrs[ai], variants[v]))
        return gd_grads[(v, ti, ai)]

    rows = []
    for key in layer_sites:
        mse, cos, lr_used, best_t, best_mse, best_cos = {}, {}, {}, {}, {}, {}
        for v, g in gd.items():
            choice = err(g, probe_pred[key], train).argmin(-1) if lr_fit == "layer" else task_choice[v]
            per_t = [float(err(g[ti, int(choice[ti])], probe_pred[key], test)) for ti in range(len(steps))]
            cos[v] = [_cosine(probe_grads[key], gd_grad(v, ti, int(choice[ti]))) for ti in range(len(steps))]
            mse[v], lr_used[v] = per_t, [lrs[int(a)] for a in choice]
            best = min(range(len(steps)), key=lambda i: per_t[i])
            best_t[v], best_mse[v], best_cos[v] = steps[best], per_t[best], cos[v][best]
        rows.append(GDLayerRow(key[0], key[1], probe_mse[key], mse, cos, lr_used, best_t, best_mse, best_cos))

    task_mse = {v: [float(err(g[ti, int(task_choice[v][ti])], y, test)) for ti in range(len(steps))] for v, g in gd.items()}
    return GDAlignment(
        rows=rows,
        steps=steps,
        variants={v: "raw" if pre is None else str(pre) for v, pre in variants.items()},
        task_mse=task_mse,
        task_lr={v: [lrs[int(a)] for a in c] for v, c in task_choice.items()},
        lr_fit=lr_fit,
        positions=positions,
        n_train=len(train),
        n_test=len(test),
    )
