"""Gradient head importance: cost in forward-equivalents and rank agreement with exact ablation importance.

``head_importance(model, data, method="gradient")`` is Michel et al.'s score, the mean
over prompts of |d loss_prompt / d mask_head| at mask = 1, from one forward and one
backward. Checked against the same score computed the usual way (a mask tensor with
``requires_grad`` multiplied into every ``hook_z`` through ``run_with_hooks``, then
``torch.autograd.grad``); its cost is compared with the exact-ablation loop (L*H + 1
``run_with_hooks`` forwards, see ablation_sweep.py), and its Spearman rank correlation
with exact ablation importance is reported, not asserted (it is a property of the model).
"signed first-order" is -d loss / d mask on the whole batch, the Taylor estimate of the
ablation effect: it separates the error of linearising from that of Michel's |.| per prompt.

    .venv/bin/python benchmarks/gradient_importance.py [--full]   # 256 prompts (--full: 1024)
"""

import _common as common
import torch
from ablation_sweep import loop_importance
from scipy.stats import spearmanr

import icl_interp as ii


def tl_gradient_importance(model, data, signed: bool = False) -> torch.Tensor:
    """The usual way: a per-prompt mask through ``run_with_hooks`` hooks on hook_z, one backward.

    ``signed``: one mask for the batch, returns -d mean error / d mask (first-order ablation effect).
    """
    hooked = model.hooked
    n_layers, n_heads = hooked.cfg.n_layers, hooked.cfg.n_heads
    mask = torch.ones(1 if signed else data.batch_size, n_layers, n_heads, requires_grad=True)

    def scale(layer: int):
        return lambda z, hook: z * mask[:, layer, None, :, None]

    hooks = [(f"blocks.{l}.attn.hook_z", scale(l)) for l in range(n_layers)]
    out = hooked.run_with_hooks(model.encode(data.xs, data.ys).detach(), start_at_layer=0, fwd_hooks=hooks)
    errors = common.prompt_errors(model, out, data)
    (grad,) = torch.autograd.grad(errors.mean() if signed else errors.sum(), mask)
    return -grad[0] if signed else grad.abs().mean(0)


def rank_agreement(label: str, model, data, grad: torch.Tensor, exact: torch.Tensor) -> None:
    rho = spearmanr(grad.flatten(), exact.flatten()).statistic
    rho_abs = spearmanr(grad.flatten(), exact.abs().flatten()).statistic
    rho_lin = spearmanr(tl_gradient_importance(model, data, signed=True).flatten(), exact.flatten()).statistic
    print(
        f"  {label}: Spearman(gradient, exact ablation) {rho:.3f} (target >= 0.9); vs |ablation| {rho_abs:.3f}; "
        f"signed first-order vs exact {rho_lin:.3f}; exact ablation: {(exact < 0).sum()} of {exact.numel()} heads < 0, "
        f"largest {exact.abs().max():.4f}"
    )


def bench(label: str, model, n_prompts: int, n_points: int, repeats: int) -> tuple[common.Timing, common.Timing]:
    data = model.task.sample(n_prompts, n_points, seed=1)
    times, out = common.compare(
        {
            "fwd": common.plain_forward(model, data),
            "ours": lambda: ii.head_importance(model, data, method="gradient"),
            "tl_grad": lambda: tl_gradient_importance(model, data),
            "loop": lambda: loop_importance(model, data),
        },
        repeats,
        warmup=0,
    )
    common.check_close(f"{label} gradient importance", out["ours"], out["tl_grad"], atol=1e-6, rtol=1e-4)
    exact = ii.head_importance(model, data)
    common.check_close(f"{label} exact importance (ours vs loop)", exact, out["loop"], atol=1e-5, rtol=1e-4)
    ours, loop, fwd = times["ours"], times["loop"], times["fwd"]
    print(
        f"{label}: {common.describe(model)}, {n_prompts} prompts x {2 * n_points - 1} tokens; "
        f"one forward {fwd.cpu / common.FORWARDS:.3g} s CPU\n"
        f"  gradient (ours) {ours} = {common.fwd_eq(ours, fwd):.2f} fwd-eq (target <= 3); "
        f"same score through run_with_hooks {times['tl_grad']}\n"
        f"  exact-ablation loop {loop}: loop / gradient {loop.cpu / ours.cpu:.1f}x (target >= 8x at 4 x 8)"
    )
    rank_agreement(label, model, data, out["ours"], exact)
    return loop, ours


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    common.header("gradient_importance")
    repeats = args.repeats or (5 if args.full else 3)
    n_prompts, n_points = (1024, 20) if args.full else (256, 16)
    bench("default-v2", common.default_model(), n_prompts, 16, repeats)
    loop, ours = bench("4x8", common.model_4x8(max_points=20), n_prompts, n_points, repeats)
    from icl_interp.core.checkpoint import zoo_names

    print("every other shipped model with more than one head (its own task, its full context):")
    for name in zoo_names():
        model = ii.load_model(name)
        if name == "default-v2" or model.cfg.n_heads == 1:  # default-v2: benched above
            continue
        data = model.task.sample(n_prompts, model.cfg.max_points, seed=1)
        rank_agreement(name, model, data, ii.head_importance(model, data, method="gradient"), ii.head_importance(model, data))
    common.ratio("gradient_importance", loop, ours, "exact loop")


if __name__ == "__main__":
    main()
