"""What every benchmark shares: single-threaded torch, interleaved median-of-repeats timing, models, checks.

Import this module before torch (``import _common as common`` sorts first): it pins
OpenMP/MKL and torch to one thread, so ours and the usual way run single-threaded in
the same process on the same data. Each timed call records this process's CPU time
and the wall time; ratios and forward-equivalents use CPU time, which for one thread
equals wall time on an idle core but does not count the time the process waits while
other jobs hold the (shared, 2-core) machine's cores. Contention still slows the work
itself (shared caches), so methods are timed interleaved (A B A B ...) and the median
of the repeats is reported: drifts in load then hit ours and the usual way alike.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, NamedTuple  # noqa: E402

import torch  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent


class Disagreement(AssertionError):
    """Ours and the usual way gave different answers: the timing comparison is void."""


def parse_args(description: str) -> argparse.Namespace:
    """``--full`` (bigger settings), ``--field`` (the field's standard model, :func:`field_model`) and ``--repeats``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--full", action="store_true", help="bigger settings (minutes instead of seconds)")
    parser.add_argument("--field", action="store_true", help="only the Garg-standard model (12 x 8 x 256, d = 20, 41 points) on "
                        f"{FIELD_PROMPTS} prompts: a few minutes at one thread")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per method (median reported)")
    return parser.parse_args()


def header(name: str) -> None:
    """Where and how the numbers were taken."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# {name}: torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), OMP_NUM_THREADS=1, "
        f"{os.cpu_count()} CPUs ({cpu_model()}, torch kernels: {torch.backends.cpu.get_cpu_capability()}), "
        f"load average {load:.2f}, {platform.machine()}"
    )


def cpu_model() -> str:
    """The CPU's model name (figures differ by machine: the same step ran 2.8x slower on an AVX2 EPYC than on an AVX-512 Xeon)."""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        name = ""
    return name or platform.processor() or "unknown CPU"


class Timing(NamedTuple):
    """Median seconds over the repeats: ``cpu`` (this process's CPU time, what ratios use) and ``wall``."""

    cpu: float
    wall: float

    def __str__(self) -> str:
        return f"{self.cpu:.3g} s CPU ({self.wall:.3g} s wall)"


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c0, time.perf_counter() - w0, out


def compare(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> tuple[dict[str, Timing], dict[str, Any]]:
    """Median times and last result of each function, run interleaved (A B A B ...) so load drifts hit all alike."""
    out: dict[str, Any] = {}
    for _ in range(warmup):
        for name, fn in fns.items():
            out[name] = fn()
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    wall: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c, w, out[name] = _timed(fn)
            cpu[name].append(c)
            wall[name].append(w)
    return {name: Timing(statistics.median(cpu[name]), statistics.median(wall[name])) for name in fns}, out


def check_close(what: str, ours: Any, usual: Any, *, atol: float, rtol: float = 0.0) -> None:
    """Raise :class:`Disagreement` unless ``ours`` and ``usual`` agree elementwise within ``atol + rtol |usual|``."""
    a, b = torch.as_tensor(ours, dtype=torch.float64), torch.as_tensor(usual, dtype=torch.float64)
    if a.shape != b.shape:
        raise Disagreement(f"{what}: shapes differ, ours {tuple(a.shape)} vs usual {tuple(b.shape)}")
    diff = (a - b).abs()
    if not bool((diff <= atol + rtol * b.abs()).all()):
        raise Disagreement(f"{what}: ours and the usual way disagree, max |diff| {float(diff.max()):.3g} > atol {atol:g}")
    print(f"agree: {what} (max |diff| {float(diff.max()):.2g}, atol {atol:g})")


def ratio(name: str, usual: Timing, ours: Timing, usual_label: str = "usual") -> None:
    """The last line of every benchmark: ``RATIO name Nx (usual T s / ours T s)``, from CPU times."""
    print(f"RATIO {name} {usual.cpu / ours.cpu:.2f}x ({usual_label} {usual.cpu:.3g} s / ours {ours.cpu:.3g} s, CPU time)")


# -- models -----------------------------------------------------------------------------


def default_model() -> Any:
    """The 3-layer v2 default (`default-v2`, 3 layers x 4 heads: the model benchmarks/README.md's "default" figures were
    taken on, before the 4-layer default), or its preset's config freshly initialised if it is not there."""
    import icl_interp as ii

    if "default-v2" in ii.zoo_names():
        return ii.load_model("default-v2")
    return ii.preset_model("default-v2")


def model_4x8(max_points: int = 20) -> Any:
    """4 layers x 8 heads, d_model 64, random init (timing does not depend on training)."""
    import icl_interp as ii

    task = ii.SparseLinearRegression(d=8, s=2, noise_std=0.5)
    return ii.ICLTransformer(ii.ModelConfig(d=8, n_layers=4, n_heads=8, d_model=64, max_points=max_points), task)


#: prompts of the ``--field`` runs: one forward of the field model over them is about 0.6 s at one thread, so the per-head
#: loops (97 forwards) take about a minute; the forward-equivalents do not depend on the prompt count much
FIELD_PROMPTS = 32


def field_model() -> Any:
    """Garg et al.'s standard model: 12 layers x 8 heads x d_model 256 (GPT-2 blocks, gelu_new), dense regression d = 20,
    41 points (81 tokens); random init (timing does not depend on training)."""
    import icl_interp as ii

    task = ii.LinearRegression(d=20)
    return ii.ICLTransformer(ii.ModelConfig(d=20, n_layers=12, n_heads=8, d_model=256, max_points=41, act_fn="gelu_new"), task)


def block_profile(model: Any, data: Any, repeats: int = 3) -> dict[str, float]:
    """Where a forward's time goes, in CPU seconds (medians): the whole fused forward, every block's attention half
    (norm, q/k/v, softmax attention, output projection) and MLP half alone on the native modules, the hooked
    (TransformerLens bridge) forward, and its hook and module-call overhead (hooked minus fused)."""
    from icl_interp.core import fast_paths as _fast
    from icl_interp.tools.runner import residual_input

    hooked = model.hooked
    n_heads = int(hooked.cfg.n_heads)
    with torch.no_grad():
        resid = residual_input(model, data)

        def halves(which: str) -> None:
            x = resid
            for layer in range(int(hooked.cfg.n_layers)):
                block = _fast._plain(hooked.blocks[layer])
                if which == "attn":
                    attn = _fast._plain(block.attn)
                    q, k, v = _fast._attention_qkv(attn, _fast._plain(block.ln1)(x), n_heads)
                    z = _fast._attend(q, k, v, None)
                    _fast._module_linear(attn.o, z.transpose(1, 2).reshape(x.shape))
                else:
                    mlp = _fast._plain(block.mlp)
                    _fast._module_linear(mlp.fc_out, mlp.act(_fast._module_linear(mlp.fc_in, _fast._plain(block.ln2)(x))))

        fns = {"fused forward": lambda: _fast.native_forward(hooked, resid),
               "attention halves": lambda: halves("attn"), "MLP halves": lambda: halves("mlp"),
               "hooked forward": lambda: hooked(resid, start_at_layer=0)}
        times, _ = compare(fns, repeats, warmup=1)
    out = {k: t.cpu for k, t in times.items()}
    out["hook overhead"] = out["hooked forward"] - out["fused forward"]
    return out


def print_profile(prof: dict[str, float]) -> None:
    """One line per part of :func:`block_profile`, with its share of the fused forward."""
    fwd = prof["fused forward"]
    print("  where a forward's time goes (CPU s, share of the fused forward): "
          + "; ".join(f"{k} {v:.3g} s ({v / fwd:.0%})" for k, v in prof.items()))


FORWARDS = 5  # plain forwards per timed call of plain_forward: its median is steadier than one short forward's


def plain_forward(model: Any, data: Any) -> Callable[[], Any]:
    """``FORWARDS`` plain no-grad forwards over ``data``; a forward-equivalent is its time / ``FORWARDS``.

    Time it in the same :func:`compare` call as the methods, so load drifts hit it alike.
    """

    def fn() -> Any:
        with torch.no_grad():
            for _ in range(FORWARDS):
                out = model(data)
        return out

    return fn


def fwd_eq(t: Timing, forwards: Timing) -> float:
    """``t`` in forward-equivalents, given the timing of :func:`plain_forward`."""
    return t.cpu / (forwards.cpu / FORWARDS)


def prompt_errors(model: Any, out: torch.Tensor, data: Any) -> torch.Tensor:
    """Normalised squared error per prompt ``[B]`` of the core output ``out`` (every predicted position, or the query)."""
    preds = model.readout(out)
    if preds.ndim == 1:
        return (preds - data.ys[:, -1]) ** 2 / model.task.norm
    return ((preds - data.ys) ** 2).mean(1) / model.task.norm


def describe(model: Any) -> str:
    c = model.hooked.cfg
    return f"{c.n_layers}x{c.n_heads} (d_model {c.d_model})"
