"""What every claim shares: the :class:`Claim`, the verdict words, the input check, and every threshold with its reason."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from ...tools.evaluation import paired_bootstrap

REPRODUCED, NOT_REPRODUCED, UNDECIDED, MIXED = "reproduced", "not reproduced", "undecided", "mixed"
#: "undecided": the statistic's interval straddles a threshold (another draw of prompts could go either way); "mixed":
#: the claim's parts (heads, layers, noise levels, sub-statements) disagree, each part decided by the same rule
VERDICTS = (REPRODUCED, NOT_REPRODUCED, UNDECIDED, MIXED)
#: which side of its threshold a statistic must lie on for the claim to hold
ABOVE, BELOW = "above", "below"

# -- the interval rule ------------------------------------------------------------------------
#: a statistic's interval: the 5% and 95% percentiles of a paired bootstrap over the prompts (one resample of prompt
#: indices for every per-prompt quantity that enters the statistic)
INTERVAL_QUANTILES = (0.05, 0.95)
#: bootstrap resamples per statistic (the percentiles move by well under 1% of the interval's width between seeds)
N_BOOT = 2000
#: the resampling seed: the same resampled prompt indices for every claim on the same prompts
BOOT_SEED = 0
#: the ablation kind of the head claims' headline verdicts and numbers: zero ablation, the kind the seed's pruning
#: (keeping heads, removing the rest outright) reads most literally as; mean and resample ablation are shown beside it
HEADLINE_ABLATION = "zero"

# -- thresholds ------------------------------------------------------------------------------
#: a layer-0 head is essential when masking it costs more than 5% of the model's skill (context-free error minus its error),
#: not merely above 0: a head can only take away what the model gained from the context; against the clean error (noise
#: floor and all the model cannot do) a weak model's indispensable head looks negligible
HEAD_ESSENTIAL_RISE = 0.05
#: "mostly one head": the top head holds at least half of its layer's positive ablation importance
TOP_HEAD_MAJORITY = 0.5
#: two errors within 10% of each other count as the same performance; a larger ratio is a clear difference. Also the
#: head claims' precondition: a model whose error is not clearly below the context-free error (predicting x . E[w], i.e.
#: 0) solves nothing in context, so which heads it "uses" or what pruning "preserves" is not defined (a random model)
CLEAR_ERROR_RATIO = 1.1
#: a head count may rise by 2% over the next smaller one and still count as "lower" (sampling noise at the largest n)
HEAD_COUNT_SLACK = 1.02
#: "more heads, lower error" needs the most heads at least 10% below one head at the largest n
HEAD_COUNT_GAIN = 0.9
#: the second seed's constants differ when c multi / c single is below 0.9 (a 10% margin over fitting noise)
SEED2_C_RATIO = 0.9
#: layer 0 must decode a preprocessed x_i by 0.05 R2 more than the input (and than a random model) to count
PREPROCESS_R2_GAIN = 0.05
#: the GD-step distance: the mean gap (RMS error relative to the spread) of the later layers to an algorithm's iterates
#: (studies.iterates). Below 0.2: held to within 20% of their spread (a probe's R2 > 0.96), "within about 20%" as for errors
GD_CLOSE = 0.2
#: the model must be at most half as far from the algorithm as a random model of the same config is
GD_CHANCE_FRACTION = 0.5
#: the quality bar of a trained default (issue 14): at the largest n, at most 0.85x the best ridge's error (clearly past
#: the ridge plateau, beyond the few-percent noise of a 2,000-prompt estimate) and at most 1.15x the best Lasso's (within
#: reach of the sparse estimator the seed says preprocess-then-optimize approaches)
QUALITY_BAR_RIDGE_RATIO = 0.85
QUALITY_BAR_LASSO_RATIO = 1.15
#: the risk study's labels of the two tuned baselines the bar divides by (studies.risk names its curves with them)
BEST_RIDGE, BEST_LASSO = "ridge (best alpha)", "Lasso (best alpha)"

CONCAT_PREFIX = "concat_"
LINEAR_PREFIX = "linear_"


def interval_verdict(interval: Sequence[float], threshold: float, direction: str) -> str:
    """The one verdict rule: "reproduced" when the interval ``[lo, hi]`` lies wholly on the ``direction`` side of
    ``threshold`` ("above": lo > threshold; "below": hi <= threshold), "not reproduced" when it lies wholly on the other
    side, "undecided" when it straddles it. A point value is the interval ``[v, v]``; NaN decides nothing (undecided)."""
    if direction not in (ABOVE, BELOW):
        raise ValueError(f"direction must be {ABOVE!r} or {BELOW!r}, got {direction!r}")
    if not isinstance(interval, (list, tuple)) or len(interval) != 2:
        raise ValueError(f"interval must be [lo, hi], got {interval!r}")
    lo, hi = (float(v) for v in interval)
    if math.isnan(lo) or math.isnan(hi) or math.isnan(float(threshold)):
        return UNDECIDED
    if lo > hi:
        raise ValueError(f"interval must have lo <= hi, got {interval!r}")
    if direction == ABOVE:
        return REPRODUCED if lo > threshold else NOT_REPRODUCED if hi <= threshold else UNDECIDED
    return REPRODUCED if hi <= threshold else NOT_REPRODUCED if lo > threshold else UNDECIDED


@dataclass
class Test:
    """One statistic against one threshold: its value, its 5-95% interval (None: no per-prompt values, decided on the
    value alone) and the side it must lie on."""

    value: float
    interval: Optional[list[float]]
    threshold: float
    direction: str

    @property
    def verdict(self) -> str:
        return interval_verdict(self.interval if self.interval is not None else [self.value, self.value], self.threshold, self.direction)

    def to_dict(self) -> dict:
        return {"value": self.value, "interval": self.interval, "threshold": self.threshold, "direction": self.direction,
                "verdict": self.verdict}


def all_of(tests: Sequence[Test]) -> str:
    """Every threshold of one statement: reproduced when every test clears, not reproduced when any lies wholly on the
    wrong side, else undecided."""
    verdicts = [t.verdict for t in tests]
    if NOT_REPRODUCED in verdicts:
        return NOT_REPRODUCED
    return REPRODUCED if all(v == REPRODUCED for v in verdicts) else UNDECIDED


def of_parts(verdicts: Mapping[str, str]) -> str:
    """A claim made of parts (every head, every later layer, every noise level ...): the parts' common verdict, "mixed"
    when some hold and some do not, else undecided."""
    vs = set(verdicts.values())
    if len(vs) == 1:
        return vs.pop()
    return MIXED if {REPRODUCED, NOT_REPRODUCED} <= vs else UNDECIDED


def interval_text(test: Test, spec: str = ".3f") -> str:
    """``1.081 [1.05, 1.11]``: a value with its interval (none: the value alone)."""
    if test.interval is None:
        return format(test.value, spec)
    return f"{format(test.value, spec)} [{format(test.interval[0], spec)}, {format(test.interval[1], spec)}]"


def bootstrap(columns: Mapping[str, Any], statistic: Callable[[dict], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(value, ``[2, ...]`` interval) of ``statistic`` over the per-prompt ``columns`` (name -> ``[prompts]`` or
    ``[parts, prompts]`` values on the same prompts), one paired bootstrap (:data:`N_BOOT`, :data:`BOOT_SEED`) for all.

    ``statistic`` gets the means by name (``[...]`` or ``[..., parts]``, vectorised over resamples) and returns the
    statistic ``[...]`` or ``[..., m]``. No model is run: the studies keep the per-prompt numbers.
    """
    blocks, names, lengths = [], [], set()
    for name, col in columns.items():
        t = torch.as_tensor(col, dtype=torch.float64)
        if t.ndim not in (1, 2):
            raise ValueError(f"columns[{name!r}] must be per-prompt values [prompts] or [parts, prompts], got shape {tuple(t.shape)}")
        t = t[None] if t.ndim == 1 else t
        lengths.add(t.shape[1])
        blocks.append(t)
        names.append((name, t.shape[0], torch.as_tensor(col).ndim == 1))
    if len(lengths) != 1:
        raise ValueError(f"columns must hold values on the same prompts, got lengths {sorted(lengths)}")
    table = torch.cat(blocks).T

    def stat(means: torch.Tensor) -> torch.Tensor:
        out, i = {}, 0
        for name, k, flat in names:
            out[name] = means[..., i] if flat else means[..., i:i + k]
            i += k
        return statistic(out)

    value, draws = paired_bootstrap(table, stat, N_BOOT, BOOT_SEED)
    return value, torch.quantile(draws, torch.tensor(INTERVAL_QUANTILES, dtype=draws.dtype), dim=0)


def percentiles(draws: Any) -> list[float]:
    """The [5%, 95%] interval (:data:`INTERVAL_QUANTILES`) of a statistic's bootstrap draws."""
    t = torch.as_tensor(draws, dtype=torch.float64)
    return torch.quantile(t, torch.tensor(INTERVAL_QUANTILES, dtype=t.dtype)).tolist()


def tests_from(value: torch.Tensor, interval: torch.Tensor, threshold: float, direction: str) -> list[Test]:
    """One :class:`Test` per entry of a bootstrapped statistic ``[m]`` (or a scalar: a list of one)."""
    v, lo, hi = value.reshape(-1).tolist(), interval[0].reshape(-1).tolist(), interval[1].reshape(-1).tolist()
    return [Test(a, [b, c], threshold, direction) for a, b, c in zip(v, lo, hi)]


@dataclass
class Claim:
    """One seed claim decided on study results.

    ``verdict`` follows the interval rule (:func:`interval_verdict`) on the deciding statistic: ``value``, its 5-95%
    ``interval`` over prompts, ``threshold`` and ``direction``; ``n_prompts`` the prompts it is measured on, ``seeds`` the
    training seeds that decided it. ``parts``: each part's test where the claim has parts; ``by_ablation``: a head
    claim's value, interval and verdict under each ablation kind (``ablation``: the headline's kind). ``values`` holds
    the other deciding numbers, ``number`` says them in words.
    """

    id: str
    text: str
    verdict: str
    values: dict[str, Any] = field(default_factory=dict)
    number: str = ""
    value: Any = None
    interval: Optional[list[float]] = None
    threshold: Any = None
    direction: Optional[str] = None
    n_prompts: Optional[int] = None
    seeds: int = 1
    parts: Optional[dict[str, dict]] = None
    conditions: Optional[list[dict]] = None
    ablation: Optional[str] = None
    by_ablation: Optional[dict[str, dict]] = None
    per_seed: Optional[dict[str, dict]] = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def __str__(self) -> str:
        return f"[{self.verdict}] {self.id}: {self.number}"

    def to_dict(self) -> dict:
        """JSON form: ``{"id", "claim" (the text), "verdict", "value", "interval", "threshold", "direction", "n_prompts",
        "seeds", "values", "number"}`` and, where set, ``"parts"``, ``"conditions"`` (the other thresholds), ``"ablation"``, ``"by_ablation"``, ``"per_seed"``."""
        d = {"id": self.id, "claim": self.text, "verdict": self.verdict, "value": self.value, "interval": self.interval,
             "threshold": self.threshold, "direction": self.direction, "n_prompts": self.n_prompts, "seeds": self.seeds}
        for key in ("parts", "conditions", "ablation", "by_ablation", "per_seed"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return {**d, "values": self.values, "number": self.number}


def decided(ident: str, text: str, main: Test, values: dict, number: str, *, n_prompts: Optional[int] = None,
            parts: Optional[dict[str, Test]] = None, gates: Sequence[tuple[Test, Optional[str]]] = ()) -> Claim:
    """The claim whose deciding statistic is ``main`` (for a claim with parts: the worst part, bootstrapped jointly).

    ``gates``: the claim's other thresholds, each with what its failure means (None: nothing more to say); every one
    must clear too (:func:`all_of`), and one wholly on the wrong side says why. With ``parts``, "mixed" where some
    parts hold and others do not (the text names them).
    """
    tests = [main, *(t for t, _ in gates), *(parts or {}).values()]
    verdict = all_of(tests)
    failed = [why for t, why in gates if why and t.verdict == NOT_REPRODUCED]
    if failed:
        number = f"{failed[0]}; {number}"
    elif parts and of_parts({k: p.verdict for k, p in parts.items()}) == MIXED:
        verdict = MIXED
        holds = [k for k, p in parts.items() if p.verdict == REPRODUCED]
        fails = [k for k, p in parts.items() if p.verdict == NOT_REPRODUCED]
        number += f" (holds for {', '.join(holds)}; not for {', '.join(fails)})"
    return Claim(ident, text, verdict, values, number, main.value, main.interval, main.threshold, main.direction, n_prompts,
                 parts={k: p.to_dict() for k, p in parts.items()} if parts else None,
                 conditions=[t.to_dict() for t, _ in gates] or None)


def across_ablations(claims: Mapping[str, Claim]) -> Claim:
    """A head claim decided under each ablation kind: the :data:`HEADLINE_ABLATION` kind's claim (else the first) with
    every kind's value, interval and verdict in ``by_ablation``; its text names each kind that changes the verdict."""
    if not claims:
        raise ValueError("claims must map at least one ablation kind to its claim")
    kind = HEADLINE_ABLATION if HEADLINE_ABLATION in claims else next(iter(claims))
    head = claims[kind]
    head.ablation = kind
    head.by_ablation = {k: {"value": c.value, "interval": c.interval, "verdict": c.verdict} for k, c in claims.items()}
    differ = {k: c for k, c in claims.items() if c.verdict != head.verdict}
    if differ:
        head.number += "; " + "; ".join(
            f"{k} ablation changes the verdict to {c.verdict} ({interval_text(Test(c.value, c.interval, 0.0, ABOVE))})"
            for k, c in differ.items())
    elif len(claims) > 1:
        head.number += f"; the same verdict under {', '.join(claims)} ablation"
    return head


#: one-sided 95% quantiles of Student's t by degrees of freedom (the across-seed interval of a mean over a few seeds)
_T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833, 10: 1.812}


def seed_interval(values: Sequence[float], half_widths: Optional[Sequence[float]] = None) -> list[float]:
    """The 5-95% interval of the mean of a statistic over training seeds: mean -+ t(0.95, k - 1) x its standard error.

    ``half_widths``: each seed's own 5-95% half-width over prompts (0 for a point value). The seeds' studies draw their
    prompts with the same seed, so the prompts' sampling error does not average out over seeds: its mean half-width is
    added in quadrature (seeds that agree closely do not decide what each leaves undecided)."""
    v = [float(x) for x in values]
    if len(v) < 2:
        raise ValueError(f"values must hold the statistic on at least two seeds, got {values!r}")
    if half_widths is not None and (len(half_widths) != len(v) or any(not h >= 0 for h in half_widths)):
        raise ValueError(f"half_widths must hold one half-width >= 0 per value ({len(v)}), got {half_widths!r}")
    mean = sum(v) / len(v)
    se = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1) / len(v))
    t = _T95.get(len(v) - 1, 1.645 + 1.6 / (len(v) - 1))
    prompts = sum(half_widths) / len(v) if half_widths is not None else 0.0
    half = math.sqrt((t * se) ** 2 + prompts ** 2)
    return [mean - half, mean + half]


def _seed_test(tests: Sequence[Mapping[str, Any]]) -> Test:
    """One statistic of a claim (``value``, ``interval``, ``threshold``, ``direction``) on each training seed, as one
    :class:`Test`: the seeds' mean with, where every seed's verdict is reproduced (or every one not reproduced), the hull of
    their intervals, which then lies on that side too; else the across-seed interval (:func:`seed_interval`)."""
    each = [Test(float(t["value"]), t["interval"], t["threshold"], t["direction"]) for t in tests]
    values = [t.value for t in each]
    verdicts = {t.verdict for t in each}
    if len(verdicts) == 1 and verdicts <= {REPRODUCED, NOT_REPRODUCED}:
        spans = [t.interval if t.interval is not None else [t.value, t.value] for t in each]
        interval = [min(a for a, _ in spans), max(b for _, b in spans)]
    else:
        interval = seed_interval(values, [0.0 if t.interval is None else (t.interval[1] - t.interval[0]) / 2 for t in each])
    return Test(sum(values) / len(values), interval, each[0].threshold, each[0].direction)


def across_seeds(claims: Mapping[Any, Claim]) -> Claim:
    """One claim decided on every training seed of its model(s) (``{seed: claim}``, seed 0 the shipped model first).

    The verdict holds across seeds: the seeds' verdict where every seed gives the same one. Else each statistic of the claim
    (the deciding one, its other thresholds and each part) is decided across the seeds (:func:`_seed_test`: every seed
    on one side, or the across-seed interval of the seeds' values, :func:`seed_interval`) and the claim by the rules of
    one seed (:func:`all_of`; "mixed" where its parts disagree); the deciding statistic's mean and interval become the
    claim's value and interval. ``per_seed`` holds each seed's value, interval and verdict, ``seeds`` their number. One
    seed: that claim unchanged.
    """
    if not claims:
        raise ValueError("claims must map at least one training seed to its claim")
    first = next(iter(claims.values()))
    if len(claims) == 1:
        return first
    each = list(claims.values())
    first.per_seed = {str(k): {"value": c.value, "interval": c.interval, "verdict": c.verdict} for k, c in claims.items()}
    first.seeds = len(claims)
    verdicts = {c.verdict for c in each}
    words = ", ".join(f"seed {k}: {c.verdict} ({interval_text(Test(c.value, c.interval, 0.0, ABOVE), '.2f')})" for k, c in claims.items())
    if len(verdicts) == 1:  # the same verdict on every seed (mixed: its parts disagree on every one)
        first.number += f"; on every one of {len(claims)} training seeds ({words})"
        return first
    main = _seed_test([{"value": c.value, "interval": c.interval, "threshold": c.threshold, "direction": c.direction} for c in each])
    n_conditions = {len(c.conditions or []) for c in each}
    conditions = [_seed_test([c.conditions[i] for c in each]) for i in range(n_conditions.pop())] if len(n_conditions) == 1 else []
    names = [k for k in (first.parts or {}) if all(k in (c.parts or {}) for c in each)]
    parts = {k: _seed_test([c.parts[k] for c in each]) for k in names}
    first.value, first.interval = main.value, main.interval
    first.verdict = all_of([main, *conditions, *parts.values()])
    if first.parts is not None:
        first.parts = {k: p.to_dict() for k, p in parts.items()}
    if first.conditions is not None and conditions:
        first.conditions = [t.to_dict() for t in conditions]
    first.number += f"; across {len(claims)} training seeds the mean is {interval_text(main)} ({words})"
    first.number += "".join(f"; across the seeds its other threshold ({t.direction} {t.threshold:g}): {t.verdict}, {interval_text(t)}"
                            for t in conditions if t.verdict != REPRODUCED)
    if parts:
        first.number += "; across the seeds by part: " + ", ".join(f"{k}: {p.verdict} ({interval_text(p, '.2f')})" for k, p in parts.items())
    if all(t.verdict != NOT_REPRODUCED for t in conditions) and of_parts({k: p.verdict for k, p in parts.items()}) == MIXED:
        first.verdict = MIXED
    return first


def check_result(name: str, result: Any, keys: Sequence[str]) -> dict:
    """``result`` (argument ``name``) as a study's result dict holding ``keys``; else a TypeError / ValueError naming what is wrong."""
    if not isinstance(result, dict):
        raise TypeError(f"{name} must be a dict of study results, got {type(result).__name__}")
    missing = [k for k in keys if k not in result]
    if missing:
        raise ValueError(f"{name} is missing {missing}; got keys {sorted(result)}")
    return result
