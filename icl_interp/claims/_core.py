"""What every claim shares: the :class:`Claim`, the verdict words, the input check, and every threshold with its reason."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

VERDICTS = ("reproduced", "not reproduced", "mixed")

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
#: pruning that keeps the error within 1.5x still preserves part of the performance (a mixed verdict)
PARTIAL_ERROR_RATIO = 1.5
#: a head count may rise by 2% over the next smaller one and still count as "lower" (sampling noise at the largest n)
HEAD_COUNT_SLACK = 1.02
#: "more heads, lower error" needs the most heads at least 10% below one head at the largest n
HEAD_COUNT_GAIN = 0.9
#: the second seed's constants differ when c multi / c single is below 0.9 (a 10% margin over fitting noise)
SEED2_C_RATIO = 0.9
#: layer 0 must decode a preprocessed x_i by 0.05 R2 more than the input (and than a random model) to count
PREPROCESS_R2_GAIN = 0.05
#: a gain over the input of 0.02 R2 is a partial sign of preprocessing (a mixed verdict)
PREPROCESS_R2_HINT = 0.02
#: the GD-step distance: the mean gap (RMS error relative to the spread) of the later layers to an algorithm's iterates
#: (studies.iterates). Below 0.2: held to within 20% of their spread (a probe's R2 > 0.96), "within about 20%" as for errors
GD_CLOSE = 0.2
#: a gap below 0.5 (the iterate read to within half its spread, R2 > 0.75) is a partial match (a mixed verdict)
GD_LOOSE = 0.5
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


@dataclass
class Claim:
    """One seed claim decided on study results: ``values`` are the deciding numbers, ``number`` says them in words."""

    id: str
    text: str
    verdict: str
    values: dict[str, Any] = field(default_factory=dict)
    number: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def __str__(self) -> str:
        return f"[{self.verdict}] {self.id}: {self.number}"

    def to_dict(self) -> dict:
        """JSON form: ``{"id", "claim" (the text), "verdict", "values", "number"}``."""
        d = asdict(self)
        return {"id": d["id"], "claim": d.pop("text"), "verdict": d["verdict"], "values": d["values"], "number": d["number"]}


def _verdict(ok: bool, partly: bool = False) -> str:
    return "reproduced" if ok else ("mixed" if partly else "not reproduced")


def check_result(name: str, result: Any, keys: Sequence[str]) -> dict:
    """``result`` (argument ``name``) as a study's result dict holding ``keys``; else a TypeError / ValueError naming what is wrong."""
    if not isinstance(result, dict):
        raise TypeError(f"{name} must be a dict of study results, got {type(result).__name__}")
    missing = [k for k in keys if k not in result]
    if missing:
        raise ValueError(f"{name} is missing {missing}; got keys {sorted(result)}")
    return result
