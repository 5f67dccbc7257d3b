"""The mechanism over training: every single-model claim's deciding number along a run's snapshots.

For each snapshot (``training.snapshots``), the six single-model studies run on the
same fresh prompts (:func:`~icl_interp.analysis.studies.single.single_model_studies`), the
claims are decided (:func:`icl_interp.analysis.claims.decide`), and the error at the largest
n is set against the tuned ridge and Lasso. The summary answers the question of
issue 14: does the seed's pattern appear when the model leaves the ridge plateau,
before it, or never? A model *leaves the plateau* at the first snapshot whose error
is clearly below ridge's (ridge's error more than ``claims.CLEAR_ERROR_RATIO`` times
the model's: two errors within 10% count as the same performance).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from ...baselines.tuning import best_lasso, best_ridge
from ...core.atomic import atomic_write_bytes
from ...core.checkpoint import load_model, resolve_model
from ...core.checks import check_int
from ...tools.evaluation import evaluate
from ...training.loop import snapshots as list_snapshots
from .. import claims as cl
from ._common import PathLike
from .single import single_model_studies

__all__ = ["dynamics_study", "load_history", "llc_history", "llc_stages", "llc_lines", "PANELS"]

CLAIMS = ("layer0_all_heads", "later_single_head", "pruning_preserves", "layer0_preprocesses", "later_gd_steps",
          "steps_on_preprocessed")


def _min(values: Sequence[float]) -> float:
    return min(values) if values else math.nan


#: (claim id, what is plotted, its value from the claim's values, the claim's threshold, "above" or "below" it is good)
PANELS: list[tuple[str, str, Callable[[dict], float], float, str]] = [
    ("layer0_all_heads", "least layer-0 head's share of the skill", lambda v: _min(v["skill_share"]), cl.HEAD_ESSENTIAL_RISE, "above"),
    ("later_single_head", "least top-head share, layers 1..", lambda v: _min(v["top_head_share"]), cl.TOP_HEAD_MAJORITY, "above"),
    ("pruning_preserves", "pruned / full error", lambda v: v["pruned_over_full"], cl.CLEAR_ERROR_RATIO, "below"),
    ("layer0_preprocesses", "best preprocessing R2 gain over the input", lambda v: v["gain_over_input"], cl.PREPROCESS_R2_GAIN, "above"),
    ("later_gd_steps", "gap to GD's iterates", lambda v: v["distance_gd"], cl.GD_CLOSE, "below"),
    ("steps_on_preprocessed", "gap to PtO's iterates", lambda v: v["distance_pto"], cl.GD_CLOSE, "below"),
]


def _init_from(source: Union[str, Path]) -> Optional[str]:
    """The model a run (folder) or zoo model was warm-started from (``TrainConfig.init_from``), if any."""
    folder = resolve_model(source)[0]
    for config in (folder / "config.json", folder / "model" / "config.json"):
        if config.is_file():
            return json.loads(config.read_text()).get("training", {}).get("train_config", {}).get("init_from")
    return None


def load_history(source: Union[str, Path], *, every: int = 1, device: Any = None) -> list[tuple[int, Any]]:
    """``[(step, model)]`` from a run folder or a zoo model that carries ``snapshots/`` (every ``every``-th one, the last
    always), each loaded on ``device`` (default the CPU). A model warm-started from another (``init_from``: a second training stage) continues that one's history,
    its steps counted on from the earlier stage's last."""
    every = check_int("every", every, min_value=1)
    if Path(source).name == "model" and (Path(source).parent / "snapshots").is_dir():  # a run's final model: the run
        source = Path(source).parent
    parent = _init_from(source)
    earlier = load_history(parent, every=every, device=device) if parent else []
    found = list_snapshots(source)
    if not found and not earlier:
        raise ValueError(f"source {str(source)!r} has no snapshots/ (train with keep_log= or keep_every=)")
    kept = found[::every] if not found or found[::every][-1] == found[-1] else found[::every] + [found[-1]]
    offset = earlier[-1][0] if earlier else 0
    return earlier + [(offset + step, load_model(path, device=device)) for step, path in kept]


def dynamics_study(
    history: Sequence[tuple[int, Any]],
    *,
    n_prompts: int = 512,
    error_prompts: int = 2000,
    seed: int = 7,
    out: PathLike = None,
) -> dict:
    """Each claim's verdict and deciding numbers at every snapshot of ``history`` (``[(step, model)]``, in step order),
    the error at the largest n against the tuned ridge and Lasso, and when each claim first holds."""
    if not isinstance(history, (list, tuple)) or not history:
        raise ValueError(f"history must be a non-empty list of (step, model), got {history!r}")
    steps = [check_int("history[i][0] (step)", s, min_value=0) for s, _ in history]
    if steps != sorted(steps):
        raise ValueError(f"history must be in step order, got steps {steps}")
    n_prompts = check_int("n_prompts", n_prompts, min_value=8)
    error_prompts = check_int("error_prompts", error_prompts, min_value=8)
    model = history[-1][1]
    task, n = model.task, model.cfg.max_points
    if task is None:
        raise ValueError("the snapshots' model must know its task")
    base = {name: float(evaluate(tuner(task, n, n_prompts=1000), task, n_points=n, n_prompts=error_prompts, seed=1).error[-1])
            for name, tuner in (("ridge", best_ridge), ("lasso", best_lasso))}
    rows = []
    for step, snap in history:
        err = float(evaluate(snap, task, n_points=n, n_prompts=error_prompts, seed=1).error[-1])
        decided = {c.id: c for c in cl.decide(single_model_studies(snap, n_prompts=n_prompts, seed=seed, ablations=("zero",)))}
        rows.append({"step": step, "error_last": err, "over_ridge": err / base["ridge"], "over_lasso": err / base["lasso"],
                     "claims": {i: {"verdict": decided[i].verdict, "values": decided[i].values} for i in CLAIMS if i in decided},
                     "panels": {i: f(decided[i].values) for i, _, f, _, _ in PANELS if i in decided}})
    result = {"n_largest": n - 1, "baselines_at_largest_n": base, "n_prompts": n_prompts, "error_prompts": error_prompts,
              "rows": rows, "panels": [{"claim": i, "label": lab, "threshold": t, "good": g} for i, lab, _, t, g in PANELS]}
    result["summary"] = _summary(rows)
    if out is not None:
        from ..study_plots import plot_dynamics_study, save_figure

        result["figure"] = save_figure(plot_dynamics_study(result), out, "dynamics.png")
    return result


def llc_history(history: Sequence[tuple[int, Any]], *, progress: bool = False, cache: PathLike = None, **settings: Any) -> dict:
    """The local learning coefficient (:func:`icl_interp.llc`) at every snapshot of ``history``, all at the same settings
    (``settings``: any of ``llc``'s; default the calibrated ones) and the same prompts: ``{"settings", "rows"}``, a row
    per snapshot ``{"step", "llc", "se", "converged", "near_minimum", "stage"}`` where ``stage`` is the estimate on the
    prompts of the snapshot's own curriculum stage (``{"llc", "se", "active_dims", "n_points", ...}``) or None. Needs the
    optional extra (``pip install 'icl-interp[devinterp]'``); about 40 s a snapshot (twice that with a stage) at one
    thread. With ``cache`` (a JSON file) each finished snapshot is kept there as it comes, and a rerun with the same
    settings takes the snapshots it holds (same step and weights) from it: a long run killed part-way goes on."""
    from ...tools.learning_coefficient import llc

    if not isinstance(history, (list, tuple)) or not history:
        raise ValueError(f"history must be a non-empty list of (step, model), got {history!r}")
    kept: dict = {}
    if cache is not None and Path(cache).is_file():
        stored = json.loads(Path(cache).read_text())
        if stored.get("requested") == settings:
            kept = {(r["step"], r.get("weights")): r for r in stored["rows"]}
    rows, used = [], None
    for i, (step, snap) in enumerate(history):
        weights = (getattr(snap, "saved_config", None) or {}).get("weights_sha256")
        if (step, weights) in kept and weights is not None:
            rows.append(kept[(step, weights)])
            continue
        if progress:
            print(f"  LLC at step {step} ({i + 1}/{len(history)})", flush=True)
        res = llc(snap, **settings)
        used = res.settings
        row = {"step": step, "weights": weights, **_llc_numbers(res), "prompts": res.prompts, "stage": None}
        if res.stage is not None:
            row["stage"] = {**_llc_numbers(res.stage), **res.stage.prompts}
        rows.append(row)
        if cache is not None:
            atomic_write_bytes(Path(cache), json.dumps({"requested": settings, "settings": used, "rows": rows}).encode())
    if used is None:  # every row from the cache
        used = json.loads(Path(cache).read_text())["settings"]
    return {"settings": used, "rows": rows}


def _llc_numbers(res: Any) -> dict:
    return {"llc": res.llc, "se": res.se, "per_chain": res.per_chain, "converged": res.converged,
            "near_minimum": res.near_minimum}


#: consecutive LLCs differ when their difference exceeds this many standard errors (of the difference)
LLC_Z = 2.0


def llc_stages(llc_rows: Sequence[dict], claim_rows: Sequence[dict] = ()) -> dict:
    """Stage boundaries from the LLC over training: its turning points over the (log-spaced) snapshots.

    Only snapshots near a minimum (a non-negative estimate) count. A step between neighbours is a rise or a fall when
    the LLCs differ by more than :data:`LLC_Z` standard errors of the difference, else flat; a peak is the highest
    snapshot between a rise and the next fall (a trough: the lowest between a fall and the next rise). Each boundary
    carries the LLC and its standard error, and, from ``claim_rows`` (the dynamics study's rows), the claims' plotted
    values and the error over ridge at that step. ``near_minimum_from``: the first snapshot from which every estimate
    is non-negative.
    """
    rows = [r for r in llc_rows if r["near_minimum"]]
    moves = []
    for a, b in zip(rows, rows[1:]):
        diff, se = b["llc"] - a["llc"], math.hypot(a["se"], b["se"])
        moves.append(1 if diff > LLC_Z * se else (-1 if diff < -LLC_Z * se else 0))
    boundaries = []
    last, since = 0, 0  # the last non-flat move and the row where it ended
    for j, move in enumerate(moves):
        if move == 0:
            continue
        if last and move != last:  # a turn: the extreme snapshot between the previous move's end and this move's start
            span = rows[since:j + 1]
            pick = max if last > 0 else min
            turn = pick(span, key=lambda r: r["llc"])
            boundaries.append({"step": turn["step"], "kind": "peak" if last > 0 else "trough", "llc": turn["llc"], "se": turn["se"]})
        last, since = move, j + 1
    by_step = {r["step"]: r for r in claim_rows}
    for b in boundaries:
        at = by_step.get(b["step"])
        if at is not None:
            b["claims"] = dict(at.get("panels", {}))
            b["over_ridge"] = at.get("over_ridge")
    near = None
    for r in llc_rows:
        near = (r["step"] if near is None else near) if r["near_minimum"] else None
    return {"boundaries": boundaries, "near_minimum_from": near, "z": LLC_Z}


def llc_lines(llc: dict) -> list[str]:
    """The report's Markdown for the stored LLC over training (``dynamics.json``'s ``llc``: no SGLD here) and its turning points."""
    st = llc["settings"]
    lines = ["", "### The local learning coefficient over training", "",
             f"SGLD (devinterp) at lr {st['lr']:g}, localization {st['localization']:g}, n beta {st['n_beta']:.0f}, "
             f"{st['num_chains']} chains x {st['num_draws']} draws (+ {st['num_burnin_steps']} burn-in), batch {st['batch_size']}: "
             "values compare only at these settings (docs/llc.md). Below 0: the snapshot is not near a minimum of the loss.",
             "", "| step | LLC (full task) | on its own curriculum stage |", "|---|---|---|"]
    for r in llc["rows"]:
        flag = "" if r["converged"] else " (still rising)"
        stage = r.get("stage")
        staged = f"{stage['llc']:.1f} +- {stage['se']:.1f} ({stage['active_dims']} dims)" if stage else "-"
        lines.append(f"| {r['step']} | {r['llc']:.1f} +- {r['se']:.1f}{flag} | {staged} |")
    stages = llc.get("stages", {})
    bounds = stages.get("boundaries", [])
    lines += ["", f"Near a minimum (LLC >= 0) from step {stages.get('near_minimum_from')}. Turning points of the LLC "
              f"(consecutive snapshots {stages.get('z', 2):g} standard errors apart):", ""]
    if bounds:
        ids = list(bounds[0].get("claims", {}))
        lines += ["| step | turn | LLC | error / ridge | " + " | ".join(f"`{i}`" for i in ids) + " |",
                  "|---|---|---|---|" + "---|" * len(ids)]
        lines += [f"| {b['step']} | {b['kind']} | {b['llc']:.1f} +- {b['se']:.1f} | {b.get('over_ridge', float('nan')):.2f} | "
                  + " | ".join(f"{b['claims'].get(i, float('nan')):.3g}" for i in ids) + " |" for b in bounds]
    else:
        lines.append("none.")
    return lines


def _first(rows: list[dict], holds: Callable[[dict], bool]) -> Optional[int]:
    """The first step from which ``holds`` is true at every later snapshot (None: not at the last one)."""
    first = None
    for row in rows:
        first = (row["step"] if first is None else first) if holds(row) else None
    return first


def _summary(rows: list[dict]) -> dict:
    """When the model leaves the ridge plateau, and when each claim is reproduced from then on: before, at/after, or never."""
    exit_step = _first(rows, lambda r: r["over_ridge"] * cl.CLEAR_ERROR_RATIO < 1.0)
    claims = {}
    for ident in CLAIMS:
        if not any(ident in r["claims"] for r in rows):
            continue
        first = _first(rows, lambda r, i=ident: r["claims"].get(i, {}).get("verdict") == "reproduced")
        if first is None:
            when = "never"
        elif exit_step is None:
            when = "without leaving the plateau"
        else:
            when = "before" if first < exit_step else "at or after"
        claims[ident] = {"reproduced_from": first, "relative_to_plateau_exit": when}
    return {"leaves_ridge_plateau_at": exit_step, "claims": claims}
