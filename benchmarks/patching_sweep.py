"""Residual-stream patching over every (layer, position): ``icl_interp.patch_activations`` vs a run_with_hooks loop.

The usual TransformerLens way caches the clean run, then for every (layer, position)
runs the whole corrupted forward once with ``run_with_hooks`` writing the clean
``blocks.{l}.hook_resid_pre[:, pos]`` into it: L * n_pos forwards (plus the clean and
corrupted runs). Ours starts each patched run from the corrupted residual entering
layer l, so a patch at layer l costs (L - l) / L of a forward: sum_l (L - l) / L =
(L + 1) / 2 forward-equivalents per position instead of L. It also runs only the
positions from the patched one on (earlier positions keep their corrupted values and
enter through their cached keys and values), about half of that again over a sweep,
so ours lands below the (L + 1) / 2 bound. Score: the fraction of the
clean-vs-corrupted error gap recovered, errors against the clean targets (ours' default).

    .venv/bin/python benchmarks/patching_sweep.py [--full]   # default model, 128 prompts (--full: 512, and the 4 x 8 model)
    .venv/bin/python benchmarks/patching_sweep.py --field    # head patching (site "head") on the Garg-standard 12 x 8 x 256 model

At field size the residual sweep would be 12 x 81 patches, so ``--field`` times the per-head sweep the issue measured:
one ``run_with_hooks`` forward per (layer, head) writing the clean head's ``hook_z`` slice, against ours, which restarts
at the layer, keeps the layer's (corrupted) attention and rebuilds only its output from the patched z, then runs the
later blocks on the fast path: the restart-at-the-layer bound is H (L + 1) / 2 forward-equivalents.
"""

import _common as common
import torch

import icl_interp as ii


def _loop_runs(model, clean, corrupted, hook_suffix: str):
    """The loops' shared start: the corrupted residual, the clean run's cache of ``*hook_suffix``, the clean and
    corrupted errors, and the error of a run's output on the clean targets."""
    hooked = model.hooked

    def error(out: torch.Tensor) -> float:
        return float(common.prompt_errors(model, out, clean).mean())

    clean_r0, corr_r0 = model.encode(clean.xs, clean.ys), model.encode(corrupted.xs, corrupted.ys)
    out, cache = hooked.run_with_cache(clean_r0, start_at_layer=0, names_filter=lambda name: name.endswith(hook_suffix))
    return corr_r0, cache, error(out), error(hooked(corr_r0, start_at_layer=0)), error


def _loop(model, corr_r0, name, patch, e_clean, e_corr, error) -> float:
    """One full ``run_with_hooks`` forward of the corrupted run with ``patch`` at ``name``: its recovered share."""
    out = model.hooked.run_with_hooks(corr_r0, start_at_layer=0, fwd_hooks=[(name, patch)])
    return (e_corr - error(out)) / (e_corr - e_clean)


def loop_patching(model, clean, corrupted) -> torch.Tensor:
    """The usual way: one full run_with_hooks forward per (layer, position)."""
    n_layers = model.hooked.cfg.n_layers
    with torch.no_grad():
        corr_r0, cache, e_clean, e_corr, error = _loop_runs(model, clean, corrupted, "hook_resid_pre")
        scores = torch.zeros(n_layers, corr_r0.shape[1])
        for layer in range(n_layers):
            name = f"blocks.{layer}.hook_resid_pre"
            for pos in range(corr_r0.shape[1]):

                def patch(act, hook, pos=pos, clean_act=cache[name]):
                    act = act.clone()
                    act[:, pos] = clean_act[:, pos]
                    return act

                scores[layer, pos] = _loop(model, corr_r0, name, patch, e_clean, e_corr, error)
    return scores


def loop_head_patching(model, clean, corrupted) -> torch.Tensor:
    """The usual way for heads: one full run_with_hooks forward per (layer, head) writing the clean head's z."""
    n_layers, n_heads = model.hooked.cfg.n_layers, model.hooked.cfg.n_heads
    with torch.no_grad():
        corr_r0, cache, e_clean, e_corr, error = _loop_runs(model, clean, corrupted, "hook_z")
        scores = torch.zeros(n_layers, n_heads)
        for layer in range(n_layers):
            name = f"blocks.{layer}.attn.hook_z"
            for head in range(n_heads):

                def patch(z, hook, head=head, clean_z=cache[name]):
                    z = z.clone()
                    z[:, :, head] = clean_z[:, :, head]
                    return z

                scores[layer, head] = _loop(model, corr_r0, name, patch, e_clean, e_corr, error)
    return scores


def bench_field(repeats: int) -> tuple[common.Timing, common.Timing]:
    model = common.field_model()
    clean = model.task.sample(common.FIELD_PROMPTS, model.cfg.max_points, seed=2)
    corrupted = ii.corrupt_batch(clean, "new_w", model.task, seed=0)
    times, out = common.compare(
        {
            "fwd": common.plain_forward(model, corrupted),
            "ours": lambda: ii.patch_activations(model, clean, corrupted, site="head"),
            "loop": lambda: loop_head_patching(model, clean, corrupted),
        },
        repeats,
        warmup=0,
    )
    # on a random model the clean-vs-corrupted gap is small (about 2e-3 of an error near 1), so the fractions carry
    # float32 rounding of the errors divided by it: compare the error each patch recovers (fraction x gap) instead
    gap = out["ours"].corrupted_value - out["ours"].clean_value
    common.check_close("field head patching, error recovered per head", out["ours"].scores * gap, out["loop"] * gap, atol=1e-6)
    n_layers, n_heads = out["ours"].scores.shape
    bound = n_heads * (n_layers + 1) / 2
    ours, loop, fwd = times["ours"], times["loop"], times["fwd"]
    print(
        f"field: {common.describe(model)}, {common.FIELD_PROMPTS} prompts x {2 * model.cfg.max_points - 1} tokens, "
        f"{n_layers * n_heads} head patches; one forward {fwd.cpu / common.FORWARDS:.3g} s CPU\n"
        f"  loop ({n_layers * n_heads} forwards + clean, corrupted) {loop} = {common.fwd_eq(loop, fwd):.1f} fwd-eq\n"
        f"  ours {ours} = {common.fwd_eq(ours, fwd):.1f} fwd-eq (layer-restart bound H (L+1)/2 = {bound:g} plus about 3 for the "
        f"clean and corrupted runs); ratio loop / ours {loop.cpu / ours.cpu:.2f}x"
    )
    return loop, ours


def bench(label: str, model, n_prompts: int, repeats: int) -> tuple[common.Timing, common.Timing]:
    clean = model.task.sample(n_prompts, model.cfg.max_points, seed=2)
    corrupted = ii.corrupt_batch(clean, "new_support", model.task, seed=0)
    times, out = common.compare(
        {
            "fwd": common.plain_forward(model, corrupted),
            "ours": lambda: ii.patch_activations(model, clean, corrupted, site="resid_pre").scores,
            "loop": lambda: loop_patching(model, clean, corrupted),
        },
        repeats,
        warmup=0,
    )
    common.check_close(f"{label} patching scores", out["ours"], out["loop"], atol=1e-4, rtol=1e-4)
    n_layers, n_pos = out["ours"].shape
    bound = n_pos * (n_layers + 1) / 2
    ours, loop, fwd = times["ours"], times["loop"], times["fwd"]
    print(
        f"{label}: {common.describe(model)}, {n_prompts} prompts x {n_pos} tokens, {n_layers * n_pos} patches; "
        f"one forward {fwd.cpu / common.FORWARDS:.3g} s CPU\n"
        f"  loop ({n_layers * n_pos} forwards + clean, corrupted) {loop} = {common.fwd_eq(loop, fwd):.1f} fwd-eq\n"
        f"  ours {ours} = {common.fwd_eq(ours, fwd):.1f} fwd-eq (layer-restart bound n_pos (L+1)/2 = {bound:g} plus about 3 for the clean "
        f"and corrupted runs); ratio loop / ours {loop.cpu / ours.cpu:.2f}x"
    )
    return loop, ours


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    common.header("patching_sweep")
    if args.field:
        loop, ours = bench_field(args.repeats or 1)
        common.ratio("patching_sweep_field", loop, ours, "loop")
        return
    repeats = args.repeats or 3
    n_prompts = 512 if args.full else 128
    loop, ours = bench("default-v2", common.default_model(), n_prompts, repeats)
    if args.full:
        bench("4x8", common.model_4x8(max_points=16), n_prompts, repeats)
    common.ratio("patching_sweep", loop, ours, "loop")


if __name__ == "__main__":
    main()
