"""The second seed (Cui et al. 2024): one-layer softmax attention, single- against multi-head, loss ~ c / D + e.

:func:`multihead_study` compares the models of one task; :func:`settings_study` runs it
on the seed's other settings (noisy labels, correlated features, local examples, a
prior mean theta_0: our definitions, in the README) and, where the task has a prior
mean, :func:`prior_study` asks whether each model has learned theta_0.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ...core.checks import check_int
from ...core.protocol import model_device
from ...core.tasks import Task
from ...tools.evaluation import evaluate, paired_bootstrap
from ._common import PathLike, per_prompt_list


def c_weights(ds: list[int]) -> torch.Tensor:
    """The weights ``a`` with ``c = a . losses`` of :func:`fit_inverse_d` (least squares is linear in the losses): so each
    prompt's ``a . losses_prompt`` is its share of c, and their mean is c."""
    a = torch.tensor([[1.0 / d, 1.0] for d in ds], dtype=torch.float64)
    return torch.linalg.pinv(a)[0]


def fit_inverse_d(ds: list[int], losses: list[float]) -> tuple[float, float]:
    """Least-squares fit ``loss(D) = c / D + e``; returns (c, e)."""
    if len(ds) != len(losses) or len(ds) < 2:
        raise ValueError(f"ds and losses must be two lists of the same length >= 2, got {len(ds)} and {len(losses)}")
    a = torch.tensor([[1.0 / d, 1.0] for d in ds], dtype=torch.float64)
    sol = torch.linalg.lstsq(a, torch.tensor(losses, dtype=torch.float64).unsqueeze(1)).solution
    return float(sol[0]), float(sol[1])


def multihead_study(
    models: dict[str, Any],
    task: Task,
    *,
    d_min: int = 8,
    n_prompts: int = 2000,
    seed: int = 5,
    quick: bool = False,
    out: PathLike = None,
) -> dict:
    """Excess risk of each query-only model against the number of examples D, with fitted ``c / D + e``.

    ``models`` maps a label to a one-layer softmax-attention model (concatenated
    encoding); its ``cfg`` gives the embedding size p and the head count h. Each
    multi-head model is compared with the single-head one of the same p
    (``comparisons``: c multi / c single, and whether p/h >= d; ``per_prompt_c_*``: each
    prompt's share of the two c, :func:`c_weights`, whose means are the c: the claims' paired
    bootstrap; the models share the prompts, seed 5).
    """
    if not isinstance(models, dict) or not models:
        raise ValueError(f"models must be a non-empty dict label -> model, got {models!r}")
    if not isinstance(task, Task):
        raise TypeError(f"task must be a Task, got {type(task).__name__}")
    d_min = check_int("d_min", d_min, min_value=1)
    if quick:
        n_prompts = 200
    rows, per_prompt_c = {}, {}
    for name, model in models.items():
        n_points = model.cfg.max_points
        res = evaluate(_fast(model), task, n_points=n_points, n_prompts=n_prompts, seed=seed)
        ds = [int(k) for k in res.n_context.tolist() if k >= d_min]
        losses = [float(res.excess_risk[k]) for k in ds]
        c, e = fit_inverse_d(ds, losses)
        per_prompt_c[name] = per_prompt_list(res.per_prompt[:, ds] @ c_weights(ds))  # the floor cancels: it moves only e
        rows[name] = {"p": model.cfg.d_model, "h": model.cfg.n_heads, "p_over_h": model.cfg.d_model / model.cfg.n_heads,
                      "D": ds, "excess_risk": losses, "c": c, "e": e}
    result = {"task": task.to_dict(), "d": task.d, "models": rows}
    by_p: dict[int, dict[int, dict]] = {}
    for name, row in rows.items():
        by_p.setdefault(row["p"], {})[row["h"]] = {**row, "per_prompt_c": per_prompt_c[name]}
    comparisons = []
    for p_, heads in sorted(by_p.items()):
        if 1 in heads:
            for h, row in sorted(heads.items()):
                if h > 1:
                    comparisons.append({"p": p_, "h": h, "p_over_h_ge_d": p_ / h >= task.d, "c_single": heads[1]["c"],
                                        "c_multi": row["c"], "c_multi_over_single": row["c"] / heads[1]["c"],
                                        "risk_at_max_D_single": heads[1]["excess_risk"][-1], "risk_at_max_D_multi": row["excess_risk"][-1],
                                        "per_prompt_c_single": heads[1]["per_prompt_c"], "per_prompt_c_multi": row["per_prompt_c"]})
    result["comparisons"] = comparisons
    if out is not None:
        from ..study_plots import plot_multihead_study, save_figure

        result["figure"] = save_figure(plot_multihead_study(result), out, "multihead.png")
    return result


def _fast(model: Any) -> Any:
    """``model``'s forward without the hook machinery (the same function, tested; about half the time here), taking prompts
    where they are and giving the predictions there (the model runs on its own device)."""
    if not isinstance(model, torch.nn.Module):
        return model
    dev = model_device(model)
    return lambda xs, ys: model(xs.to(dev), ys.to(dev), fast=True).to(xs.device)


def _posterior_mean(xs: torch.Tensor, ys: torch.Tensor, mean: torch.Tensor, var: float, noise_var: float) -> torch.Tensor:
    """Posterior mean of w per prompt under the prior ``N(mean, var I)`` and Gaussian label noise (ridge around ``mean``)."""
    d = xs.shape[-1]
    resid = ys - xs @ mean
    gram = xs.transpose(1, 2) @ xs + (noise_var / var) * torch.eye(d, dtype=xs.dtype)
    return mean + torch.linalg.solve(gram, (xs.transpose(1, 2) @ resid.unsqueeze(-1)))[..., 0]


@torch.no_grad()
def prior_study(models: dict[str, Any], task: Task, *, ds: Optional[list[int]] = None, n_prompts: int = 20000, seed: int = 11) -> dict:
    """Has each model learned the prior mean theta_0 (``task.w_mean``)? Measured with few examples D (default 1..d).

    At each D, for the models and four references (predicting 0; theta_0 . x_q alone; the
    Bayes posterior mean, which knows theta_0; the best Gaussian-prior estimator that does
    not, prior N(0, (sigma^2 + |theta_0|^2 / d) I)): the error of the query's prediction
    and ``theta0_distance`` = |u - theta_0| / |theta_0|, where u is the least-squares fit
    of the predictions on x_q over the prompts, the predictor's mean function: 0 for
    predicting 0, about 0 for any predictor that uses theta_0, far from 0 for one that
    must estimate all of w from D < d examples (min-norm least squares at D = 1: 1 - 1/d).
    Prompts of D + 1 <= d + 1 points are cheap, hence 20,000 by default: at 2,000 the
    distance's sampling error (about 0.013 for |theta_0| = 2) is as large as the margins
    the prior claims are decided on. ``theta0_distance_draws``: at the smallest D, each
    predictor's distance on the same bootstrap resamples of the prompts (the prior claims'
    intervals).
    """
    if not isinstance(task, Task) or task.w_mean is None:
        raise ValueError(f"task must be a Task with a prior mean (w_mean), got {task!r}")
    if not isinstance(models, dict) or not models or not all(callable(m) for m in models.values()):
        raise ValueError(f"models must be a non-empty dict label -> model(xs, ys) (the query's prediction), got {models!r}")
    ds = list(range(1, task.d + 1)) if ds is None else [check_int("ds[i]", k, min_value=1) for k in ds]
    n_prompts = check_int("n_prompts", n_prompts, min_value=task.d + 1)
    theta0 = torch.tensor(task.w_mean, dtype=torch.float64)
    var, noise_var = max(task.w_std**2, 1e-12), max(task.noise_std**2, 1e-12)
    refs = {"predict 0": lambda x, y, q: torch.zeros(len(q), dtype=torch.float64),
            "theta_0 . x_q": lambda x, y, q: q @ theta0,
            "Bayes (knows theta_0)": lambda x, y, q: (_posterior_mean(x, y, theta0, var, noise_var) * q).sum(-1),
            "no-prior ridge": lambda x, y, q: (_posterior_mean(x, y, 0 * theta0, var + float(theta0 @ theta0) / task.d,
                                                               noise_var) * q).sum(-1)}
    rows: dict[str, dict] = {name: {"error": [], "theta0_distance": []} for name in [*models, *refs]}
    draws: dict[str, list[float]] = {}
    for k in ds:
        batch = task.sample(n_prompts, k + 1, seed=seed + k)
        xs, ys = batch.xs.double(), batch.ys.double()
        x, y, q, target = xs[:, :k], ys[:, :k], xs[:, k], ys[:, k]
        preds = {name: fn(x, y, q) for name, fn in refs.items()}
        preds.update({name: _fast(m)(batch.xs, batch.ys).double().reshape(-1) for name, m in models.items()})
        for name, pred in preds.items():
            u = torch.linalg.lstsq(q, pred.unsqueeze(1)).solution[:, 0]
            rows[name]["error"].append(float(((pred - target) ** 2).mean()) / task.norm)
            rows[name]["theta0_distance"].append(float((u - theta0).norm() / theta0.norm()))
        if k == ds[0]:
            draws = _distance_draws(q, preds, theta0)
    return {"D": ds, "theta_0": theta0.tolist(), "w_std": task.w_std, "n_prompts": n_prompts, "rows": rows, "theta0_distance_draws": draws}


def _distance_draws(q: torch.Tensor, preds: dict[str, torch.Tensor], theta0: torch.Tensor) -> dict[str, list[float]]:
    """Each predictor's theta_0 distance on the same bootstrap resamples of the prompts (claims.N_BOOT, BOOT_SEED):
    u solves the resample's normal equations, mean(q q^T) u = mean(q pred), so the per-prompt q q^T and q pred are all it
    needs; paired, so the prior claims' ratios of distances get intervals."""
    from ..claims._core import BOOT_SEED, N_BOOT

    d, names = q.shape[1], list(preds)
    table = torch.cat([(q[:, :, None] * q[:, None, :]).reshape(len(q), -1)] + [q * preds[n].reshape(-1, 1) for n in names], 1)

    def stat(means: torch.Tensor) -> torch.Tensor:
        gram = means[..., : d * d].unflatten(-1, (d, d))
        rhs = means[..., d * d :].unflatten(-1, (len(names), d)).transpose(-1, -2)
        u = torch.linalg.solve(gram, rhs).transpose(-1, -2)
        return (u - theta0).norm(dim=-1) / theta0.norm()

    _, boot = paired_bootstrap(table, stat, N_BOOT, BOOT_SEED)
    return {n: per_prompt_list(boot[:, i]) for i, n in enumerate(names)}


def _prior_comparison(prior: dict, multi: str, single: str) -> dict:
    """The prior study's numbers at its smallest D for one (multi-head, single-head) pair: what the prior claims read
    (``distance_draws``: the pair's and the Bayes predictor's distances on the same bootstrap resamples)."""
    at = {name: {key: row[key][0] for key in ("error", "theta0_distance")} for name, row in prior["rows"].items()}
    draws = prior.get("theta0_distance_draws", {})
    paired = {"distance_draws": {"multi": draws[multi], "single": draws[single], "bayes": draws["Bayes (knows theta_0)"]},
              "n_prompts": prior["n_prompts"]} if draws else {}
    return {**paired, "D": prior["D"][0], "distance_multi": at[multi]["theta0_distance"], "distance_single": at[single]["theta0_distance"],
            "distance_bayes": at["Bayes (knows theta_0)"]["theta0_distance"], "distance_no_prior": at["no-prior ridge"]["theta0_distance"],
            "error_multi": at[multi]["error"], "error_single": at[single]["error"], "error_bayes": at["Bayes (knows theta_0)"]["error"],
            "error_prior_only": at["theta_0 . x_q"]["error"], "error_zero": at["predict 0"]["error"]}


def settings_study(
    settings: dict[str, dict[str, Any]],
    *,
    d_min: int = 8,
    n_prompts: int = 2000,
    prior_prompts: int = 20000,
    seed: int = 5,
    prior_seed: int = 11,
    quick: bool = False,
    out: PathLike = None,
) -> dict:
    """The second seed's other settings: :func:`multihead_study` per setting (its models share one task).

    ``settings`` maps a setting's name (e.g. ``"noisy"``) to its models (label -> model);
    ``seed`` draws the multihead prompts, ``prior_seed`` the prior study's.
    Where the task has a prior mean, :func:`prior_study` runs too (on ``prior_prompts``
    prompts; ``quick``: 2,000) and each comparison gets its pair's prior numbers at the
    smallest D (``comparison["prior"]``).
    """
    if not isinstance(settings, dict) or not settings:
        raise ValueError(f"settings must be a non-empty dict setting -> {{label: model}}, got {settings!r}")
    result: dict[str, Any] = {"settings": {}}
    for setting, models in settings.items():
        if not isinstance(models, dict) or not models or not all(isinstance(getattr(m, "task", None), Task) for m in models.values()):
            raise ValueError(f"settings[{setting!r}] must be a non-empty dict label -> model with its task, got {models!r}")
        tasks = {name: m.task.to_dict() for name, m in models.items()}
        if len({repr(t) for t in tasks.values()}) != 1:
            raise ValueError(f"settings[{setting!r}]: the models must share one task, got {tasks}")
        task = next(iter(models.values())).task
        res = multihead_study(models, task, d_min=d_min, n_prompts=n_prompts, seed=seed, quick=quick)
        if task.w_mean is not None:
            res["prior"] = prior_study(models, task, n_prompts=2000 if quick else prior_prompts, seed=prior_seed)
            label = {(row["p"], row["h"]): name for name, row in res["models"].items()}
            for cmp in res["comparisons"]:
                cmp["prior"] = _prior_comparison(res["prior"], label[cmp["p"], cmp["h"]], label[cmp["p"], 1])
        result["settings"][setting] = res
    if out is not None:
        from ..study_plots import plot_settings_study, save_figure

        result["figure"] = save_figure(plot_settings_study(result), out, "multihead_settings.png")
    return result
