"""The first seed's head and comparison claims (Chen, Zhao, Zou 2024): which heads each layer uses, pruning, the noise
sweep, head counts (layer 0 as preprocessing and later layers as GD steps: :mod:`.mechanism`)."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ._core import (
    ABOVE,
    BELOW,
    CLEAR_ERROR_RATIO,
    CONCAT_PREFIX,
    HEAD_COUNT_GAIN,
    HEAD_COUNT_SLACK,
    HEAD_ESSENTIAL_RISE,
    LINEAR_PREFIX,
    TOP_HEAD_MAJORITY,
    Claim,
    Test,
    across_ablations,
    across_seeds,
    bootstrap,
    check_result,
    decided,
    interval_text,
    tests_from,
)

# -- heads: importance and pruning ------------------------------------------------------------
#
# Each head claim is decided from the studies' per-prompt errors (clean, context-free, each masked head, the pruned
# model) under each ablation kind the study ran (``by_ablation``), one paired bootstrap per kind; a study result without
# per-prompt numbers (an older one, or a hand-made one) is decided on its point values.

_NO_SKILL = "the model's error {clean:.3f} is not clearly below the context-free error {free:.3f} (predicting x . E[w]): it solves nothing in context"


def _twin(twin: Optional[str], kind: str = "concat") -> tuple[str, str]:
    """(id prefix, text prefix) for a claim on the anchor's twin ``twin`` (or none) of ``kind`` "concat" or "linear"."""
    if not twin:
        return "", ""
    texts = {"concat": (CONCAT_PREFIX, "With concatenated [x; y] tokens"), "linear": (LINEAR_PREFIX, "In the trained linear-attention model")}
    if kind not in texts:
        raise ValueError(f"kind must be 'concat' or 'linear', got {kind!r}")
    return texts[kind][0], f"{texts[kind][1]} (`{twin}`): "


def _skill_gate(free_over_clean: Test, clean: float, free: float) -> tuple[Test, str]:
    """The head claims' precondition: the context-free error clearly above the model's (CLEAR_ERROR_RATIO)."""
    return free_over_clean, _NO_SKILL.format(clean=clean, free=free)


def _kinds(result: dict) -> dict[str, Optional[dict]]:
    """The ablation kinds a heads study ran, each with its per-prompt numbers (``{"zero": None}``: point values only)."""
    by = result.get("by_ablation")
    return {k: v for k, v in by.items() if "per_prompt" in v} if by and "per_prompt" in result else {"zero": None}


def _breaks(err: float, free: float) -> str:
    return f"removing it breaks the model (error {err / free:.1f} x the context-free error)"


def layer0_all_heads(importance: dict, twin: Optional[str] = None, kind: str = "concat") -> Claim:
    """Layer 0 uses all its heads: every layer-0 head's share of the skill (context-free error minus the clean error)
    above HEAD_ESSENTIAL_RISE. Decided on the least share (its interval jointly over the heads), each head a part; a head
    whose removal raises the error past the context-free error is reported as breaking the model, not as a share."""
    p = check_result("importance", importance, ("layer0_relative_increase", "clean_error", "context_free_error"))
    ident, prefix = _twin(twin, kind)
    text = prefix + "Layer 0 uses all its heads: masking any single layer-0 head raises the error."
    claims = {}
    for abl, by in _kinds(p).items():
        if by is None:  # point values: the relative increases over the clean error
            clean, free = p["clean_error"], p["context_free_error"]
            rel = list(p["layer0_relative_increase"])
            masked = [clean * (1 + r) for r in rel]
            shares = [r * clean / (free - clean) if free > clean else float("nan") for r in rel]
            tests = [Test(min(shares), None, HEAD_ESSENTIAL_RISE, ABOVE)] + [Test(v, None, HEAD_ESSENTIAL_RISE, ABOVE) for v in shares]
            gate, n_prompts = Test(free / clean, None, CLEAR_ERROR_RATIO, ABOVE), None
        else:
            heads = len(p["layer0_relative_increase"])
            cols = {"clean": p["per_prompt"]["clean"], "free": p["per_prompt"]["context_free"], "masked": by["per_prompt"][:heads]}
            means = {k: torch.as_tensor(v, dtype=torch.float64).mean(-1) for k, v in cols.items()}
            clean, free, masked = float(means["clean"]), float(means["free"]), means["masked"].tolist()
            rel = [m / clean - 1 for m in masked]

            def stat(m: dict) -> torch.Tensor:
                share = (m["masked"] - m["clean"][..., None]) / (m["free"] - m["clean"])[..., None]
                return torch.cat([(m["free"] / m["clean"])[..., None], share.min(-1, keepdim=True).values, share], -1)

            value, interval = bootstrap(cols, stat)
            gate, *tests = tests_from(value[:1], interval[:, :1], CLEAR_ERROR_RATIO, ABOVE) + tests_from(value[1:], interval[:, 1:], HEAD_ESSENTIAL_RISE, ABOVE)
            n_prompts = len(cols["clean"])
        words = [_breaks(m, free) if m > free else interval_text(t, ".1%") for m, t in zip(masked, tests[1:])]
        claims[abl] = decided(
            ident + "layer0_all_heads", text, tests[0],
            {"skill_share": [t.value for t in tests[1:]], "relative_increase": rel, "skill": free - clean,
             "breaks_model": {str(h): m / free for h, m in enumerate(masked) if m > free}},
            f"share of the skill (context-free error {free:.3f} - error {clean:.3f}) lost by masking each layer-0 head: "
            + ", ".join(f"head {h}: {w}" for h, w in enumerate(words)),
            n_prompts=n_prompts, parts={f"head {h}": t for h, t in enumerate(tests[1:])}, gates=[_skill_gate(gate, clean, free)])
    return across_ablations(claims)


def later_single_head(importance: dict, twin: Optional[str] = None, kind: str = "concat") -> Optional[Claim]:
    """Later layers mostly use one head: the top head's share of each later layer's positive ablation importance at least
    TOP_HEAD_MAJORITY. Decided on the least share over the later layers, each layer a part (None: one layer)."""
    p = check_result("importance", importance, ("later_layers_top_head_share", "clean_error", "context_free_error"))
    ident, prefix = _twin(twin, kind)
    if not p["later_layers_top_head_share"]:
        return None
    text = prefix + "Later layers mostly use a single head (the top head holds most of the layer's importance)."
    claims = {}
    for abl, by in _kinds(p).items():
        if by is None:
            shares, clean, free = p["later_layers_top_head_share"], p["clean_error"], p["context_free_error"]
            tests = [Test(min(shares), None, TOP_HEAD_MAJORITY, ABOVE)] + [Test(v, None, TOP_HEAD_MAJORITY, ABOVE) for v in shares]
            gate, n_prompts = Test(free / clean, None, CLEAR_ERROR_RATIO, ABOVE), None
        else:
            layers, heads = len(by["ablation"]), len(by["ablation"][0])
            cols = {"clean": p["per_prompt"]["clean"], "free": p["per_prompt"]["context_free"], "masked": by["per_prompt"][heads:]}

            def stat(m: dict, layers: int = layers, heads: int = heads) -> torch.Tensor:
                imp = (m["masked"] - m["clean"][..., None]).unflatten(-1, (layers - 1, heads)).clamp(min=0)
                share = imp.max(-1).values / imp.sum(-1).clamp(min=1e-12)
                return torch.cat([(m["free"] / m["clean"])[..., None], share.min(-1, keepdim=True).values, share], -1)

            value, interval = bootstrap(cols, stat)
            gate, *tests = tests_from(value[:1], interval[:, :1], CLEAR_ERROR_RATIO, ABOVE) + tests_from(value[1:], interval[:, 1:], TOP_HEAD_MAJORITY, ABOVE)
            clean, free, n_prompts = sum(cols["clean"]) / len(cols["clean"]), sum(cols["free"]) / len(cols["free"]), len(cols["clean"])
        claims[abl] = decided(
            ident + "later_single_head", text, tests[0], {"top_head_share": [t.value for t in tests[1:]]},
            "top-head share of positive ablation importance, layers 1..: " + ", ".join(interval_text(t, ".2f") for t in tests[1:]),
            n_prompts=n_prompts, parts={f"layer {i + 1}": t for i, t in enumerate(tests[1:])}, gates=[_skill_gate(gate, clean, free)])
    return across_ablations(claims)


def _ratio_tests(num: list, den: list, free: list, threshold: float, direction: str) -> tuple[Test, Test]:
    """(mean(num) / mean(den) against ``threshold``, the skill gate mean(free) / mean(den)): one paired bootstrap."""
    value, interval = bootstrap({"num": num, "den": den, "free": free},
                                lambda m: torch.stack([m["num"] / m["den"], m["free"] / m["den"]], -1))
    return tests_from(value[:1], interval[:, :1], threshold, direction)[0], tests_from(value[1:], interval[:, 1:], CLEAR_ERROR_RATIO, ABOVE)[0]


def pruning_preserves(pruning: dict, twin: Optional[str] = None, kind: str = "concat") -> Claim:
    """Pruning to all of layer 0 plus each later layer's top head keeps the error: pruned / full error at most
    CLEAR_ERROR_RATIO, under each ablation kind (the pruned heads removed by it, kept by its importance)."""
    p = check_result("pruning", pruning, ("pruned_over_full", "error_pruned", "error_full", "error_context_free"))
    ident, prefix = _twin(twin, kind)
    text = prefix + "Pruning to all heads of layer 0 plus the top head of each later layer preserves performance."
    claims = {}
    for abl, by in _kinds(p).items():
        full, free = p["error_full"], p["error_context_free"]
        if by is None:
            pruned, n_prompts = p["error_pruned"], None
            test, gate = Test(pruned / full, None, CLEAR_ERROR_RATIO, BELOW), Test(free / full, None, CLEAR_ERROR_RATIO, ABOVE)
        else:
            pp = p["per_prompt"]
            test, gate = _ratio_tests(by["per_prompt"], pp["full"], pp["context_free"], CLEAR_ERROR_RATIO, BELOW)
            pruned, n_prompts = test.value * full, len(pp["full"])
        broken = f"; {_breaks(pruned, free).replace('removing it', 'pruning')}" if pruned > free else ""
        claims[abl] = decided(ident + "pruning_preserves", text, test, {"pruned_over_full": test.value},
                              f"pruned / full error = {interval_text(test)} ({pruned:.3f} vs {full:.3f}){broken}",
                              n_prompts=n_prompts, gates=[_skill_gate(gate, full, free)])
    return across_ablations(claims)


def multihead_beats_single(pruning: dict) -> Claim:
    """A trained single-head model of the same size is worse than the multi-head one (all positions): single / full error
    above CLEAR_ERROR_RATIO, paired on the study's prompts."""
    p = check_result("pruning", pruning, ("error_single_head", "error_full", "error_pruned"))
    single, full = p["error_single_head"], p["error_full"]
    pp = p.get("per_prompt", {})
    if "single_head" in pp:
        test = _ratio_tests(pp["single_head"], pp["full"], pp["full"], CLEAR_ERROR_RATIO, ABOVE)[0]
    else:
        test = Test(single / full, None, CLEAR_ERROR_RATIO, ABOVE)
    return decided("multihead_beats_single", "Multi-head beats a trained single-head model of the same size (the seed's Fig 1b / Fig 5 comparison).",
                   test, {"single_over_full": test.value},
                   f"error single-head / all heads = {interval_text(test)} ({single:.3f} vs {full:.3f}); pruned: {p['error_pruned']:.3f}",
                   n_prompts=len(pp["full"]) if "single_head" in pp else None)


def _level_tests(levels: dict, num: Callable[[dict], Optional[list]], point: str, threshold: float, direction: str) -> tuple[Test, dict[str, Test], Optional[int]]:
    """(the worst level's test, each level's test, prompts per level) of a per-level ratio over the full model's error.

    ``num(level)``: the level's per-prompt numerator (None: decided on ``level[point]`` alone). The levels' prompt sets are
    independent and of one size, so one resample of indices serves them all; the worst is the max (``below``) or min."""
    worst = max if direction == BELOW else min
    nums = {k: num(v) for k, v in levels.items()}
    if all(n is not None for n in nums.values()) and len({len(n) for n in nums.values()}) == 1:
        cols = {f"num:{k}": n for k, n in nums.items()} | {f"den:{k}": levels[k]["per_prompt"]["full"] for k in nums}
        keys = list(nums)

        def stat(m: dict) -> torch.Tensor:
            r = torch.stack([m[f"num:{k}"] / m[f"den:{k}"] for k in keys], -1)
            w = r.max(-1, keepdim=True).values if direction == BELOW else r.min(-1, keepdim=True).values
            return torch.cat([w, r], -1)

        value, interval = bootstrap(cols, stat)
        main, *tests = tests_from(value, interval, threshold, direction)
        return main, dict(zip(keys, tests)), len(next(iter(nums.values())))
    tests = {k: Test(v[point], None, threshold, direction) for k, v in levels.items()}
    return Test(worst(t.value for t in tests.values()), None, threshold, direction), tests, None


def noise_pruning(sweep: dict) -> Claim:
    """Across noise levels the pruned model stays close to the full one: the worst pruned / full ratio decides, each
    level a part, under each ablation kind the sweep ran."""
    levels = check_result("sweep", sweep, ("levels",))["levels"]
    kinds = set.intersection(*(set((v.get("by_ablation") or {}) if "per_prompt" in v else {}) for v in levels.values())) or {"zero"}
    claims = {}
    for abl in [k for k in ("zero", "mean", "resample") if k in kinds] + sorted(kinds - {"zero", "mean", "resample"}):
        def pruned(v: dict, abl: str = abl) -> Optional[list]:
            return (v.get("by_ablation") or {}).get(abl, {}).get("per_prompt") if "per_prompt" in v else None

        main, tests, n_prompts = _level_tests(levels, pruned, "pruned_over_full", CLEAR_ERROR_RATIO, BELOW)
        claims[abl] = decided("noise_pruning", "Across noise levels (Fig 5) the pruned model stays close to the full model.", main,
                              {"pruned_over_full": {k: t.value for k, t in tests.items()}, "worst": main.value},
                              "pruned / full error by noise std: " + ", ".join(f"{k}: {interval_text(t, '.2f')}" for k, t in tests.items()),
                              n_prompts=n_prompts, parts={f"noise {k}": t for k, t in tests.items()})
    return across_ablations(claims)


def noise_single_head(sweep: dict) -> Optional[Claim]:
    """Across noise levels the single-head model is worse (single / full above CLEAR_ERROR_RATIO at every level with a
    single-head model, each level a part); None when no level has one."""
    levels = check_result("sweep", sweep, ("levels",))["levels"]
    with_single = {k: v for k, v in levels.items() if "single_over_full" in v}
    if not with_single:
        return None
    main, tests, n_prompts = _level_tests(with_single, lambda v: v.get("per_prompt", {}).get("single_head"), "single_over_full",
                                          CLEAR_ERROR_RATIO, ABOVE)
    return decided("noise_single_head", "Across noise levels (Fig 5) the trained single-head model is worse than the multi-head model.",
                   main, {"single_over_full": {k: t.value for k, t in tests.items()}},
                   "single-head / all-heads error by noise std: " + ", ".join(f"{k}: {interval_text(t, '.2f')}" for k, t in tests.items()),
                   n_prompts=n_prompts, parts={f"noise {k}": t for k, t in tests.items()})


def head_count_order(head_counts: dict, seeds: Optional[dict] = None) -> Claim:
    """More heads, lower error: ``head_counts`` maps a head count to ``{"last": error at the largest n, "mean": ...}``
    (and ``per_prompt_last``, the per-prompt errors at the largest n on the shared prompts). Two parts: the most heads
    at most HEAD_COUNT_GAIN x one head's error, and no head count more than HEAD_COUNT_SLACK x the next smaller's.

    ``seeds``: ``{k: head_counts of training seed k}``. Where every seed has every head count, the claim is decided on
    every seed (:func:`across_seeds`). Where the seeds have only some (e.g. 1 and 4 heads), the claim stays on seed 0's
    every head count, and the same claim on the head counts the seeds share, seed 0 included, decided across the seeds,
    joins as a third part."""
    if not isinstance(head_counts, dict) or len(head_counts) < 2:
        raise ValueError(f"head_counts must map at least two head counts to errors, got {head_counts!r}")
    if not seeds:
        return _head_count_order(head_counts)
    counts = {str(h) for h in head_counts}
    shared = set.intersection(*({str(h) for h in s} for s in seeds.values())) & counts
    if shared == counts:
        return across_seeds({"0": _head_count_order(head_counts), **{str(k): _head_count_order(h) for k, h in seeds.items()}})
    if len(shared) < 2:
        return _head_count_order(head_counts)

    def pick(hc: dict) -> dict:
        return {h: v for h, v in hc.items() if str(h) in shared}

    sub = across_seeds({"0": _head_count_order(pick(head_counts)), **{str(k): _head_count_order(pick(h)) for k, h in seeds.items()}})
    claim = _head_count_order(head_counts, on_seeds=sub)
    claim.seeds, claim.per_seed = sub.seeds, sub.per_seed  # the seeds that decided it (their part's values)
    return claim


def _head_count_order(head_counts: dict, on_seeds: Optional[Claim] = None) -> Claim:
    """The claim on ``head_counts``; ``on_seeds``: the same claim on fewer head counts decided across training seeds,
    joining as a third part."""
    heads = {int(h): v for h, v in head_counts.items()}
    hs = sorted(heads)
    errs = [heads[h]["last"] for h in hs]
    if all("per_prompt_last" in heads[h] for h in hs):
        def stat(m: dict) -> torch.Tensor:
            e = torch.stack([m[str(h)] for h in hs], -1)
            return torch.stack([e[..., -1] / e[..., 0], (e[..., 1:] / e[..., :-1]).max(-1).values], -1)

        cols = {str(h): heads[h]["per_prompt_last"] for h in hs}
        value, interval = bootstrap(cols, stat)
        gain = tests_from(value[:1], interval[:, :1], HEAD_COUNT_GAIN, BELOW)[0]
        order = tests_from(value[1:], interval[:, 1:], HEAD_COUNT_SLACK, BELOW)[0]
        n_prompts = len(cols[str(hs[0])])
    else:
        gain = Test(errs[-1] / errs[0], None, HEAD_COUNT_GAIN, BELOW)
        order = Test(max(b / a for a, b in zip(errs, errs[1:])), None, HEAD_COUNT_SLACK, BELOW)
        n_prompts = None
    parts, text = {"most heads below one head": gain, "ordered by head count": order}, ""
    if on_seeds is not None:
        shared = sorted(int(h) for h in on_seeds.values["error_last_by_heads"])
        name = f"h={' vs h='.join(map(str, shared))} on {on_seeds.seeds} training seeds"
        parts[name] = Test(on_seeds.value, on_seeds.interval, on_seeds.threshold, on_seeds.direction)
        each = ", ".join(f"seed {k}: {v['verdict']} ({v['value']:.3f})" for k, v in on_seeds.per_seed.items())
        text = f"; {name}: {parts[name].verdict}, most / fewest heads {interval_text(parts[name])} ({each})"
    return decided("head_count_order", "More heads, lower error at the same size (Fig 1b).", gain,
                   {"error_last_by_heads": {str(h): e for h, e in zip(hs, errs)}, "most_over_fewest": gain.value,
                    "worst_step_up": order.value},
                   "error at the largest n by head count: " + ", ".join(f"h={h}: {e:.3f}" for h, e in zip(hs, errs))
                   + f"; most / fewest heads {interval_text(gain)}; largest rise to the next head count {interval_text(order)}"
                   + "; mean over n = 1..: " + ", ".join(f"h={h}: {heads[h]['mean']:.3f}" for h in hs) + text,
                   n_prompts=n_prompts, parts=parts)
