"""Exact single-head ablation importance: ``icl_interp.head_importance`` vs the per-head ``run_with_hooks`` loop.

The usual TransformerLens way is one clean forward plus one ``run_with_hooks`` per head
that zeroes that head's slice of ``blocks.{l}.attn.hook_z``: L*H + 1 forwards. Ours
computes the clean residual entering every layer and every layer's z once, and runs
each mask only from its layer on, so a head of layer l costs at most (L - l) / L of a
forward: in all H(L+1)/2 + 1 forward-equivalents (21 at 4 x 8, against 33 for the
loop). Within the layer, the attention (pattern and values) is shared by every head
mask: ours rebuilds the layer's attention output from the masked clean z and runs
only the layer's MLP half, which takes it below that bound.

    .venv/bin/python benchmarks/ablation_sweep.py [--full]   # 256 prompts (--full: 1024, 39 tokens at 4 x 8)
    .venv/bin/python benchmarks/ablation_sweep.py --field    # the Garg-standard 12 x 8 x 256 model, 32 prompts x 81 tokens
"""

import _common as common
import torch

import icl_interp as ii


def loop_importance(model, data) -> torch.Tensor:
    """The usual way: error increase per head from one full ``run_with_hooks`` forward each."""
    hooked = model.hooked
    n_layers, n_heads = hooked.cfg.n_layers, hooked.cfg.n_heads

    def error(out: torch.Tensor) -> float:
        return float(common.prompt_errors(model, out, data).mean())

    with torch.no_grad():
        resid0 = model.encode(data.xs, data.ys)
        clean = error(hooked(resid0, start_at_layer=0))
        imp = torch.zeros(n_layers, n_heads)
        for layer in range(n_layers):
            for head in range(n_heads):

                def zero_head(z, hook, head=head):
                    z[:, :, head] = 0.0
                    return z

                out = hooked.run_with_hooks(resid0, start_at_layer=0, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_head)])
                imp[layer, head] = error(out) - clean
    return imp


def bench(label: str, model, n_prompts: int, n_points: int, repeats: int) -> tuple[common.Timing, common.Timing]:
    data = model.task.sample(n_prompts, n_points, seed=1)
    n_layers, n_heads = model.hooked.cfg.n_layers, model.hooked.cfg.n_heads
    times, out = common.compare(
        {
            "fwd": common.plain_forward(model, data),
            "ours": lambda: ii.head_importance(model, data),
            "loop": lambda: loop_importance(model, data),
        },
        repeats,
        warmup=0,
    )
    common.check_close(f"{label} importance", out["ours"], out["loop"], atol=1e-5, rtol=1e-4)
    bound = n_heads * (n_layers + 1) / 2 + 1
    loop, ours, fwd = times["loop"], times["ours"], times["fwd"]
    print(
        f"{label}: {common.describe(model)}, {n_prompts} prompts x {2 * n_points - 1} tokens; "
        f"one forward {fwd.cpu / common.FORWARDS:.3g} s CPU\n"
        f"  loop ({n_layers * n_heads + 1} forwards) {loop} = {common.fwd_eq(loop, fwd):.1f} fwd-eq\n"
        f"  ours {ours} = {common.fwd_eq(ours, fwd):.1f} fwd-eq (bound H(L+1)/2+1 = {bound:g}; "
        f"ours / bound {common.fwd_eq(ours, fwd) / bound:.2f}); ratio loop / ours {loop.cpu / ours.cpu:.2f}x"
    )
    return loop, ours


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    common.header("ablation_sweep")
    if args.field:
        model = common.field_model()
        data = model.task.sample(common.FIELD_PROMPTS, 41, seed=1)
        common.print_profile(common.block_profile(model, data))
        loop_s, ours_s = bench("field", model, common.FIELD_PROMPTS, 41, args.repeats or 1)
        common.ratio("ablation_sweep_field", loop_s, ours_s, "loop")
        return
    repeats = args.repeats or (5 if args.full else 3)
    n_prompts, n_points = (1024, 20) if args.full else (256, 16)
    bench("default-v2", common.default_model(), n_prompts, 16, repeats)
    loop_s, ours_s = bench("4x8", common.model_4x8(max_points=20), n_prompts, n_points, repeats)
    common.ratio("ablation_sweep", loop_s, ours_s, "loop")


if __name__ == "__main__":
    main()
