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
    """``--full`` (bigger settings) and ``--repeats`` (timed repeats per method)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--full", action="store_true", help="bigger settings (minutes instead of seconds)")
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
