"""``icl-interp report``: every analysis on one model and its zoo siblings, as ``report.md`` and ``report.json``.

The studies (:mod:`icl_interp.analysis.studies`) compute the numbers, :mod:`icl_interp.analysis.claims`
decides each seed claim; this module runs them on the chosen model and renders
the results. The comparisons that need sibling models (head counts, the noise
sweep, the concatenated-token twin, the second seed) use the zoo index
(:func:`icl_interp.zoo.siblings`) and are skipped, with a note, when the model has none.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional, Union

from ..core.atomic import atomic_write_bytes, writable_folder
from ..core.checkpoint import ZOO_PREFIX, _is_path_like, load_model, resolve_model, zoo_folder, zoo_names
from ..core.devices import check_model_there, resolve_device
from ..core.protocol import model_device, sample_for
from ..tools.attention_view import attention_profile, plot_attention
from ..tools.evaluation import evaluate
from ..tools.runner import prepare
from ..zoo import Siblings, siblings, siblings_from
from ..zoo import seeds as zoo_seeds
from . import claims as cl
from . import studies as st
from .report_markdown import markdown
from .report_plan import (
    AGREEMENT_HEADS,
    BUDGET_S,
    ReportPlan,
    SectionStore,
    baseline_seconds,
    choose_plan,
    code_digest,
    weights_digest,
)
from .study_plots import plot_dynamics_study, save_figure

__all__ = ["write_report", "load_report", "single_model_studies", "prompt_seeds"]

IN_MEMORY = "model (in memory)"

#: every prompt set of one report, by use, as an offset added to ``prompt_seed * PROMPT_SEED_STRIDE``: prompt seed 0 keeps
#: the shipped report's draws. "study": the head, attention, probe and GD studies (the anchor, its concatenated and linear
#: twins, the noise sweep); "risk": the risk curves and the quality bar; "tuning": the baselines' held-out tuning prompts;
#: "gd_tuning": the GD study's tuned algorithms (its figure); "second_seed" and "prior": the second seed's c / D fits and
#: prior probe (which adds D to its seed per context length)
PROMPT_SETS = {"study": 7, "risk": 1, "tuning": 10_000, "gd_tuning": 20_000, "second_seed": 5, "prior": 11}
#: the gap between two prompt seeds' sets (above every offset plus what a study adds to its seed)
PROMPT_SEED_STRIDE = 100_000
#: prompts per study on a model's other training seeds (the shipped model's studies keep theirs): across seeds the
#: seeds' spread, not the prompts', dominates, and every seed's studies cost as much as the model's own
SEED_PROMPTS = 500
#: the prior probe's prompts on the second seed's other training seeds (the shipped models' probe keeps its 20,000): a
#: quarter, as SEED_PROMPTS is of the studies' 2,000 (its prompts have at most d + 1 points: about a second a seed)
SEED_PRIOR_PROMPTS = 5000


def prompt_seeds(prompt_seed: int = 0) -> dict[str, int]:
    """The sampling seed of each prompt set (:data:`PROMPT_SETS`) of the report drawn with ``prompt_seed``."""
    if isinstance(prompt_seed, bool) or not isinstance(prompt_seed, int) or prompt_seed < 0:
        raise ValueError(f"prompt_seed must be an int >= 0, got {prompt_seed!r}")
    return {k: v + prompt_seed * PROMPT_SEED_STRIDE for k, v in PROMPT_SETS.items()}

_SKIP_NOTES = {
    "head_counts": "no head-count siblings: the head-count comparison (Fig 1b, `head_count_order`) is skipped",
    "single_head": "no trained single-head sibling: `multihead_beats_single` is skipped",
    "noise_sweep": "no noise-sweep siblings: the pruning figure across noise levels (`noise_pruning`, `noise_single_head`) is skipped",
    "concat_twin": "no concatenated-token twin: the `concat_` claims are skipped",
    "linear_twin": "no trained linear-attention twin: the `linear_` claims are skipped",
    "second_seed": "no second-seed set (one-layer softmax models): `seed2_wide` and `seed2_narrow` are skipped",
    "second_seed_settings": "no models of the second seed's other settings: the `seed2_<setting>` claims are skipped",
}


def _attention(model: Any, data: Any, out: Path) -> dict:
    """Where each head's query attends, by example (attention_view), with its figure: numbers and picture of one source."""
    prof = attention_profile(model, data).to_dict()
    save_figure(plot_attention(model, data), out, "attention.png")
    return {**prof, "figure": "attention.png"}


def _stored_dynamics(name: str, out: Path) -> Optional[dict]:
    """The dynamics study a zoo model ships (``dynamics.json``, written by ``recipes/dynamics.py`` from its snapshots:
    minutes, so it is computed once, not at every report) with its figure redrawn; None when it ships none."""
    stored = zoo_folder(name) / "dynamics.json" if name in zoo_names() else None
    if stored is None or not stored.is_file():
        return None
    dyn = json.loads(stored.read_text())
    save_figure(plot_dynamics_study(dyn), out, "dynamics.png")
    return {**dyn, "figure": "dynamics.png", "source": f"icl_interp/zoo/{name}/dynamics.json (python recipes/dynamics.py --model {name})"}


def _resolve(model: Any, declared: Any = None, device: Any = None) -> tuple[str, Any, Siblings]:
    """(label, loaded model, siblings) for a zoo name, a saved model folder or an ICLTransformer in memory; a model from
    disk is loaded on ``device`` (a resolved ``torch.device``; None: the CPU), one in memory must already be there."""
    from ..core.model import ICLTransformer

    if isinstance(model, ICLTransformer):
        if model.task is None:
            raise ValueError("model must know its task (ICLTransformer(cfg, task)); got one with task None")
        if device is not None:
            check_model_there(device, model_device(model))
        return IN_MEMORY, model, Siblings()
    if not isinstance(model, (str, Path)):
        raise TypeError(f"model must be a zoo name, a saved model folder or an ICLTransformer, got {type(model).__name__}")
    try:
        folder, zoo_name = resolve_model(model)  # the name rule: zoo:NAME, ./NAME, a bare name only where unambiguous
    except ValueError as e:
        raise ValueError(f"model: {e}") from None
    if declared is not None:  # the caller's own declaration of the model's relatives (a model outside the index)
        label = zoo_name or str(model)
        return label, load_model(folder, device=device), siblings_from(label if zoo_name is None else ZOO_PREFIX + zoo_name, declared)
    if zoo_name is None:
        return str(model), load_model(folder, device=device), Siblings()
    return zoo_name, load_model(folder, device=device), siblings(ZOO_PREFIX + zoo_name)


def _seed_sets(names: Any) -> dict[str, dict[str, str]]:
    """``{k: {name: its seed-k model}}`` for each training seed k >= 1 that every one of ``names`` has in the zoo in use
    (:func:`icl_interp.zoo.seeds`): a comparison of models is made on seed k only with seed k of each of them. Empty where
    one of them has no seeds (a folder, a model in memory, a model trained once)."""
    by_seed = [zoo_seeds(n) for n in names]
    common = set.intersection(*(set(s) for s in by_seed)) - {0} if by_seed else set()
    return {str(k): {n: s[k] for n, s in zip(names, by_seed)} for k in sorted(common)}


def _curves_at_last(models: dict[str, Any], task: Any, n: int, n_prompts: int, seed: int) -> dict:
    """The part of :func:`icl_interp.analysis.studies.risk_curves` that :func:`~icl_interp.analysis.studies.head_count_summary` reads (each
    model's error curve and its per-prompt errors at the largest n, on the same prompts), without the baselines."""
    from .studies._common import per_prompt_list

    curves = {v: evaluate(m, task, n_points=n, n_prompts=n_prompts, seed=seed) for v, m in models.items()}
    return {"curves": {v: c.to_dict(per_prompt=False) for v, c in curves.items()},
            "per_prompt_last": {v: per_prompt_list(c.per_prompt[:, -1]) for v, c in curves.items()}}


def _collect(name: str, model: Any, sib: Siblings, quick: bool, out: Path, seeds: dict[str, int], *,
             plan: Optional[ReportPlan] = None, store: Optional[SectionStore] = None, progress: bool = False) -> dict:
    """Run every study that applies to ``model`` (and its siblings) on the same prompts; the results by study.

    ``seeds``: each prompt set's sampling seed (:func:`prompt_seeds`). ``plan``: the model's studies' prompt count and
    head-importance method (:func:`icl_interp.analysis.report_plan.choose_plan`; default: exact, the usual prompts).
    ``store``: where each finished study is written at once, and found again on a rerun (default: nowhere).
    ``progress``: a bar per study on stderr. Every comparison is also made on each training seed k that all its models
    have, seed k of each with seed k of the others (:func:`_seed_sets`). Siblings are loaded where ``model`` is."""
    import torch

    loaded, device = {name: model}, model_device(model)

    def get(sibling: str) -> Any:  # each sibling loaded once: a zoo name, or a folder a --siblings file declares
        if sibling not in loaded:
            is_folder = _is_path_like(sibling) or sibling.startswith(ZOO_PREFIX)
            loaded[sibling] = load_model(sibling if is_folder else ZOO_PREFIX + sibling, device=device)
        return loaded[sibling]

    task, n = model.task, model.cfg.max_points
    n_prompts = 256 if quick else 2000
    n_study = n_prompts if plan is None else plan.n_prompts  # the model's own studies (siblings keep n_prompts)
    seed_prompts = min(n_prompts, SEED_PROMPTS)  # prompts per study on the other training seeds
    method = "exact" if plan is None else plan.method
    cost = {} if plan is None else plan.study_seconds(model.cfg)
    store = SectionStore(out, {}, enabled=False) if store is None else store
    prepared: list = []

    def study_data() -> Any:  # one validated batch and clean forward for every study, made when the first one needs it
        if not prepared:
            prepared.append(prepare(model, sample_for(model, n_study, seed=seeds["study"])))
        return prepared[0]

    def section(key: str, compute: Any) -> Any:
        return store.section(key, compute, seconds=cost.get(key), progress=progress)

    r: dict[str, Any] = {"model": name, "model_config": model.cfg.to_dict(), "quick": quick, "prompt_seeds": seeds}
    variants = {v: get(v) for v in sib.head_counts}
    variants.setdefault(name, model)
    r["risk"] = section("risk", lambda: st.risk_study(variants, task, n, n_prompts=n_study, seed=seeds["risk"], tuning_seed=seeds["tuning"],
                                                      quick=quick, out=out))
    r["quality_bar"] = cl.quality_bar(r["risk"], name, task.d)
    # the head-count siblings (and below the concatenated twin) share the task, so the same tuned baselines: each one's bar
    # (issue 14: the comparison models reach the bar too, or the report says which do not)
    r["quality_bar_siblings"] = {v: cl.quality_bar(r["risk"], v, task.d) for v in variants if v != name}
    r["head_counts"] = st.head_count_summary(r["risk"], variants)
    # seed k of every head count that has one (all of them, or e.g. 1 and 4 heads where only those were trained on seeds)
    seeded = [v for v in variants if set(zoo_seeds(v)) - {0}]
    if head_count_seeds := _seed_sets(seeded if name in seeded and len(seeded) > 1 else []):
        def head_counts_by_seed() -> dict:  # on the risk prompts
            got = {}
            for k, names in head_count_seeds.items():
                twins = {names[v]: get(names[v]) for v in seeded}
                got[k] = st.head_count_summary(_curves_at_last(twins, task, n, seed_prompts, seeds["risk"]), twins)
            return got

        r["head_counts_seeds"] = section("head_counts_seeds", head_counts_by_seed)
    r["importance"] = section("importance", lambda: st.importance_study(model, study_data(), method=method, sample_heads=AGREEMENT_HEADS,
                                                                      sample_seed=seeds["study"], out=out))
    r["attention"] = section("attention", lambda: _attention(model, study_data(), out))
    single = get(sib.single_head) if sib.single_head else None
    # every ablation kind removes the same heads, those zero ablation's importance prunes (so at every noise level)
    r["pruning"] = section("pruning", lambda: st.pruning_study(model, study_data(), single_head=single,
                                                               importance=torch.tensor(r["importance"]["ablation"]), out=out))

    def seed_studies(zoo_name: str, single_head: Optional[str] = None) -> dict:
        """The single-model studies of each training seed k >= 1 of ``zoo_name`` the zoo holds; seed k's pruning study
        compared with seed k of ``single_head`` where the zoo holds that too (``multihead_beats_single`` on seed k)."""
        paired = _seed_sets([zoo_name, single_head]) if single_head else {}
        return {str(k): st.single_model_studies(get(v), n_prompts=seed_prompts, seed=seeds["study"], name=v, risk_seed=seeds["risk"],
                                                tuning_seed=seeds["gd_tuning"],
                                                single_head=get(paired[str(k)][single_head]) if str(k) in paired else None)
                for k, v in zoo_seeds(zoo_name).items() if k}

    if zoo_seeds(name).keys() - {0}:  # the model's own training seeds: its claims decided on every one
        r["seeds"] = section("seeds", lambda: seed_studies(name, sib.single_head))
    pairs = {}
    for full, one in sib.noise_sweep:
        pairs[float(get(full).task.noise_std)] = (get(full), get(one) if one else None)
    if len(pairs) > 1:
        def noise_levels() -> dict:
            known = {float(task.noise_std): r["pruning"]}  # the same model, prompts and seed: not run again
            got = {"pruning_noise": st.noise_pruning_study(pairs, n_prompts=n_prompts, seed=seeds["study"], quick=quick, known=known, out=out),
                   "quality_bar_noise": {}}  # each other level's pair against its own task's tuned baselines
            for k, names in _seed_sets([m for pair in sib.noise_sweep for m in pair if m]).items():  # seed k of every model of the sweep
                twins = {float(get(names[full]).task.noise_std): (get(names[full]), get(names[one]) if one else None)
                         for full, one in sib.noise_sweep}
                # the anchor's seed-k level is its seed study's pruning (the same prompts) where that compared the same single head
                own = r["seeds"][k]["pruning"] if dict(sib.noise_sweep).get(name, "") == sib.single_head else None
                got["pruning_noise"].setdefault("seeds", {})[k] = st.noise_pruning_study(
                    twins, n_prompts=seed_prompts, seed=seeds["study"], quick=quick, known=None if own is None else {float(task.noise_std): own})
            for full, one in sib.noise_sweep:
                if full != name:
                    level = {m: get(m) for m in (full, one) if m}
                    risk = st.risk_study(level, get(full).task, n, n_prompts=n_prompts, seed=seeds["risk"], tuning_seed=seeds["tuning"],
                                         quick=quick)
                    got["quality_bar_noise"].update({m: cl.quality_bar(risk, m, task.d) for m in level})
            return got

        r.update(section("noise_sweep", noise_levels))
    r["preprocessing"] = section("preprocessing", lambda: st.preprocessing_study(model, study_data(), out=out))
    r["gd"] = section("gd", lambda: st.gd_study(model, study_data(), tuning_seed=seeds["gd_tuning"], out=out))
    if sib.concat_twin:  # the same questions where one token holds x_i and y_i together
        def concat() -> dict:
            twin = get(sib.concat_twin)
            tdata = prepare(twin, sample_for(twin, n_prompts, seed=seeds["study"]))
            curve = evaluate(twin, twin.task, n_points=twin.cfg.max_points, n_prompts=r["risk"]["n_prompts"], seed=seeds["risk"])  # the risk prompts
            return {"model": sib.concat_twin, "error": curve.error.tolist(),
                    "preprocessing": st.preprocessing_study(twin, tdata), "gd": st.gd_study(twin, tdata, tuning_seed=seeds["gd_tuning"])}

        r["concat"] = section("concat", concat)
        twin_task = get(sib.concat_twin).task
        if twin_task.to_dict() == task.to_dict() and len(r["concat"]["error"]) == len(r["risk"]["curves"][name]["error"]):  # same prompts
            with_twin = {"curves": {**r["risk"]["curves"], sib.concat_twin: {"error": r["concat"]["error"]}}}
            r["quality_bar_siblings"][sib.concat_twin] = cl.quality_bar(with_twin, sib.concat_twin, task.d)
    if sib.linear_twin:  # the same task in the seed's theory class (bidirectional linear attention): every single-model claim
        def linear() -> dict:
            lin = st.single_model_studies(get(sib.linear_twin), n_prompts=n_prompts, seed=seeds["study"], name=sib.linear_twin,
                                          risk_seed=seeds["risk"], tuning_seed=seeds["gd_tuning"])
            if lin_seeds := seed_studies(sib.linear_twin):
                lin["seeds"] = lin_seeds
            return lin

        r["linear"] = section("linear", linear)
    if sib.second_seed:
        def multihead() -> dict:
            softmax = {v: get(v) for v in sib.second_seed}
            mh = st.multihead_study(softmax, next(iter(softmax.values())).task, seed=seeds["second_seed"], quick=quick, out=out)
            mh["seeds"] = {}  # the same study on each training seed k that every one of these models has
            for k, names in _seed_sets(sib.second_seed).items():
                twins = {v: get(v) for v in names.values()}
                mh["seeds"][k] = st.multihead_study(twins, next(iter(twins.values())).task, n_prompts=SEED_PROMPTS,
                                                    seed=seeds["second_seed"], quick=quick)
            return mh

        r["multihead"] = section("multihead", multihead)
    dyn = _stored_dynamics(name, out)
    if dyn is not None:
        r["dynamics"] = dyn
    if sib.second_seed_settings:  # the seed's other settings (our definitions: README)
        def settings() -> dict:
            got = st.settings_study({s: {v: get(v) for v in names} for s, names in sib.second_seed_settings},
                                    seed=seeds["second_seed"], prior_seed=seeds["prior"], quick=quick, out=out)
            by_seed: dict[str, dict] = {}  # training seed k -> each setting all of whose models have seed k, with those
            for setting, names in sib.second_seed_settings:
                for k, twins in _seed_sets(names).items():
                    by_seed.setdefault(k, {})[setting] = {v: get(v) for v in twins.values()}
            for k in sorted(by_seed, key=int):
                got.setdefault("seeds", {})[k] = st.settings_study(
                    by_seed[k], n_prompts=SEED_PROMPTS, prior_prompts=SEED_PRIOR_PROMPTS, seed=seeds["second_seed"], prior_seed=seeds["prior"],
                    quick=quick)
            return got

        r["seed2_settings"] = section("seed2_settings", settings)
    have = {"head_counts": len(variants) > 1, "single_head": single is not None, "noise_sweep": len(pairs) > 1,
            "concat_twin": bool(sib.concat_twin), "linear_twin": bool(sib.linear_twin), "second_seed": bool(sib.second_seed),
            "second_seed_settings": bool(sib.second_seed_settings)}
    r["skipped"] = {k: f"`{name}` has {_SKIP_NOTES[k]}" for k, ok in have.items() if not ok}
    if r["skipped"] and name != IN_MEMORY and name not in zoo_names():  # a model outside the index: how to give it relatives
        r["skipped"]["how_to_add"] = (f"`{name}` is not in the zoo's index: declare its relatives in a JSON file (index.json's "
                                      "roles, each a saved folder or a zoo name) and pass it with `icl-interp report --model "
                                      f"{name} --siblings FILE` (docs/science/index.md, 'Siblings of your own model')")
    if sib.other_recipe:  # declared, present, but not comparable: say which, and how to make them so
        r["skipped"]["other_recipe"] = (
            f"declared siblings trained with another recipe than `{name}` are left out of the comparisons: "
            + ", ".join(f"`{n}`" for n in sib.other_recipe) + " (retrain each with `icl-interp train --preset NAME`)")
    if sib.missing:  # declared, not in the zoo in use
        r["skipped"]["not_in_zoo"] = (
            f"declared siblings of `{name}` not in the zoo (not trained yet): " + ", ".join(f"`{n}`" for n in sib.missing)
            + " (train each with `icl-interp train --preset NAME --out runs/NAME`, then copy `runs/NAME/model` to the zoo)")
    return r


def single_model_studies(model: Any, *, n_prompts: int = 2000, seed: int = 7, name: Optional[str] = None) -> dict:
    """:func:`icl_interp.analysis.studies.single_model_studies` of a zoo name, a saved folder or an in-memory model."""
    label, net, _ = _resolve(model)
    return st.single_model_studies(net, n_prompts=n_prompts, seed=seed, name=label if name is None else name)


def write_report(out: Union[str, Path], *, model: Any = "default", quick: bool = False, prompt_seed: int = 0,
                 siblings: Any = None, exact: bool = False, budget_s: float = BUDGET_S, progress: bool = False,
                 reuse: bool = True, device: Any = None) -> dict:
    """Run every analysis on ``model`` and write ``out/report.md`` (with its figures) and ``out/report.json``.

    ``model``: a zoo name (its siblings in the zoo index join the comparisons), a
    saved model folder or an ``ICLTransformer`` in memory (no siblings: those
    comparisons are skipped with a note). ``quick``: 256 prompts instead of 2,000.
    ``prompt_seed``: every study's prompts are drawn from it (:func:`prompt_seeds`; 0: the
    shipped report's prompts). ``siblings``: for a model outside the zoo's index (a saved folder, an imported model), a
    JSON file or dict declaring its relatives (:func:`icl_interp.zoo.siblings_from`). Returns the results; ``results["claims"]`` lists each claim
    with its stable ``id``, verdict, value and 5-95% interval.

    ``budget_s``: the seconds the model's own studies may take; a model whose exact studies would take longer gets
    gradient-estimated head importance on fewer prompts, or with ``exact`` the exact sweeps on fewer prompts
    (:func:`icl_interp.analysis.report_plan.choose_plan`; ``results["plan"]`` and ``results["methods"]`` say what ran). ``progress``:
    a bar per study on stderr, with the estimated time left. ``reuse``: each finished study is kept in
    ``out/.sections`` as soon as it is done and a rerun with the same model weights, prompt seeds, ``quick``, plan and
    code loads it instead of computing it (False: compute everything; the siblings are keyed by name only).

    ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ...; default None: the CPU, or where an in-memory model is): where the
    models run. Every model is loaded there; prompts are drawn on the CPU and moved to it, so every device sees the same
    prompts (the numbers agree to float rounding).
    """
    if not isinstance(out, (str, Path)):
        raise TypeError(f"out must be a folder path (str or Path), got {type(out).__name__}")
    for flag, value in (("quick", quick), ("exact", exact), ("progress", progress), ("reuse", reuse)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be a bool, got {type(value).__name__}")
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not budget_s > 0 or budget_s != budget_s:
        raise ValueError(f"budget_s must be a number of seconds > 0, got {budget_s!r}")
    seeds = prompt_seeds(prompt_seed)
    t0 = time.perf_counter()
    name, net, sib = _resolve(model, siblings, None if device is None else resolve_device(device, "device"))
    out = writable_folder(out, "out")  # before minutes of analyses
    n_prompts = 256 if quick else 2000
    where = model_device(net).type
    base = {"model": name, "weights": weights_digest(net), "code": code_digest(), "siblings": repr(sib), "quick": quick,
            "prompt_seeds": seeds, **({} if where == "cpu" else {"device": where})}
    plans = SectionStore(out, {**base, "exact": exact, "budget_s": float(budget_s)}, enabled=reuse)
    stored = plans.load("plan")  # a rerun keeps its plan: timing noise must not change the prompts and so every section
    plan = ReportPlan(**{k: v for k, v in stored.items() if k != "interval_factor"}) if stored else \
        choose_plan(net, n_prompts, budget_s=float(budget_s), exact=exact, baselines_s=baseline_seconds(net, quick))
    if not stored:
        plans.save("plan", plan.to_dict())
    if progress:
        print(f"report on {name}: {plan.reason}", file=sys.stderr)
    store = SectionStore(out, {**base, "plan": {"method": plan.method, "n_prompts": plan.n_prompts}}, enabled=reuse)
    results = _collect(name, net, sib, quick, out, seeds, plan=plan, store=store, progress=progress)  # writes the figures
    results["plan"] = plan.to_dict()
    results["methods"] = _methods(results, plan)
    results["claims"] = [c.to_dict() for c in cl.decide(results)]
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["reused_sections"] = list(store.reused)  # studies loaded from an earlier run into out (their time not in seconds)
    text = markdown(results, net)  # rendered before any file is replaced
    # after the figures, each file replaced as one unit: a failed write leaves the previous report whole
    _save(results, out)
    atomic_write_bytes(out / "report.md", text.encode())
    return results


def _methods(results: dict, plan: ReportPlan) -> dict:
    """Which method each of the model's studies used, on how many prompts (report.json's ``methods``)."""
    n = plan.n_prompts
    importance = (f"exact single-head ablation, every head, {n} prompts" if plan.method == "exact" else
                  f"first-order estimate from the per-prompt mask gradients (attribution patching of the ablation), {n} prompts; "
                  f"exact ablation on {len(next(iter(results['importance']['by_ablation'].values()))['agreement']['heads'])} "
                  "sampled heads per ablation kind for the agreement")
    got = {"risk": f"exact forward, {results['risk']['n_prompts']} prompts", "importance": importance,
           "attention": f"exact (the clean run's patterns), {n} prompts",
           "pruning": f"exact masking of the heads the importance above keeps, {n} prompts",
           "preprocessing": f"exact (closed-form ridge probes on the clean run), {n} prompts",
           "gd": f"exact (probes and iterates on the clean run), {n} prompts"}
    return {k: v for k, v in got.items() if k in results}


# -- report.json and its per-prompt numbers ------------------------------------------------------------

#: the keys whose values are per-prompt numbers or bootstrap draws: what the claims' intervals are computed from. They
#: would make report.json megabytes, so they go to a gzipped file beside it (:func:`load_report` puts them back)
PER_PROMPT_KEYS = frozenset({"per_prompt", "per_prompt_last", "per_prompt_c_multi", "per_prompt_c_single", "best_per_prompt",
                             "theta0_distance_draws", "distance_draws"})


def _split(obj: Any) -> tuple[Any, Any]:
    """(``obj`` without :data:`PER_PROMPT_KEYS`, what was taken out at the same paths; list items as ``"#i"``)."""
    if isinstance(obj, dict):
        slim, heavy = {}, {}
        for k, v in obj.items():
            if k in PER_PROMPT_KEYS:
                heavy[k] = v
            else:
                slim[k], h = _split(v)
                if h is not None:
                    heavy[k] = h
        return slim, heavy or None
    if isinstance(obj, list):
        parts = [_split(v) for v in obj]
        heavy = {f"#{i}": h for i, (_, h) in enumerate(parts) if h is not None}
        return [p[0] for p in parts], heavy or None
    return obj, None


def _merge(slim: Any, heavy: Any) -> Any:
    """The inverse of :func:`_split`."""
    if heavy is None:
        return slim
    if isinstance(slim, list):
        return [_merge(v, heavy.get(f"#{i}")) for i, v in enumerate(slim)]
    return {**{k: _merge(v, heavy.get(k)) for k, v in slim.items()}, **{k: v for k, v in heavy.items() if k not in slim}}


def _save(results: dict, out: Path) -> None:
    """``report.json`` without the per-prompt numbers, which go to ``per_prompt-<hash>.json.gz`` (named in report.json as
    ``per_prompt_file``). The gz file is written first under a name of its content, then report.json is replaced, then
    older gz files go: a kill at any point leaves a report.json whose per-prompt file is there."""
    slim, heavy = _split(results)
    data = gzip.compress(json.dumps(heavy).encode(), mtime=0)
    name = f"per_prompt-{hashlib.sha256(data).hexdigest()[:12]}.json.gz"
    atomic_write_bytes(out / name, data)
    atomic_write_bytes(out / "report.json", json.dumps({**slim, "per_prompt_file": name}, indent=1).encode())
    for old in out.glob("per_prompt-*.json.gz"):
        if old.name != name:
            old.unlink()


def load_report(folder: Union[str, Path]) -> dict:
    """A written report's results with their per-prompt numbers put back: ``claims.decide(load_report(folder))`` gives
    ``report.json``'s claims again."""
    folder = Path(folder)
    if not (folder / "report.json").is_file():
        raise ValueError(f"folder must hold a report.json (icl-interp report --out FOLDER), got {str(folder)!r}")
    slim = json.loads((folder / "report.json").read_text())
    name = slim.pop("per_prompt_file", None)
    if name is None:
        return slim
    return _merge(slim, json.loads(gzip.decompress((folder / name).read_bytes())))
