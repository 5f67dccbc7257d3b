"""P-probing: linear read-outs of a frozen model's activations, scored on held-out prompts.

Allen-Zhu & Li's position-based probing applied to ICL (the seed paper): at chosen
token positions, fit a ridge probe from a hook point's activation to a target
(``probes`` catalogue name or a callable ``ICLBatch -> tensor``) on training
prompts and report R2 / MSE on the other prompts. Prompts, never positions of
one prompt, are split, so a probe cannot memorise a prompt.

Positions (``positions=``):

- ``"query"``: the token whose output predicts the last y (interleaved: ``2(n-1)``,
  concatenated: the last token; an attached model: its last token). One row per prompt.
- ``"all"``: the token of every example (interleaved: the x tokens ``0, 2, ..., 2(n-1)``;
  concatenated: token ``i``, which also holds ``y_i`` for ``i < n-1``); only for
  ICLTransformer. Per-example targets line up.
- a list of token indices (negative ones count from the end).

A per-prompt target is repeated at every chosen position; a per-example target is
read at each position's example (unknown for attached models: use per-prompt targets there).

Activations come from the shared clean run (``runner.prepare``; ``data`` may be
one), captured through hook points, so hooks the user has active on
``model.hooked`` stay in force and their effect is what gets probed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

import probes

from ..core import fast_paths
from ..core.checks import check_choice, check_float, check_int, check_layer
from ..core.protocol import Layout, ToolModel, as_model, model_device
from ..core.tasks import ICLBatch
from .ridge_probe import PROBE_ALPHAS, RidgeProbe, r2_score
from .runner import CleanRun, capture_forward, prepare

__all__ = [
    "RidgeProbe",
    "ProbeResult",
    "ProbeTable",
    "probe_layer",
    "probe_all_layers",
    "collect_activations",
    "r2_score",
    "SITES",
    "PROBE_ALPHAS",
]

SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
EMBED = -1  # layer index of the residual entering block 0 in result tables


# -- results --------------------------------------------------------------------------


@dataclass
class ProbeResult:
    """One fitted probe and its held-out scores (``control_*``: the same probe on a random model)."""

    target: str
    layer: int
    site: str
    positions: Any
    r2: float
    mse: float
    r2_per_output: Tensor
    probe: Any
    n_train: int
    n_test: int
    train_prompts: Tensor = field(repr=False)
    test_prompts: Tensor = field(repr=False)
    control_r2: Optional[float] = None
    control_mse: Optional[float] = None
    #: ``{"sse", "sst", "control_sse"}``, each ``[n_test, k]`` summed over a test prompt's positions: R2 per output = 1 - sum(sse) / sum(sst)
    per_prompt: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "layer": self.layer,
            "site": self.site,
            "positions": self.positions,
            "r2": self.r2,
            "mse": self.mse,
            "r2_per_output": self.r2_per_output.tolist(),
            "alpha": getattr(self.probe, "alpha_", None),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "control_r2": self.control_r2,
            "control_mse": self.control_mse,
        }


@dataclass
class ProbeTable:
    """Rows of :class:`ProbeResult` (layer ``-1`` / site ``"embed"``: the residual entering block 0)."""

    rows: list[ProbeResult]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i: int) -> ProbeResult:
        return self.rows[i]

    def to_dicts(self) -> list[dict]:
        return [r.to_dict() for r in self.rows]

    def get(self, layer: int, site: str = "resid_post", target: str = "y_query") -> ProbeResult:
        """The row for ``(layer, site, target)``; layer -1 is the embedding row whatever ``site``."""
        for r in self.rows:
            if r.layer == layer and r.target == target and (r.site == site or layer == EMBED):
                return r
        raise KeyError(f"no row for layer={layer}, site={site!r}, target={target!r}")

    def __str__(self) -> str:
        control = any(r.control_r2 is not None for r in self.rows)
        head = f"{'target':<16}{'layer':>6} {'site':<11}{'r2':>9}{'mse':>11}" + (
            f"{'ctrl_r2':>9}{'ctrl_mse':>11}" if control else ""
        )
        lines = [head]
        for r in self.rows:
            line = f"{r.target:<16}{r.layer:>6} {r.site:<11}{r.r2:>9.4f}{r.mse:>11.4g}"
            if control:
                line += f"{_fmt(r.control_r2, '9.4f')}{_fmt(r.control_mse, '11.4g')}"
            lines.append(line)
        return "\n".join(lines)


def _fmt(value: Optional[float], spec: str) -> str:
    return f"{'-':>{spec.split('.')[0]}}" if value is None else format(value, spec)


# -- positions, capture, split --------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Chosen token positions and, where known, the example each one belongs to."""

    tokens: Tensor
    examples: Optional[Tensor]
    label: Any


def _check_positions(positions: Any) -> Any:
    if isinstance(positions, str):
        return check_choice("positions", positions, ("query", "all"))
    if isinstance(positions, (list, tuple)) and positions:
        return [check_int("positions", p) for p in positions]
    raise ValueError(f"positions must be 'query', 'all' or a non-empty list of token indices, got {positions!r}")


def _plan(layout: Layout, positions: Any, n_points: int) -> _Plan:
    """Token indices (and their examples) for ``positions``, read off the model's token layout."""
    n_tokens = layout.n_tokens
    if positions == "query":
        return _Plan(torch.tensor([layout.query]), torch.tensor([n_points - 1]), "query")
    if positions == "all":
        if layout.example_tokens is None:
            raise ValueError(
                "positions='all' needs to know each example's token (an ICLTransformer, or attach(..., layout=...)); "
                "pass a list of token indices"
            )
        return _Plan(layout.example_tokens, torch.arange(n_points), "all")
    bad = [p for p in positions if not -n_tokens <= p < n_tokens]
    if bad:
        raise ValueError(f"positions must be token indices in [{-n_tokens}, {n_tokens - 1}] for this data, got {bad}")
    tokens = torch.tensor([p % n_tokens for p in positions])
    examples = None if layout.token_example is None else layout.token_example[tokens]
    return _Plan(tokens, examples, list(positions))


def _hook_name(layer: int, site: str) -> str:
    return "blocks.0.hook_resid_pre" if layer == EMBED else f"blocks.{layer}.hook_{site}"


def _check_sites(model: ToolModel, layer_sites: Sequence[tuple[int, str]]) -> None:
    for layer, site in layer_sites:
        if _hook_name(layer, site) not in model.hooked.hook_dict:
            raise ValueError(f"site {site!r} has no hook point {_hook_name(layer, site)!r} in this model")


def _capture(run: CleanRun, layer_sites: Sequence[tuple[int, str]], tokens: Tensor) -> dict:
    """Clean activations ``[B, P, f]`` at ``tokens`` for every (layer, site), from the shared run.

    The residual entering / leaving a block is the run's own ``resids`` when nothing
    else listens; other sites (and every site under a user's hook) come through hook points.
    """
    _check_sites(run.model, layer_sites)
    quiet = fast_paths.nothing_listening(run.model.hooked)

    def direct(layer: int, site: str) -> Optional[Tensor]:
        if layer == EMBED:
            return run.resids[0]
        if quiet and site in ("resid_pre", "resid_post"):
            return run.resids[layer + (site == "resid_post")]
        return None

    names = [_hook_name(l, s) for l, s in layer_sites if direct(l, s) is None]
    acts = run.acts(names)
    idx = tokens.to(run.resids[0].device)
    out = {}
    for layer, site in layer_sites:
        t = direct(layer, site)
        out[(layer, site)] = (acts[_hook_name(layer, site)] if t is None else t)[:, idx]
    return out


def capture_with_grad(model: ToolModel, resid0: Tensor, layer_sites: Sequence[tuple[int, str]], tokens: Tensor) -> dict:
    """Like :func:`_capture`, differentiable in ``resid0`` (one forward with autograd on)."""
    _check_sites(model, layer_sites)
    idx = (slice(None), tokens.to(resid0.device))
    names = [_hook_name(l, s) for l, s in layer_sites if l != EMBED]
    acts = capture_forward(model, resid0, names, index=idx, detach=False) if names else {}
    return {(l, s): resid0[idx] if l == EMBED else acts[_hook_name(l, s)] for l, s in layer_sites}


def collect_activations(
    model: ToolModel,
    data: Union[ICLBatch, CleanRun],
    layer_sites: Sequence[tuple[int, str]],
    positions: Any = "query",
) -> dict[tuple[int, str], Float[Tensor, "batch pos f"]]:
    """``{(layer, site): [B, P, f]}`` at the chosen positions, from the clean run (layer -1: the input)."""
    model = as_model(model)
    positions = _check_positions(positions)
    run = prepare(model, data)
    return _capture(run, layer_sites, _plan(run.layout(), positions, run.batch.n_points).tokens)


def _split(n_prompts: int, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(train, test) prompt indices from a seeded permutation; both need at least 2 prompts."""
    n_test = int(round(n_prompts * test_fraction))
    if n_test < 2 or n_prompts - n_test < 2:
        raise ValueError(
            f"data has {n_prompts} prompts: with test_fraction={test_fraction} that gives {n_test} test and "
            f"{n_prompts - n_test} train prompts; at least 2 of each are needed"
        )
    perm = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(seed))
    return perm[n_test:].sort().values, perm[:n_test].sort().values


def _new_probe(probe: Any) -> Any:
    if isinstance(probe, str):
        check_choice("probe", probe, ("ridge",))
        return RidgeProbe()
    if callable(getattr(probe, "fit", None)) and callable(getattr(probe, "predict", None)):
        return copy.deepcopy(probe)
    raise TypeError(
        f"probe must be 'ridge' or an unfitted probe with fit/predict (e.g. RidgeProbe(alpha=1.0)), got {type(probe).__name__}"
    )


def _values(target: probes.Target, data: ICLBatch, plan: _Plan) -> Tensor:
    """Target values ``[B, P, k]`` lined up with the plan's positions."""
    vals = target(data)
    if vals.ndim == 2:
        return vals[:, None, :].expand(-1, len(plan.tokens), -1)
    if plan.examples is None:
        raise ValueError(
            f"target {target.name!r} is per example, but which example each position holds is unknown for this model"
        )
    return vals[:, plan.examples.to(vals.device)]


def _fit_score(probe: Any, acts: Tensor, values: Tensor, train: Tensor, test: Tensor,
               shared: Optional[dict] = None) -> tuple[Any, Tensor, float, Tensor, Tensor]:
    """Fit on the train prompts' rows; (probe, R2 per output, MSE, SSE and SST per test prompt ``[n_test, k]``) on the test rows.

    ``shared``: a dict kept across the targets of the same ``acts``, holding the train rows and their SVD
    (:meth:`RidgeProbe.decompose`) after the first ridge fit, so every other target's fit skips both."""
    f, k = acts.shape[-1], values.shape[-1]
    probe = _new_probe(probe)
    if shared is not None and type(probe) is RidgeProbe:
        if not shared:
            shared["x"] = acts[train].reshape(-1, f)
            shared["svd"] = RidgeProbe.decompose(shared["x"])
        probe = probe.fit(shared["x"], values[train].reshape(-1, k), decomposition=shared["svd"])
    else:
        probe = probe.fit(acts[train].reshape(-1, f), values[train].reshape(-1, k))
    y_test = values[test].reshape(-1, k).double()
    pred = probe.predict(acts[test].reshape(-1, f)).reshape(-1, k).double()
    sse, sst = (((a - b) ** 2).reshape(len(test), -1, k).sum(1) for a, b in ((pred, y_test), (y_test, y_test.mean(0))))
    return probe, r2_score(y_test, pred), float(((pred - y_test) ** 2).mean()), sse, sst


def control_model(model: Any) -> Any:
    """The probes' control: a randomly initialised model of ``model``'s config (the seed after its own), with its task,
    on its device (so that it reads the same batch)."""
    from ..core.model import ICLTransformer, ModelConfig

    if not isinstance(model, ICLTransformer):
        raise ValueError(
            f"control=True builds a random model of the same config, which needs an ICLTransformer, got {type(model).__name__}; "
            "probe your own control model instead"
        )
    control = ICLTransformer(ModelConfig(**{**model.cfg.to_dict(), "seed": model.cfg.seed + 1}), model.task)
    return control.to(model_device(model))


def _probe_many(
    model: ToolModel,
    data: Union[ICLBatch, CleanRun],
    layer_sites: Sequence[tuple[int, str]],
    targets: Sequence[probes.Target],
    positions: Any,
    probe: Any,
    test_fraction: float,
    seed: int,
    control: bool,
) -> list[ProbeResult]:
    """The shared path of probe_layer and probe_all_layers: one forward, then every probe."""
    positions = _check_positions(positions)
    test_fraction = check_float("test_fraction", test_fraction, min_value=0.0, max_value=1.0, strict_min=True)
    seed = check_int("seed", seed, min_value=0)
    if not isinstance(control, bool):
        raise TypeError(f"control must be a bool, got {type(control).__name__}")
    _new_probe(probe)
    run = prepare(model, data)
    data = run.batch
    train, test = _split(data.batch_size, test_fraction, seed)
    with torch.no_grad():
        plan = _plan(run.layout(), positions, data.n_points)
        values = {t.name: _values(t, data, plan) for t in targets}
        acts = [_capture(run, layer_sites, plan.tokens)]
        if control:
            ctrl = control_model(model)
            acts.append(_capture(prepare(ctrl, data), layer_sites, plan.tokens))
    rows = {}
    for layer, site in layer_sites:  # every target of one (layer, site) on one SVD of its activations (and the control's)
        shared: list[dict] = [{}, {}]
        for t in targets:
            fitted, r2s, mse, sse, sst = _fit_score(probe, acts[0][(layer, site)], values[t.name], train, test, shared[0])
            row = ProbeResult(t.name, layer, site, plan.label, float(r2s.mean()), mse, r2s.float(), fitted, len(train), len(test),
                              train, test, per_prompt={"sse": sse, "sst": sst})
            if control:
                _, c_r2s, row.control_mse, row.per_prompt["control_sse"], _ = _fit_score(probe, acts[1][(layer, site)], values[t.name],
                                                                                         train, test, shared[1])
                row.control_r2 = float(c_r2s.mean())
            rows[t.name, layer, site] = row
    return [rows[t.name, layer, site] for t in targets for layer, site in layer_sites]


def _check_layer(layer: Any, n_layers: int) -> int:
    if layer == "embed":
        return EMBED
    if isinstance(layer, str):
        raise ValueError(f"layer must be an int in [0, {n_layers - 1}] (0-indexed) or 'embed', got the string {layer!r}")
    return check_layer("layer", layer, n_layers)


def probe_layer(
    model: ToolModel,
    data: Union[ICLBatch, CleanRun],
    layer: Union[int, str],
    target: Any,
    site: str = "resid_post",
    positions: Any = "query",
    probe: Any = "ridge",
    test_fraction: float = 0.25,
    seed: int = 0,
    control: bool = False,
) -> ProbeResult:
    """Probe ``blocks.{layer}.hook_{site}`` for ``target``; held-out R2 and MSE.

    ``layer`` is 0-indexed, or ``"embed"`` for the residual entering block 0 (then
    ``site`` is ignored and the row has layer -1, site "embed"). ``target`` is a
    ``probes`` name, a ``probes.Target`` or a callable ``ICLBatch -> tensor``.
    ``control=True`` also fits the probe on a random ICLTransformer of the same config.
    """
    model = as_model(model)
    layer = _check_layer(layer, model.hooked.cfg.n_layers)
    site = "embed" if layer == EMBED else check_choice("site", site, SITES)
    return _probe_many(model, data, [(layer, site)], [probes.resolve(target)], positions, probe, test_fraction, seed, control)[0]


def probe_all_layers(
    model: ToolModel,
    data: Union[ICLBatch, CleanRun],
    targets: Any = ("y_query",),
    sites: Sequence[str] = ("resid_post",),
    positions: Any = "query",
    probe: Any = "ridge",
    test_fraction: float = 0.25,
    seed: int = 0,
    control: bool = False,
) -> ProbeTable:
    """Every (target, layer, site) probe from one cached forward, plus the input ("embed", layer -1) row.

    Same split and probe as :func:`probe_layer`, so every row equals the
    corresponding ``probe_layer`` call.
    """
    model = as_model(model)
    targets = [targets] if isinstance(targets, str) or not isinstance(targets, Sequence) else list(targets)
    if not targets:
        raise ValueError("targets must name at least one target")
    resolved = [probes.resolve(t, "targets") for t in targets]
    sites = [sites] if isinstance(sites, str) else list(sites)
    if not sites:
        raise ValueError(f"sites must be a non-empty list from {list(SITES)}")
    for s in sites:
        check_choice("sites", s, SITES)
    layer_sites = [(EMBED, "embed")] + [(layer, s) for layer in range(model.hooked.cfg.n_layers) for s in sites]
    return ProbeTable(_probe_many(model, data, layer_sites, resolved, positions, probe, test_fraction, seed, control))
